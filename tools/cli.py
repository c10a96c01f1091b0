"""The `chainsync` command line. Heavy libraries are imported inside each command, so `--help` is instant."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tools.progress import console, progress_bar

app = typer.Typer(
    name="chainsync",
    help="ChainSync Analytics: generate a demo chain, import events, run the pipeline, serve the API.",
    no_args_is_help=True,
    add_completion=False,
)
pipeline_app = typer.Typer(help="Materialize and inspect the Dagster asset graph.", no_args_is_help=True)
users_app = typer.Typer(help="Manage users and device API keys in the ops store.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
security_app = typer.Typer(help="Maintain the security state in the ops store.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(security_app, name="security")


def _settings():  # type: ignore[no-untyped-def]
    from chainsync.settings import get_settings

    return get_settings()


def _engine():  # type: ignore[no-untyped-def]
    from chainsync.ops_store import get_engine

    return get_engine(_settings().ops_store)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Output directory for the generated chain.")] = Path("data/demo"),
    stores: Annotated[int, typer.Option(min=1, max=200, help="Number of stores.")] = 10,
    products: Annotated[int, typer.Option(min=5, max=5000, help="Number of products.")] = 150,
    days: Annotated[int, typer.Option(min=28, max=3 * 366, help="Days of daily history.")] = 730,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same chain.")] = 42,
    end: Annotated[
        str | None,
        typer.Option(
            "--end",
            "--end-date",
            help="Last day of history (YYYY-MM-DD); default yesterday. Pin it and a seed gives the same "
            "chain on any day.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing chain in OUT.")] = False,
) -> None:
    """Generate a seeded synthetic store chain (Parquet) with planted, labelled anomalies."""
    from tools.generator import generate_chain

    if (out / "manifest.json").exists() and not force:
        console.print(f"[yellow]{out} already holds a generated chain; use --force to replace it.[/]")
        raise typer.Exit(0)
    end_day = date.fromisoformat(end) if end else None
    with progress_bar() as bar:
        summary = generate_chain(
            out, stores=stores, products=products, days=days, seed=seed, end=end_day, progress=bar
        )
    console.print(summary)


@app.command("import")
def import_(
    path: Annotated[
        Path, typer.Argument(help="A generated chain directory, or a CSV of daily sales.", exists=True)
    ],
    batch_size: Annotated[int, typer.Option(min=100, max=100_000, help="Events per transaction.")] = 5000,
    store_col: Annotated[str, typer.Option(help="CSV: store id column.")] = "store_id",
    product_col: Annotated[str, typer.Option(help="CSV: product id column.")] = "product_id",
    date_col: Annotated[str, typer.Option(help="CSV: date column.")] = "date",
    units_col: Annotated[str, typer.Option(help="CSV: units sold column.")] = "units",
    revenue_col: Annotated[str, typer.Option(help="CSV: revenue in cents column.")] = "revenue_cents",
) -> None:
    """Load a generated chain or a CSV of historical daily sales into the ops store, in batches."""
    from tools import importer

    engine = _engine()
    with progress_bar() as bar:
        if path.is_dir():
            summary = importer.import_generated(engine, path, batch_size=batch_size, progress=bar)
        else:
            summary = importer.import_daily_sales_csv(
                engine,
                path,
                store_col=store_col,
                product_col=product_col,
                date_col=date_col,
                units_col=units_col,
                revenue_col=revenue_col,
                batch_size=batch_size,
                progress=bar,
            )
    console.print(summary)


@pipeline_app.command("run")
def pipeline_run(
    select: Annotated[
        str | None, typer.Option(help="Dagster asset selection (e.g. 'raw_sales_events+'); default all.")
    ] = None,
    job: Annotated[
        str | None,
        typer.Option(
            help="marts_job (only what new events touch, as the sensor runs it) or forecast_job (the daily "
            "refit); default the whole graph."
        ),
    ] = None,
) -> None:
    """Materialize the asset graph in-process (incremental: only new events are read)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from pipelines.run import run_pipeline

    result = run_pipeline(_settings(), selection=select, console=console, job=job)
    if not result.success:
        raise typer.Exit(1)


