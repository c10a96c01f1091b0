"""Connection timeouts and refusal before reading, for real: ``chainsync api`` under uvicorn on loopback and
raw sockets playing slow clients (a byte every few hundred milliseconds, as slowloris does)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_api import api_env, free_port, start_api, stop_api, wait_healthy

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
DEADLINE_S = 8.0  # generous bound for "closed by the server", far below "held forever"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    data_dir: Path = tmp_path_factory.mktemp("timeouts") / "data"
    data_dir.mkdir()
    port = free_port()
    env = api_env(
        data_dir,
        "timeout-test-secret-" + "t" * 40,
        CHAINSYNC_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT_S),
        CHAINSYNC_HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_S),
        CHAINSYNC_IP_DENYLIST="127.0.0.2/32",
    )
    proc = start_api(port, env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield port
    finally:
        stop_api(proc)


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(0.2)
    sock.connect(("127.0.0.1", port))
    return sock


def _closed(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while the connection is still open."""
    received = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return received
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return received


def _trickle_until_closed(
    sock: socket.socket, payload: bytes, every_s: float = 0.3
) -> tuple[bytes | None, int]:
    """Send ``payload`` one byte at a time until the server closes (bounded by DEADLINE_S)."""
    sent = 0
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if sent < len(payload):
            try:
                sock.send(payload[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                return b"", sent
            sent += 1
        answer = _closed(sock)
        if answer is not None:
            return answer, sent
        time.sleep(every_s - 0.2 if every_s > 0.2 else 0)  # recv above already waited 0.2 s
    return None, sent


def test_trickled_headers_are_cut_off_with_408(port: int) -> None:
    with _connect(port) as sock:
        request = b"GET /api/observability/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
        answer, sent = _trickle_until_closed(sock, request)
    assert answer is not None, "the server held a connection whose headers never completed"
    assert answer.startswith(b"HTTP/1.1 408")
    assert sent < len(request)


def test_a_silent_connection_is_closed(port: int) -> None:
    with _connect(port) as sock:
        answer, _ = _trickle_until_closed(sock, b"")
    assert answer is not None and answer.startswith(b"HTTP/1.1 408")


def test_a_stalled_body_is_closed(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(
            b"POST /api/events/sales HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"events": ['
        )
        answer, _ = _trickle_until_closed(sock, b"", every_s=0.3)
    assert answer is not None, "the server held a connection whose body stalled"


def _response(sock: socket.socket) -> bytes:
    """One whole HTTP response (headers, then exactly Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_ordinary_requests_and_keep_alive_still_work(port: int) -> None:
    with _connect(port) as sock:
        sock.settimeout(5)
        for _ in range(2):  # two requests on one kept-alive connection
            sock.sendall(b"GET /api/observability/health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = _response(sock)
            assert head.startswith(b"HTTP/1.1 200"), head[:100]


def test_a_denied_address_is_closed_before_anything_is_read(port: int) -> None:
    with _connect(port, source="127.0.0.2") as sock:
        deadline = time.monotonic() + DEADLINE_S
        answer = None
        while answer is None and time.monotonic() < deadline:
            answer = _closed(sock)  # nothing sent at all: the refusal cannot depend on a request
    assert answer == b"", "a denied address got a response or an open connection instead of a close"
