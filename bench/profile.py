"""Where the API's CPU goes while it ingests: py-spy samples ``chainsync api`` (one process, SQLite) under
the ingest bench's load and prints the functions that held the GIL most (inclusive shares).

    uv pip install py-spy   # a profiling tool, not a dependency of the project
    uv run --no-sync python bench/profile.py [--batch 100] [--clients 8] [--seconds 6] [--out profile.txt]

(``--no-sync``: a plain ``uv run`` syncs the environment to the lock file first, which removes py-spy.)

Only samples of threads holding the GIL are kept (``py-spy --gil``): in one API process that is the
Python CPU the event loop and the writer thread compete for. The raw collapsed stacks go to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import build_bodies, turn_bodies  # noqa: E402
from loadgen import api_env, free_port, post_loop, start_api, stop, wait_ready  # noqa: E402

# Frames worth naming in a summary: the request path's stages, in the order a request meets them.
WATCHED = (
    "HttpToolsProtocol.data_received",
    "RequestContextMiddleware.__call__",
    "FirewallMiddleware.__call__",
    "suspicious_body",
    "solve_dependencies",
    "get_current_principal",
    "fast_path",
    "_Decoder.events",
    "check_and_finish",
    "event_row",
    "publish_ingested",
    "RequestResponseCycle.send",
    "append_terminal",
    "append_in_transaction",
    "_check",
    "_record",
    "add_sales",
    "run_in_threadpool",
)


def summarise(raw: Path, top: int) -> list[str]:
    """Inclusive shares of the watched frames, then the ``top`` functions by own (self) samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [re.sub(r" \(.*\)$", "", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    out = [f"samples holding the GIL: {total}", "inclusive:"]
    out += [f"  {100 * inclusive[n] / total:5.1f} %  {n}" for n in WATCHED if inclusive[n]]
    out.append(f"self (top {top}):")
    out += [f"  {100 * v / total:5.1f} %  {n}" for n, v in own.most_common(top)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0, help="sampling time")
    parser.add_argument("--max-batches", type=int, default=2000)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "chainsync-profile.txt")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: uv pip install py-spy, then uv run --no-sync ...")

    env = api_env(Path(tempfile.mkdtemp(prefix="chainsync-bench-profile-")))
    os.environ.update(env)
    from chainsync.ops_store import get_engine
    from chainsync.ops_store.users import create_device_key
    from chainsync.settings import get_settings

    key = create_device_key(get_engine(get_settings().ops_store), "S001", "POS-01")
    bodies = build_bodies(args.max_batches, args.batch, single=args.batch == 1)
    port = free_port()
    proc = start_api(port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/api/observability/health", proc)

        def load(turn: int, limit: int | None, seconds: float) -> None:
            asyncio.run(
                post_loop(
                    [f"{base}/api/events/sales"],
                    turn_bodies(bodies[:limit] if limit else bodies, turn),
                    [{"X-API-Key": key}],
                    clients=args.clients,
                    seconds=seconds,
                    items_per_body=args.batch,
                    ok=lambda r: r.status_code in (200, 201),
                    server_pids=[proc.pid],
                )
            )

        load(1, args.clients, 60.0)  # warm-up
        # Sampling starts with the load and lasts ``--seconds``; the load runs a little longer.
        sampler = subprocess.Popen(
            [spy, "record", "--gil", "-r", "250", "-f", "raw", "-o", str(args.out)]
            + ["--pid", str(proc.pid), "--duration", str(int(args.seconds))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        load(2, None, args.seconds + 2)
        sampler.wait(timeout=60)
    finally:
        stop(proc)
    print(f"chainsync api, {args.clients} clients posting {args.batch} sale events a request:")
    print("\n".join(summarise(args.out, args.top)))


if __name__ == "__main__":
    main()