@app.command()
def backtest(
    path: Annotated[
        Path, typer.Argument(help="Panel CSV (or a .zip holding one): one row per series and period.")
    ],
    id_cols: Annotated[str, typer.Option(help="Comma-separated series id columns (joined by '_').")],
    date_col: Annotated[str, typer.Option(help="Period column (date or date-time).")],
    target: Annotated[str, typer.Option(help="Value column to forecast.")],
    freq: Annotated[
        str, typer.Option(help="Frequency: D, W-FRI, MS, ... (season 7 daily, 52 weekly).")
    ] = "D",
    horizon: Annotated[int, typer.Option(min=1, max=1000, help="Periods held out and forecast.")] = 13,
    forecasts_out: Annotated[
        Path | None,
        typer.Option(
            help="Write our forecasts (unique_id, ds, yhat, lo/hi_80, lo/hi_95) here, every origin's rows."
        ),
    ] = None,
    baselines: Annotated[
        str,
        typer.Option(
            help="Comma-separated baselines to run beside ours: SeasonalNaive, AutoETS, AutoTheta, MSTL "
            "(statsforecast, per series), LightGBM (mlforecast, one model across series); 'none' for none."
        ),
    ] = "SeasonalNaive,AutoETS",
    holidays: Annotated[
        str,
        typer.Option(
            help="Country of the holiday calendar whose effects every method gets (ours and the baselines; "
            "daily, weekly data); 'none' for none."
        ),
    ] = "US",
    origins: Annotated[
        int,
        typer.Option(
            min=1,
            max=52,
            help="Rolling origins: hold-outs of HORIZON periods back to back, ending at the end.",
        ),
    ] = 1,
    until: Annotated[
        str | None,
        typer.Option(help="Use the panel only up to this date (YYYY-MM-DD), e.g. for a development split."),
    ] = None,
    global_model: Annotated[
        str | None,
        typer.Option(help="Our method's global LightGBM candidate: auto, on, off (default: the setting)."),
    ] = None,
) -> None:
    """Hold out the last HORIZON periods (or ORIGINS rolling hold-outs), forecast them, print MASE / WAPE /
    coverage beside the baselines, per origin and their mean."""
    import polars as pl
    from rich.table import Table

    from tools.backtest import MethodScore, parse_baselines, read_panel, run_backtest, write_forecasts

    if not path.exists():
        console.print(f"[red]{path} does not exist[/]")
        raise typer.Exit(2)
    try:
        panel = read_panel(path, [c.strip() for c in id_cols.split(",") if c.strip()], date_col, target)
        if until is not None:
            try:
                last = date.fromisoformat(until)
            except ValueError:
                raise ValueError(f"--until: {until!r} is not a date (YYYY-MM-DD)") from None
            panel = panel.filter(pl.col("ds").cast(pl.Date) <= last)
        result = run_backtest(
            panel,
            freq=freq,
            horizon=horizon,
            baselines=parse_baselines(baselines),
            holidays=None if holidays.strip().lower() in ("", "none") else holidays.strip(),
            origins=origins,
            global_model=global_model,
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None

    def score_table(title: str, scores: list[MethodScore]) -> Table:
        table = Table(title=title)
        for column in ("method", "MASE", "WAPE", "80% coverage", "95% coverage", "seconds"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for s in scores:
            table.add_row(
                s.name,
                f"{s.mase:.3f}",
                f"{s.wape:.3f}",
                f"{s.coverage_80:.1%}",
                f"{s.coverage_95:.1%}",
                f"{s.seconds:.1f}",
            )
        return table

    for origin in result.origins:
        Console().print(
            score_table(
                f"Hold-out {horizon} periods from {origin.test_start[:10]} (season {result.season}); "
                f"{origin.series_scored} of {origin.series_total} series scored (complete history)",
                origin.scores,
            )
        )
        counts = origin.models.group_by("pattern", "model").len().sort("len", descending=True)
        console.print(
            "models chosen: "
            + ", ".join(f"{r['pattern']}/{r['model']} {r['len']}" for r in counts.iter_rows(named=True))
        )
    if len(result.origins) > 1:
        Console().print(
            score_table(f"Mean over the {len(result.origins)} origins (seconds: total)", result.mean_scores())
        )
    if forecasts_out is not None:
        write_forecasts(result.forecasts, forecasts_out)
        console.print(f"forecasts written to {forecasts_out} ({result.forecasts.height} rows)")


@app.command()
def detect(
    path: Annotated[
        Path, typer.Argument(help="Panel CSV (or a .zip holding one): one row per series and period.")
    ],
    id_cols: Annotated[str, typer.Option(help="Comma-separated series id columns (joined by '_').")],
    date_col: Annotated[str, typer.Option(help="Period column (date or date-time).")],
    target: Annotated[str, typer.Option(help="Value column to score.")],
    out: Annotated[Path, typer.Option(help="Write the flags here (CSV: unique_id, ds, score, ...).")],
    freq: Annotated[str, typer.Option(help="Frequency: D, W-FRI, MS, ... (the panel's grid).")] = "D",
    since: Annotated[
        str | None, typer.Option(help="Write only flags on or after this date (YYYY-MM-DD).")
    ] = None,
    z: Annotated[float, typer.Option(min=0.5, help="Robust z a flagged period reaches.")] = 3.5,
    min_effect: Annotated[
        float, typer.Option(min=0.0, help="Smallest change flagged, as a share of the expected value.")
    ] = 0.2,
    min_amount_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Smallest change flagged, as a share of the panel's median series level (units of y).",
        ),
    ] = 0.5,
    holidays: Annotated[
        str, typer.Option(help="Holiday calendar matching moving holidays across years; 'none' for none.")
    ] = "US",
    isolation: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Largest |z| an adjacent period may show for a period to count as isolated (0: no test).",
        ),
    ] = 2.5,
    precedent: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="A flagged |z| is at least this many times the series' largest same-side |z| elsewhere "
            "(0: no test).",
        ),
    ] = 1.5,
    company: Annotated[
        int,
        typer.Option(
            min=0,
            help="Neighbour series unusual in the same direction that period that make it a shared event "
            "(0: no test).",
        ),
    ] = 2,
) -> None:
    """Flag the periods of any panel that depart from their series' neighbours, peers and other years:
    the method behind the pipeline's sales_anomalies (chainsync/anomalies/sales.py)."""
    import time

    import polars as pl

    from chainsync.anomalies import DetectConfig, detect_panel, with_id_columns
    from tools.backtest import read_panel

    if not path.exists():
        console.print(f"[red]{path} does not exist[/]")
        raise typer.Exit(2)
    ids = [c.strip() for c in id_cols.split(",") if c.strip()]
    try:
        since_day = date.fromisoformat(since) if since else None
    except ValueError:
        console.print(f"[red]--since: {since!r} is not a date (YYYY-MM-DD)[/]")
        raise typer.Exit(2) from None
    config = DetectConfig(
        z=z,
        min_effect=min_effect,
        min_amount_share=min_amount_share,
        holidays=None if holidays.strip().lower() in ("", "none") else holidays.strip(),
        isolation=isolation,
        precedent=precedent,
        company=company,
    )
    started = time.perf_counter()
    try:
        panel = with_id_columns(read_panel(path, ids, date_col, target), ids)
        flags = detect_panel(
            panel,
            freq=freq,
            config=config,
            since=since_day,
            peer_columns=tuple(c for c in ids if c in panel.columns) if len(ids) > 1 else (),
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    ds = flags["ds"]
    has_time = bool((ds.dt.hour() != 0).any() or (ds.dt.minute() != 0).any())
    out.parent.mkdir(parents=True, exist_ok=True)
    flags.with_columns(pl.col("ds") if has_time else pl.col("ds").cast(pl.Date)).write_csv(out)
    console.print(
        f"{flags.height} flagged periods ({int((flags['direction'] == 'up').sum())} up, "
        f"{int((flags['direction'] == 'down').sum())} down) in {panel['unique_id'].n_unique()} series, "
        f"{panel.height} rows, {time.perf_counter() - started:.1f} s; written to {out}"
    )


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Uvicorn worker processes.")] = 1,
) -> None:
    """Serve the FastAPI application with uvicorn (``--workers N``: N processes on one port), with the
    connection timeouts of :mod:`api.server`.

    Each worker builds its own app from the same settings. Several workers, or several ``chainsync api``
    on other ports or hosts, share what a user sees only through shared stores: set
    ``CHAINSYNC_OPS_STORE_URL`` (PostgreSQL) and ``CHAINSYNC_REDIS_URL`` (rate limits, WebSocket fan-out,
    pushed revocations and blocks); on the SQLite default each process fans out only its own sales."""
    from api.server import serve

    settings = _settings()
    settings.jwt_key()  # fail fast, with a clear message, on a missing secret
    if workers > 1 and not settings.redis_url:
        console.print(
            "[yellow]--workers without CHAINSYNC_REDIS_URL: each worker counts rate limits and fans out "
            "WebSocket messages on its own.[/]"
        )
    serve(settings, host=host, port=port, workers=workers)


