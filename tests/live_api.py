"""A real `chainsync api` process on loopback, for the tests that need real HTTP or WebSockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_env(data_dir: Path, jwt_secret: str, **extra: str) -> dict[str, str]:
    """The environment of an API process on ``data_dir``: never demo mode, quiet logs, ``extra`` on top."""
    env = {
        **os.environ,
        "CHAINSYNC_DATA_DIR": str(data_dir),
        "CHAINSYNC_JWT_SECRET": jwt_secret,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    env.pop("CHAINSYNC_DEMO_MODE", None)
    return env


def start_api(port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start `chainsync api` on 127.0.0.1:``port`` in its own process group (so it can be killed whole)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "api", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_api(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` to the server's process group; SIGKILL if it is still there after 10 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_healthy(base: str, proc: subprocess.Popen[str], deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited early with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"{base}/api/observability/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy in time")
