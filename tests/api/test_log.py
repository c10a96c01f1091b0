"""No credential in any log line: a real ``chainsync api`` under uvicorn at INFO level, a WebSocket
opened with ``?token=<JWT>`` and with ``?token=<device key>``, and a request carrying ``?api_key=``; the
server's whole output (access log included) must not contain either secret."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from api.log import redact_query
from api.security.tokens import create_access_token
from chainsync.ops_store import get_engine
from chainsync.ops_store.users import create_device_key, upsert_user
from chainsync.settings import Settings
from tests.live_api import REPO, api_env, free_port, stop_api, wait_healthy


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("/ws/notifications?token=eyJhbGciOiJIUzI1NiJ9.e30.sig&last_seq=4", "eyJhbGciOiJIUzI1NiJ9.e30.sig"),
        ("/api/x?store_id=S001&api_key=k-123", "k-123"),
        ("/api/x?X-API-Key=k-456", "k-456"),
        ("/api/x?refresh_token=r-789&a=1", "r-789"),
        ("/api/x?password=hunter2", "hunter2"),
    ],
)
def test_credential_query_values_are_masked(path: str, secret: str) -> None:
    masked = redact_query(path)
    assert secret not in masked and "[redacted]" in masked


def test_ordinary_query_values_are_kept() -> None:
    path = "/api/ai/forecast?store_id=S001&horizon=14&monkey=1&keys=2"
    assert redact_query(path) == path


@pytest.mark.slow
def test_server_output_holds_no_token_or_device_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    secret = "log-test-secret-" + "z" * 40
    settings = Settings(_env_file=None, data_dir=data_dir, jwt_secret=secret)  # type: ignore[call-arg]
    engine = get_engine(settings.ops_store)
    upsert_user(engine, "mona", "correct-horse-battery", "manager", ["S001"])
    device_key = create_device_key(engine, "S001", "POS-01")
    jwt = create_access_token(settings, subject="mona", role="manager", stores=["S001"]).token
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "api", "--port", str(port)],
            cwd=REPO,
            env=api_env(data_dir, secret, LOG_LEVEL="INFO"),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, proc)

            async def open_and_close(token: str) -> None:
                async with websockets.connect(f"ws://127.0.0.1:{port}/ws/notifications?token={token}") as ws:
                    await asyncio.wait_for(ws.recv(), 10)  # the server's welcome: the connection was accepted

            asyncio.run(open_and_close(jwt))
            asyncio.run(open_and_close(device_key))
            httpx.get(f"{base}/api/sync/status?api_key={device_key}", headers={"X-API-Key": device_key})
        finally:
            stop_api(proc)
    output = log_path.read_text()
    assert "WebSocket /ws/notifications?token=[redacted]" in output  # uvicorn did log the connection
    assert jwt not in output and jwt.split(".")[2] not in output
    assert device_key not in output