@app.command()
def simulate(
    api: Annotated[str, typer.Option(help="Base URL of the running API.")] = "http://127.0.0.1:8000",
    terminals: Annotated[int, typer.Option(min=1, max=200, help="Terminals (threads) to run.")] = 5,
    store: Annotated[str, typer.Option(help="Store the terminals belong to.")] = "S001",
    sales: Annotated[int, typer.Option(min=1, max=100_000, help="Sales per terminal.")] = 100,
    key: Annotated[
        list[str] | None, typer.Option(help="Device API key per terminal (repeatable), as DEVICE=KEY or KEY.")
    ] = None,
    create_keys: Annotated[
        bool, typer.Option(help="Issue keys for SIM-01..SIM-N at STORE in the local ops store.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Items per upload.")] = 25,
    offline_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Chance per sale of going offline.")
    ] = 0.05,
    duplicate_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Chance per upload of re-sending acknowledged items.")
    ] = 0.05,
    edit_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Chance per sale of a shelf-label edit.")
    ] = 0.02,
    bad_rate: Annotated[float, typer.Option(min=0, max=1, help="Chance per sale of a malformed item.")] = 0.0,
    max_skew: Annotated[int, typer.Option(min=0, max=86_400, help="Largest clock skew, seconds.")] = 900,
    deadline: Annotated[float, typer.Option(min=1, max=24 * 3600, help="Wall-clock bound, seconds.")] = 120.0,
    pace: Annotated[float, typer.Option(min=0, max=60, help="Pause between sales, seconds.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Play a store day on N terminals against the running API: offline spells, retries with the same
    mutation ids, duplicates and skewed clocks; print sold vs acknowledged."""
    import json

    from tools.simulator import SimulationConfig, run_simulation

    keys: list[tuple[str, str]] = []
    for i, given in enumerate(key or []):
        device, _, secret = given.rpartition("=") if "=" in given else (f"SIM-{i + 1:02d}", "", given)
        keys.append((device, secret))
    if create_keys:
        from chainsync.ops_store.users import create_device_key

        engine = _engine()
        keys.extend(
            (f"SIM-{i + 1:02d}", create_device_key(engine, store, f"SIM-{i + 1:02d}"))
            for i in range(len(keys), terminals)
        )
    if len(keys) < terminals:
        console.print(f"[red]{terminals} terminals need {terminals} keys; pass --key or --create-keys[/]")
        raise typer.Exit(2)
    config = SimulationConfig(
        api=api.rstrip("/"),
        store_id=store,
        keys=keys[:terminals],
        sales_per_terminal=sales,
        batch_size=batch_size,
        offline_rate=offline_rate,
        duplicate_rate=duplicate_rate,
        edit_rate=edit_rate,
        bad_rate=bad_rate,
        max_skew_seconds=max_skew,
        deadline_seconds=deadline,
        pace_seconds=pace,
        seed=seed,
    )
    report = run_simulation(config)
    summary = report.summary()
    typer.echo(json.dumps(summary, indent=2))
    if summary["sales_unacknowledged"]:
        console.print(f"[yellow]{summary['sales_unacknowledged']} sales still queued on terminals[/]")
        raise typer.Exit(1)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin, manager or cashier.")] = "manager",
    store: Annotated[list[str] | None, typer.Option(help="Store id the user may see (repeatable).")] = None,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Password (prompted).")
    ] = "",
) -> None:
    """Create a user or reset its password, role and stores."""
    from chainsync.ops_store.users import upsert_user

    if len(password) < 8:
        console.print("[red]password must be at least 8 characters[/]")
        raise typer.Exit(2)
    user = upsert_user(_engine(), username, password, role, store or [])  # type: ignore[arg-type]
    console.print(f"user {user.username} ({user.role}) stores={sorted(user.store_ids) or 'all'}")


@users_app.command("device-key")
def users_device_key(
    store: Annotated[str, typer.Option(help="Store the terminal belongs to.")],
    device: Annotated[str, typer.Option(help="Terminal id.")],
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Days until the key stops working (default: never).")
    ] = None,
) -> None:
    """Issue an API key for a POS terminal (shown once; only its hash is stored)."""
    from chainsync.ops_store.users import create_device_key

    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    key = create_device_key(_engine(), store, device, expires_at=expires)
    typer.echo(key)


@users_app.command("rotate-device-key")
def users_rotate_device_key(
    store: Annotated[str, typer.Option(help="Store the terminal belongs to.")],
    device: Annotated[str, typer.Option(help="Terminal id.")],
    grace_hours: Annotated[
        float, typer.Option(min=0, max=24 * 90, help="Hours the terminal's old keys keep working.")
    ] = 24.0,
    expires_in_days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="Days until the new key stops (default: never)."),
    ] = None,
) -> None:
    """Issue a new key for a terminal and retire its old ones after a grace period (the new key is
    printed once on stdout; what was retired goes to stderr)."""
    from chainsync.ops_store.users import rotate_device_key

    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    key, retiring = rotate_device_key(
        _engine(), store, device, grace=timedelta(hours=grace_hours), expires_at=expires
    )
    console.print(
        f"retiring {', '.join(retiring) or 'no other key'} of {store}/{device} in {grace_hours:g} h"
    )
    typer.echo(key)


@security_app.command("prune")
def security_prune() -> None:
    """Forget IP reputations that no longer change any decision (the API also does this hourly): no block
    in force and a score decayed below 1 % of CHAINSYNC_RISK_BLOCK_SCORE, and, for an address that was
    ever blocked, nothing about it for CHAINSYNC_RISK_REPUTATION_RETENTION_DAYS."""
    from datetime import UTC, datetime

    from chainsync.ops_store.reputation import ReputationRetention, prune_reputations

    keep = ReputationRetention.from_settings(_settings())
    deleted = prune_reputations(_engine(), datetime.now(UTC), keep)
    console.print(f"pruned {deleted} ip_reputation rows")


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 8501,
) -> None:
    """Serve the Streamlit dashboards on 127.0.0.1."""
    import subprocess
    import sys

    app_path = Path(__file__).resolve().parent.parent / "dashboards" / "app.py"
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path),
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    raise typer.Exit(subprocess.call(cmd))


@app.command()
def demo(
    stores: Annotated[int, typer.Option(min=1, max=200, help="Stores in the demo chain.")] = 10,
    products: Annotated[int, typer.Option(min=5, max=5000, help="Products in the demo chain.")] = 150,
    days: Annotated[int, typer.Option(min=28, max=3 * 366, help="Days of history in the demo chain.")] = 730,
    api_port: Annotated[int, typer.Option(min=1, max=65535, help="API port.")] = 8000,
    dagster_port: Annotated[int, typer.Option(min=1, max=65535, help="Dagster UI port.")] = 3000,
    dashboard_port: Annotated[int, typer.Option(min=1, max=65535, help="Streamlit port.")] = 8501,
    skip_pipeline: Annotated[bool, typer.Option(help="Start the services without materializing.")] = False,
) -> None:
    """Generate (if absent), import, materialize, then run the API, Dagster UI and Streamlit until Ctrl-C."""
    from tools.demo import DemoOptions, run_demo

    options = DemoOptions(
        stores=stores,
        products=products,
        days=days,
        api_port=api_port,
        dagster_port=dagster_port,
        dashboard_port=dashboard_port,
        skip_pipeline=skip_pipeline,
    )
    raise typer.Exit(run_demo(options, console=console))


if __name__ == "__main__":
    app()
