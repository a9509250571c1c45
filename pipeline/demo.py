"""``krx demo``: the whole chain end to end on embedded defaults (SQLite stores, the offline KIS simulator,
the real DAGs run with ``airflow dags test``); the chain itself is :mod:`pipeline.demo_chain`."""

from __future__ import annotations

from rich.console import Console

from pipeline.demo_chain import (
    INGEST_TIME,
    QUICK_BUDGET,
    Demo,
    DemoBudget,
    DemoFailed,
    last_closed_session,
    print_summary,
    run_chain,
)

__all__ = [
    "INGEST_TIME",
    "QUICK_BUDGET",
    "DemoBudget",
    "DemoFailed",
    "last_closed_session",
    "run_demo",
]


def run_demo(console: Console, budget: DemoBudget | None = None, *, seed: int | None = None) -> Demo:
    """Run the chain and print its summary; raises :class:`DemoFailed` naming the stage that failed."""
    demo = run_chain(console, budget or DemoBudget(), seed=seed)
    print_summary(demo)
    return demo
