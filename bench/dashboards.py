"""Benchmark the dashboards: render time of every page on the demo-sized chain, measured with AppTest.

    uv run python bench/dashboards.py                          # generate 10 stores x 150 products x 730 days,
                                                               # run the pipeline, then time every page
    uv run python bench/dashboards.py --data-dir /tmp/chain    # reuse (or create and keep) a data directory
    uv run python bench/dashboards.py --data-dir data          # time the demo's own data

For each page: the first render (cold: snapshot tables read from Parquet, figures computed) and the median of
``--repeat`` later renders (warm: the per-version caches hit), as an analyst opening the page sees them. The
API is pointed at a closed port, so live figures cost only a refused connection. Target: under 2 s a page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # no "missing ScriptRunContext" per run

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

APP = str(ROOT / "dashboards" / "app.py")
PAGES = ["overview", "forecast", "anomalies", "inventory", "insights", "security", "sync", "system"]
TARGET_SECONDS = 2.0


def prepare(data_dir: Path, stores: int, products: int, days: int, console: Console) -> None:
    """Generate, import and materialize a chain into ``data_dir`` unless it already has a snapshot."""
    from chainsync.serving import current_snapshot
    from chainsync.settings import Settings

    settings = Settings(data_dir=data_dir)
    if current_snapshot(settings.serving) is not None:
        console.print(f"using the snapshot already in {data_dir}")
        return
    from chainsync.ops_store import get_engine
    from pipelines.run import run_pipeline
    from tools import importer
    from tools.generator import generate_chain

    data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    generate_chain(data_dir.parent / "chain", stores=stores, products=products, days=days)
    summary = importer.import_generated(get_engine(settings.ops_store), data_dir.parent / "chain")
    console.print(f"generated and imported {summary.events:,} events in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    result = run_pipeline(settings, console=console)
    if not result.success:
        raise SystemExit("the pipeline run failed")
    console.print(f"pipeline materialized in {time.perf_counter() - t0:.0f} s")


def render(page: str, *, cold: bool = False) -> tuple[float, int]:
    """Seconds to render ``page`` in a fresh session, and its exceptions. Cold: every cache emptied first
    (as after a new snapshot); warm: caches shared with earlier sessions, as in a running server."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboards.auth import SESSION_KEY, Session

    at = AppTest.from_file(APP, default_timeout=120)
    # The pages need a logged-in analyst: an administrator's session (every page, every store). The API is
    # closed here, so the token is never presented; live figures cost only a refused connection.
    at.session_state[SESSION_KEY] = Session(
        username="bench", role="admin", stores=None, expires_at=time.time() + 3600,
        access_token="not-used", refresh_token="not-used",
    )  # fmt: skip
    at.run()
    if cold:
        st.cache_data.clear()
        st.cache_resource.clear()
    t0 = time.perf_counter()
    at.switch_page(f"views/{page}.py").run()
    return time.perf_counter() - t0, len(at.exception)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: a temporary one)"
    )
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--products", type=int, default=150)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    console = Console()
    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="chainsync-dash-bench-")) / "data").resolve()
    prepare(data_dir, args.stores, args.products, args.days, console)

    os.environ["CHAINSYNC_DATA_DIR"] = str(data_dir)
    os.environ["CHAINSYNC_DASHBOARD_API_URL"] = "http://127.0.0.1:9"
    os.environ["CHAINSYNC_DASHBOARD_API_TIMEOUT_SECONDS"] = "0.5"
    from chainsync.serving import current_snapshot
    from chainsync.settings import get_settings

    get_settings.cache_clear()
    snap = current_snapshot(get_settings().serving)
    assert snap is not None
    rows = snap.manifest["tables"].get("fct_sales_daily", {}).get("rows", 0)

    table = Table(title=f"dashboard render time, snapshot {snap.version} ({rows:,} fct_sales_daily rows)")
    for column in (
        "page",
        "cold (s)",
        "warm median (s)",
        "warm max (s)",
        f"< {TARGET_SECONDS:.0f} s",
        "errors",
    ):
        table.add_column(column, justify="left" if column == "page" else "right")
    for page in PAGES:
        cold, errors = render(page, cold=True)
        warm = [render(page)[0] for _ in range(args.repeat)]
        worst = max(cold, *warm)
        table.add_row(
            page,
            f"{cold:.2f}",
            f"{statistics.median(warm):.2f}",
            f"{max(warm):.2f}",
            "yes" if worst < TARGET_SECONDS else "NO",
            str(errors),
        )
    console.print(table)
    console.print(f"data in {data_dir}")


if __name__ == "__main__":
    main()
