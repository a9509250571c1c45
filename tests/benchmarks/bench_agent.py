"""Benchmark: the agent judged on real KRX bars (``shared/data/krx``) — yearly walk-forward test folds
(2013-2019), validation before each year, an embargo, 5 seeds, each ETF's own costs — against buy-and-hold,
SMA crossover, momentum and random (``krx evaluate`` without the CLI).

Usage: python tests/benchmarks/bench_agent.py [--quick] [--steps N] [--seeds N] [--tuning PATH]
(``--tuning``: the configuration ``krx evaluate --tune`` chose, its trials counted in the deflated Sharpe)
Ends with one JSON line: folds_beat_bh (target >= 0.6), pairs_beat_bh (>= 0.5), mdd_not_worse (>= 0.8),
mean_sharpe_agent, mean_sharpe_bh (the named baseline, same run), their gap (and ratio when buy-and-hold's
Sharpe is positive), dsr_prob (reported
whatever it is), the bootstrap interval of the Sharpe gap, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "krx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one ETF, one year, 2 seeds (CI smoke run)")
    parser.add_argument("--steps", type=int, default=20_000, help="training steps per (ETF, year, seed)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--symbols", default="", help="comma-separated subset of the shared ETFs")
    parser.add_argument("--tuning", type=Path, help="tuning.json of `krx evaluate --tune` (its choice)")
    args = parser.parse_args()

    from pipeline.backtest.evaluation import AgentEvaluationConfig, evaluate_agent, load_through_store
    from pipeline.store.db import get_engine

    config = AgentEvaluationConfig(seeds=tuple(range(args.seeds)), total_steps=args.steps)
    wanted = {s for s in args.symbols.split(",") if s}
    if args.quick:
        config = AgentEvaluationConfig(years=(2019,), seeds=(0, 1), total_steps=1_000, n_workers=1)
        wanted = {"229200"}
    if args.tuning is not None:
        from pipeline.backtest.tuning import chosen_config

        config = chosen_config(args.tuning, config)
    paths = [p for p in sorted(DATA.glob("*.csv")) if not wanted or p.stem in wanted]
    if not paths:
        raise SystemExit(f"no KRX CSVs in {DATA}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        bars, _ = load_through_store(paths, get_engine(f"sqlite:///{tmp}/store.db"))
        evaluation = evaluate_agent(bars, config, progress=lambda line: print(line, flush=True))
    wall = time.perf_counter() - started
    h, d = evaluation.headline, evaluation.details
    ci = d.get("sharpe_gap_ci", {})
    figures = {
        **{k: round(v, 4) for k, v in h.items()},
        "sharpe_gap_vs_bh": round(h["mean_sharpe_agent"] - h["mean_sharpe_bh"], 4),
        # A ratio only means something against a positive baseline Sharpe.
        "sharpe_ratio_vs_bh": round(h["mean_sharpe_agent"] / h["mean_sharpe_bh"], 4)
        if h["mean_sharpe_bh"] > 0
        else None,
        "sharpe_gap_ci_low": round(ci.get("low", float("nan")), 4),
        "sharpe_gap_ci_high": round(ci.get("high", float("nan")), 4),
        "policy": config.policy,
        **{
            f"{name}_{key}": round(value, 4)
            for name, figures in d.get("policies", {}).items()
            for key, value in figures.items()
            if key != "mean_sharpe_bh"
        },
        "n_folds": d.get("n_folds", 0),
        "n_pairs": d.get("n_pairs", 0),
        "n_trials": d.get("n_trials", 0),
        "instruments": len(bars),
        "seeds": len(config.seeds),
        "steps_per_training": config.total_steps,
        "wall_s": round(wall, 1),
        "targets_met": bool(
            h["folds_beat_bh"] >= 0.6 and h["pairs_beat_bh"] >= 0.5 and h["mdd_not_worse"] >= 0.8
        ),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
