"""The sales anomaly method judged on a real panel: Walmart's store x department weekly sales.

    uv run python bench/anomaly_real.py                          # three designs, seeds 1-4, 300 each
    uv run python bench/anomaly_real.py --designs level --seeds 7 --injections 100
    uv run python bench/anomaly_real.py --seeds 1,2,3,4,5,6,7,8 --injections 300,100,50   # the full grid

The panel has its own surprises (promotions, holiday weeks that move, negative weeks, short series), so
the method is scored three ways in one run:

- **clean**: the panel as published. Every flag there is counted as a false alarm in the injected runs too
  (the truth of a real week is not known), and the clean flags are listed by size.
- **injected**: isolated one-period changes, at most one per series and never on a series' first or last
  two periods, on series large enough to matter (median weekly sales ``--min-level`` or more), anywhere else
  including holiday weeks. Two designs:
  - ``multiply``: y × f, f in 0.5, 0.7, 1.3, 1.5, 2, 3 (a share of that week's own sales);
  - ``level``: y + k × the series' median weekly sales, k in -0.5, -0.3, +0.3, +0.5, +1, +2 (the sizes of
    the series' usual level a manager reads; on a holiday week that is a smaller share of the week), half of
    them placed on holiday weeks (``IsHoliday``) so the hard case is well represented;
  - ``mixed`` (added after the method was chosen, to validate on a design it was not tuned on): y × f with f
    drawn log-uniformly, half drops in 0.3–0.75, half spikes in 1.3–3, any week; recall is reported by band
    (0.3: f < 0.5, 0.5: 0.5 ≤ f ≤ 0.75, 1.3: f < 1.5, 1.5: f < 2, 2: f ≥ 2).
- Matching is strict: a flag is right only on an injected series and week. Precision = right / flags over
  the whole panel (the real panel's own flags count against it); recall = injected weeks flagged / injected.

Beside the method, in the same run, a naive baseline: the robust z-score of the 52-week difference
(y_t − y_{t−52}, median and scaled MAD per series), flagged at |z| ≥ 3.5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chainsync.anomalies import DetectConfig, detect_panel, with_id_columns  # noqa: E402
from tools.backtest import read_panel  # noqa: E402

WALMART = Path("/work/shared/datasets/walmart/train.csv.zip")
FREQ = "W-FRI"
ID_COLS = ["Store", "Dept"]
SIZES = {
    "multiply": (0.5, 0.7, 1.3, 1.5, 2.0, 3.0),
    "level": (-0.5, -0.3, 0.3, 0.5, 1.0, 2.0),
    # mixed: factors drawn at random (drops x0.3-0.75, spikes x1.3-3, log-uniform), reported by band
    "mixed": (0.3, 0.5, 1.3, 1.5, 2.0),
}
MIXED_DROPS = (0.3, 0.75)
MIXED_SPIKES = (1.3, 3.0)
BASELINE_Z = 3.5


def holiday_weeks(path: Path) -> pl.DataFrame:
    """ds of Walmart's IsHoliday weeks (Super Bowl, Labor Day, Thanksgiving, Christmas)."""
    import io
    import zipfile

    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.lower().endswith(".csv"))
        raw = pl.read_csv(io.BytesIO(archive.read(name)), columns=["Date", "IsHoliday"])
    return (
        raw.filter(pl.col("IsHoliday").cast(pl.String).str.to_uppercase() == "TRUE")
        .select(ds=pl.col("Date").str.to_datetime().cast(pl.Datetime("us")))
        .unique()
    )


