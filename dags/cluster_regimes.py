"""
### cluster_regimes

Runs whenever `validate_and_featurize` updates the Asset `features`, and fits the market-regime model of
every model spec (`pipeline.registry.specs`: `kospi200f-1d`, `stocks-1d`, `kospi200f-1m` and any spec in
`KRX_MODEL_SPECS`), one mapped task per spec:

1. reads the spec's stored bars (up to the run's time) and cuts its walk-forward folds;
2. fits the regime model (`pipeline.regimes`: GaussianMixture or KMeans, K chosen by BIC or silhouette) on
   the spec's **training window only** — the first fold's training window, i.e. the bars before the first
   validation window less the embargo, so no validation or test bar shapes the labels; one model pooled
   over every symbol of a universe spec;
3. labels every stored bar causally and writes the labels to the `regimes` table, keyed by
   (symbol, interval, ts, spec) — a refit replaces the spec's labels, a rerun changes nothing;
4. logs a run `<spec>-regimes` to the spec's MLflow experiment (`krx-a3c-<spec>`): K and the criterion's
   score of every K tried, each regime's mean next-bar return, annualised volatility and share of time,
   the summary CSV, a price chart coloured by regime, and the fitted model.

A spec without enough bars for its folds is **skipped** (its task shows why). When at least one spec was
fitted, the run emits the Asset `regimes` with the fitted specs in its extra
(`pipeline.registry.contracts.RegimesExtra`), which starts `train_agent` for them.
Param `specs` limits the run to some specs (empty: every spec).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Param, dag, task
from krx_assets import FEATURES, REGIMES, REGIMES_WRITTEN, TZ_NAME

if TYPE_CHECKING:
    from pipeline.registry.contracts import RegimesExtra, RegimesSummary


@dag(
    dag_id="cluster_regimes",
    schedule=[FEATURES],
    start_date=pendulum.datetime(2025, 1, 1, tz=TZ_NAME),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["krx", "ml", "regimes"],
    doc_md=__doc__,
    params={
        "specs": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Model specs to fit (empty: every spec the settings know).",
        )
    },
)
def cluster_regimes() -> None:
    @task
    def specs_to_fit(*, params: Any = None) -> list[str]:
        from pipeline.registry.specs import spec_names

        return list(params["specs"]) or spec_names()

    @task(map_index_template="{{ task.op_kwargs['spec'] }}")
    def fit_regimes(spec: str, *, logical_date: Any = None, dag_run: Any = None) -> RegimesSummary:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.registry.regimes import cluster_spec

        # Asset-triggered runs have no logical date: their data is what was stored when they were queued.
        summary = cluster_spec(spec, end=logical_date or dag_run.run_after)
        if summary["status"] == "skipped":
            raise AirflowSkipException(summary["reason"])
        return summary

    @task(outlets=[REGIMES_WRITTEN], trigger_rule="none_failed")
    def announce(summaries: Any, *, outlet_events: Any = None) -> RegimesExtra | None:
        from pipeline.registry.regimes import regimes_extra

        extra = regimes_extra(list(summaries[:]))  # a slice: one request for every mapped XCom
        if extra is not None:
            outlet_events[REGIMES_WRITTEN].add(REGIMES, extra=dict(extra))
        return extra

    announce(fit_regimes.expand(spec=specs_to_fit()))


cluster_regimes()
