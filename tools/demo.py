"""`chainsync demo` (what `make demo` runs): one command from a fresh clone to three live UIs.

Steps: generate the demo chain if absent, import it into the ops store, materialize every asset, then run
the API (:8000), the Dagster UI (:3000) and Streamlit (:8501) on 127.0.0.1 until Ctrl-C, which stops all
three. Demo users exist only because demo mode is on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DemoOptions:
    stores: int = 10
    products: int = 150
    days: int = 730
    api_port: int = 8000
    dagster_port: int = 3000
    dashboard_port: int = 8501
    skip_pipeline: bool = False


# Loopback, allowlisted for the demo unless CHAINSYNC_IP_ALLOWLIST says otherwise.
DEMO_ALLOWLIST = "127.0.0.1/32,::1/128"


def _service_commands(opts: DemoOptions) -> dict[str, tuple[list[str], str, str]]:
    """name -> (command, URL to show, URL that answers when the service is up)."""
    py = sys.executable
    dagster = shutil.which("dagster", path=str(Path(py).parent)) or "dagster"
    api = f"http://127.0.0.1:{opts.api_port}"
    dag = f"http://127.0.0.1:{opts.dagster_port}"
    web = f"http://127.0.0.1:{opts.dashboard_port}"
    return {
        "API": (
            [py, "-m", "tools.cli", "api", "--host", "127.0.0.1", "--port", str(opts.api_port)],
            f"{api}/docs",
            f"{api}/api/observability/health",
        ),
        "Dagster UI": (
            [dagster, "dev", "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(opts.dagster_port)],
            dag,
            f"{dag}/server_info",
        ),
        "Streamlit": (
            [py, "-m", "tools.cli", "dashboard", "--port", str(opts.dashboard_port)],
            web,
            f"{web}/_stcore/health",
        ),
    }


def _wait_http(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _demo_device_key(engine, path: Path) -> str:  # type: ignore[no-untyped-def]
    """The demo terminal's key, issued once and kept (mode 0600) so restarts print the same one."""
    from chainsync.ops_store.users import create_device_key, verify_device_key

    if path.exists():
        key = path.read_text().strip()
        if verify_device_key(engine, key) is not None:
            return key
    key = create_device_key(engine, "S001", "S001-T01")
    path.write_text(key)
    path.chmod(0o600)
    return key


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both end the demo through its cleanup path. SIGINT is reset to Python's
    default handler because a launcher that started us in the background may have left it ignored."""

    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def run_demo(opts: DemoOptions, *, console: Console) -> int:
    _stop_on_signals()
    os.environ["CHAINSYNC_DEMO_MODE"] = "true"
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
    from chainsync.ops_store import get_engine
    from chainsync.ops_store.events import count_events
    from chainsync.settings import get_settings
    from tools.progress import progress_bar

    get_settings.cache_clear()
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.jwt_key()  # creates the demo secret once
    if not settings.ip_allowlist:
        # The demo's one client is this machine: a few refused or malformed requests from 127.0.0.1 would
        # otherwise block it (admins included) for an hour. Allowlisted addresses are still scored and
        # logged, never blocked; an explicit CHAINSYNC_IP_ALLOWLIST is kept as it is.
        os.environ["CHAINSYNC_IP_ALLOWLIST"] = DEMO_ALLOWLIST
    chain_dir = settings.data_dir / "demo"

    if not (chain_dir / "manifest.json").exists():
        from tools.generator import generate_chain

        console.rule("Generating the demo chain")
        with progress_bar() as bar:
            console.print(
                generate_chain(
                    chain_dir, stores=opts.stores, products=opts.products, days=opts.days, progress=bar
                )
            )

    engine = get_engine(settings.ops_store)
    if count_events(engine) == 0:
        from tools.importer import import_generated

        console.rule("Importing it into the ops store")
        with progress_bar() as bar:
            console.print(import_generated(engine, chain_dir, progress=bar))

    if not opts.skip_pipeline:
        from pipelines.run import run_pipeline

        console.rule("Materializing every asset")
        if not run_pipeline(settings, console=console).success:
            console.print("[red]The pipeline failed; see above. Services start anyway for inspection.[/]")

    dagster_home = (settings.data_dir / "dagster_home").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    dagster_yaml = dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": str(ROOT)}

    device_key = _demo_device_key(engine, settings.data_dir / ".demo_device_key")
    console.rule("Starting services")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    commands = _service_commands(opts)
    try:
        for name, (cmd, _url, _probe) in commands.items():
            procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        deadline = time.monotonic() + 180
        for name, (_cmd, url, probe) in commands.items():
            ok = _wait_http(probe, deadline)
            console.print(f"  {'[green]up[/]' if ok else '[red]not answering[/]'}  {name:<11} {url}")
        password = settings.demo_password.get_secret_value()
        console.print(
            "\n[bold]Demo users[/] (demo mode only): "
            f"admin / {password}, manager / {password} (stores of the first half), cashier / {password}"
        )
        console.print(f"[bold]Device key[/] for terminal S001-T01 at store S001: {device_key}")
        allowlist = os.environ.get("CHAINSYNC_IP_ALLOWLIST", "")
        console.print(f"Never blocked (scored and logged only): {allowlist or 'no address'}", highlight=False)
        console.print(
            "Try: curl -s -d 'username=manager&password=" + password + "' "
            f"http://127.0.0.1:{opts.api_port}/api/auth/token"
        )
        console.print("\nPress Ctrl-C to stop all three.", highlight=False)
        console.file.flush()
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        dead = [n for n, p in procs.items() if p.poll() is not None]
        console.print(f"[red]{', '.join(dead)} stopped unexpectedly; stopping the rest.[/]")
        return 1
    except KeyboardInterrupt:
        console.print("\nStopping…")
        return 0
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