def inject(
    panel: pl.DataFrame, design: str, seed: int, count: int, min_level: float, holidays: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The panel with ``count`` isolated changes and the truth: unique_id, ds, size (the design's f or k),
    y_before, y_after."""
    rng = np.random.default_rng(seed)
    stats = panel.group_by("unique_id").agg(
        level=pl.col("y").median(), n=pl.len(), first=pl.col("ds").min(), last=pl.col("ds").max()
    )
    eligible = stats.filter((pl.col("level") >= min_level) & (pl.col("n") >= 60)).sort("unique_id")
    chosen = eligible.sample(min(count, eligible.height), seed=seed)
    candidates = panel.join(chosen.select("unique_id", "level"), on="unique_id").with_columns(
        rank=pl.col("ds").rank("ordinal").over("unique_id"),
        n=pl.len().over("unique_id"),
        holiday=pl.col("ds").is_in(holidays["ds"].implode()),
    )
    candidates = candidates.filter((pl.col("rank") > 2) & (pl.col("rank") <= pl.col("n") - 2))
    picks = []
    for rows in candidates.partition_by("unique_id", maintain_order=True):
        pool = rows
        if design == "level" and rng.random() < 0.5 and rows["holiday"].any():
            pool = rows.filter(pl.col("holiday"))
        picks.append(pool.row(int(rng.integers(pool.height)), named=True))
    truth = pl.DataFrame(picks).select("unique_id", "ds", "y", "level")
    if design == "mixed":
        drop = rng.random(truth.height) < 0.5
        lo = np.where(drop, MIXED_DROPS[0], MIXED_SPIKES[0])
        hi = np.where(drop, MIXED_DROPS[1], MIXED_SPIKES[1])
        factor = np.exp(rng.uniform(np.log(lo), np.log(hi)))
        band = np.select(
            [factor < 0.5, factor <= 0.75, factor < 1.5, factor < 2.0], [0.3, 0.5, 1.3, 1.5], default=2.0
        )
        truth = truth.with_columns(factor=pl.Series(factor), size=pl.Series(band))
    else:
        sizes = np.array(SIZES[design])
        truth = truth.with_columns(size=pl.Series(rng.choice(sizes, truth.height)))
    if design == "mixed":
        after = pl.col("y") * pl.col("factor")
    elif design == "multiply":
        after = pl.col("y") * pl.col("size")
    else:
        after = pl.col("y") + pl.col("size") * pl.col("level")
    truth = truth.with_columns(y_before=pl.col("y"), y_after=after).drop("y", "level")
    if "factor" in truth.columns:
        truth = truth.drop("factor")
    injected = (
        panel.join(truth.select("unique_id", "ds", "y_after"), on=["unique_id", "ds"], how="left")
        .with_columns(y=pl.coalesce("y_after", "y"))
        .drop("y_after")
    )
    return injected, truth


def baseline_flags(panel: pl.DataFrame) -> pl.DataFrame:
    """Robust z of the 52-week difference per series, |z| >= BASELINE_Z."""
    lagged = panel.join(
        panel.select("unique_id", ds=pl.col("ds") + pl.duration(weeks=52), y_lag=pl.col("y")),
        on=["unique_id", "ds"],
    ).with_columns(diff=pl.col("y") - pl.col("y_lag"))
    centre = pl.col("diff").median().over("unique_id")
    mad = (pl.col("diff") - centre).abs().median().over("unique_id") * 1.4826
    return lagged.with_columns(z=(pl.col("diff") - centre) / mad).filter(pl.col("z").abs() >= BASELINE_Z)


def score(flags: pl.DataFrame, truth: pl.DataFrame) -> dict[str, object]:
    hits = truth.join(flags.select("unique_id", "ds"), on=["unique_id", "ds"], how="inner")
    right = hits.height
    precision = right / flags.height if flags.height else 0.0
    recall = right / truth.height if truth.height else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    by_size = (
        truth.with_columns(
            found=pl.struct("unique_id", "ds").is_in(hits.select("unique_id", "ds").to_struct().implode())
        )
        .group_by("size")
        .agg(n=pl.len(), found=pl.col("found").sum())
        .sort("size")
    )
    return {"flags": flags.height, "right": right, "p": precision, "r": recall, "f1": f1, "by_size": by_size}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--panel", type=Path, default=WALMART)
    parser.add_argument("--designs", default="multiply,level,mixed")
    parser.add_argument("--seeds", default="1,2,3,4")
    parser.add_argument(
        "--injections", default="300", help="injected weeks per run; a comma list runs each count"
    )
    parser.add_argument("--min-level", type=float, default=5000.0, help="median weekly sales of a series")
    parser.add_argument("--z", type=float, default=DetectConfig.z)
    parser.add_argument("--min-effect", type=float, default=DetectConfig.min_effect)
    parser.add_argument("--scale-floor", type=float, default=DetectConfig.scale_floor)
    parser.add_argument("--isolation", type=float, default=DetectConfig.isolation, help="0: no test")
    parser.add_argument("--precedent", type=float, default=DetectConfig.precedent, help="0: no test")
    parser.add_argument("--company", type=int, default=DetectConfig.company, help="0: no test")
    args = parser.parse_args()
    config = DetectConfig(
        z=args.z,
        min_effect=args.min_effect,
        scale_floor=args.scale_floor,
        isolation=args.isolation,
        precedent=args.precedent,
        company=args.company,
    )

    started = time.perf_counter()
    panel = with_id_columns(read_panel(args.panel, ID_COLS, "Date", "Weekly_Sales"), ID_COLS)
    holidays = holiday_weeks(args.panel)
    print(
        f"panel: {panel['unique_id'].n_unique()} series, {panel.height} rows, read in "
        f"{time.perf_counter() - started:.1f} s; config {config}"
    )

    started = time.perf_counter()
    clean = detect_panel(panel, freq=FREQ, config=config, peer_columns=tuple(ID_COLS))
    seconds = time.perf_counter() - started
    clean_base = baseline_flags(panel)
    print(
        f"clean panel: method {clean.height} flags in {seconds:.1f} s "
        f"(up {int((clean['direction'] == 'up').sum())}, down {int((clean['direction'] == 'down').sum())}); "
        f"baseline {clean_base.height} flags"
    )

    rows = []
    counts = [int(c) for c in args.injections.split(",") if c.strip()]
    for count in counts:
        for design in [d.strip() for d in args.designs.split(",") if d.strip()]:
            for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
                injected, truth = inject(panel, design, seed, count, args.min_level, holidays)
                started = time.perf_counter()
                flags = detect_panel(injected, freq=FREQ, config=config, peer_columns=tuple(ID_COLS))
                seconds = time.perf_counter() - started
                for name, result in (
                    ("method", score(flags, truth)),
                    ("baseline", score(baseline_flags(injected), truth)),
                ):
                    rows.append((design, seed, name, result, count))

    print("\n| design | seed | detector | injected | flags | right | precision | recall | F1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for design, seed, name, r, _ in rows:
        print(
            f"| {design} | {seed} | {name} | {r['by_size']['n'].sum()} | {r['flags']} | {r['right']} | "
            f"{r['p']:.2f} | {r['r']:.2f} | {r['f1']:.2f} |"
        )
    print("\nrecall by size (found / injected):")
    for design in dict.fromkeys(d for d, *_ in rows):
        sizes = SIZES[design]
        label = "k" if design == "level" else "f"
        heads = [f"{label}={s:g}" for s in sizes]
        if design == "mixed":
            heads = ["f 0.3-0.5", "f 0.5-0.75", "f 1.3-1.5", "f 1.5-2", "f 2-3"]
        print(f"\n| {design} | seed | injected | detector | " + " | ".join(heads) + " |")
        print("|---|---|---|---|" + "---|" * len(sizes))
        for d, seed, name, r, count in rows:
            if d != design:
                continue
            found = {row["size"]: (row["found"], row["n"]) for row in r["by_size"].iter_rows(named=True)}
            cells = [f"{found[s][0]}/{found[s][1]}" if s in found else "-" for s in sizes]
            print(f"| | {seed} | {count} | {name} | " + " | ".join(cells) + " |")
    print("\nthe method's worst run per design and count (precision, recall over the seeds):")
    for design in dict.fromkeys(d for d, *_ in rows):
        for count in counts:
            runs = [r for d, _, name, r, c in rows if d == design and name == "method" and c == count]
            p = min(cast(float, r["p"]) for r in runs)
            rec = min(cast(float, r["r"]) for r in runs)
            print(f"  {design} {count}: P >= {p:.2f}, R >= {rec:.2f} over {len(runs)} seeds")


if __name__ == "__main__":
    main()
