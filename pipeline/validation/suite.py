"""The Great Expectations 1.x suite for bars, as code, and one cached ephemeral GX context per process."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.validation.offline import make_offline

log = logging.getLogger(__name__)

SUITE_NAME = "bars"
PRICES = ("open", "high", "low", "close")
#: Columns the validated (typed) frame carries: the bar itself plus derived per-row checks.
#: ``ts_in_session`` is 1.0 when the bar lies inside its session (0.0 outside, NaN when ts is unknown);
#: ``max_move_over_limit`` is the largest |price / reference - 1| divided by the price limit;
#: ``volume_fraction`` is volume minus its integer part (the store keeps whole shares/contracts);
#: ``symbol_valid`` / ``interval_known`` are 1.0 when the store's symbol rule / interval set accept the
#: value (0.0 otherwise, NaN when missing), so every good row can be stored.
DERIVED = ("ts_in_session", "max_move_over_limit", "volume_fraction", "symbol_valid", "interval_known")
KEY = ("symbol", "interval", "ts")
# Prices quoted at the limit are rounded to the tick toward the previous close, so a legal move is at most
# exactly the limit; the epsilon only absorbs float division.
LIMIT_EPS = 1e-9


def build_bars_suite() -> Any:
    """The bars suite: schema/non-null, symbol rule and known interval, OHLC consistency, positive prices,
    volume >= 0 and whole, unique (symbol, interval, ts), bar inside its session, moves within the
    instrument's daily price limit."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for col in [*KEY, *PRICES, "volume"]:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col))
    for col in PRICES:
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=0, strict_min=True))
    # OHLC consistency: high is the bar's maximum and low its minimum.
    for col_a, col_b in [
        ("high", "low"),
        ("high", "open"),
        ("high", "close"),
        ("open", "low"),
        ("close", "low"),
    ]:
        suite.add_expectation(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=col_a, column_B=col_b, or_equal=True, ignore_row_if="either_value_is_missing"
            )
        )
    # Volume is stored as BIGINT from a float64 column: above 2**53 floats no longer hold whole numbers.
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0, max_value=2**53))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="volume_fraction", min_value=0, max_value=0)
    )
    suite.add_expectation(
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(KEY), ignore_row_if="any_value_is_missing")
    )
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="ts_in_session", value_set=[1.0]))
    for col in ("symbol_valid", "interval_known"):
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=[1.0]))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="max_move_over_limit", min_value=0, max_value=1 + LIMIT_EPS)
    )
    return suite


@dataclass
class _Runtime:
    """GX objects built once per process: context, pandas asset, suite, checkpoints per Data Docs folder."""

    context: Any
    batch_definition: Any
    suite: Any
    checkpoints: dict[str, Any] = field(default_factory=dict)


_RUNTIME: _Runtime | None = None
_LOCK = threading.Lock()
# Importing airflow first configures root logging, after which GX emits ~200 INFO lines on import; GX is
# only imported lazily below, so lowering its logger here covers every path.
logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _runtime() -> _Runtime:
    global _RUNTIME
    with _LOCK:
        if _RUNTIME is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,  # no network from pipeline code
                progress_bars=ProgressBarsConfig(globally=False),
            )
            context = gx.get_context(mode="ephemeral", project_config=config)
            asset = context.data_sources.add_pandas("bars").add_dataframe_asset("bars")
            batch_definition = asset.add_batch_definition_whole_dataframe("whole")
            suite = context.suites.add(build_bars_suite())
            _RUNTIME = _Runtime(context, batch_definition, suite)
        return _RUNTIME


def _checkpoint(rt: _Runtime, docs_dir: Path) -> Any:
    """A checkpoint that validates the suite and renders Data Docs into ``docs_dir`` (one site per folder)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    key = str(docs_dir.resolve())
    if key not in rt.checkpoints:
        site = f"site_{len(rt.checkpoints)}"
        rt.context.add_data_docs_site(
            site,
            {
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": key},
            },
        )
        definition = rt.context.validation_definitions.add(
            gx.ValidationDefinition(data=rt.batch_definition, suite=rt.suite, name=f"bars_{site}")
        )
        rt.checkpoints[key] = rt.context.checkpoints.add(
            gx.Checkpoint(
                name=f"bars_{site}",
                validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="data_docs", site_names=[site])],
                result_format={"result_format": "COMPLETE"},
            )
        )
    return rt.checkpoints[key]


@dataclass(frozen=True)
class SuiteRun:
    """Per expectation: its reason label, success, and the row positions it flagged."""

    results: list[dict[str, Any]]
    flagged: dict[str, list[int]]
    data_docs_path: Path | None


def expectation_label(config: Any) -> str:
    """``expect_x(col_a, col_b)``: the expectation type and the columns it looked at."""
    kwargs = config.kwargs
    cols = kwargs.get("column_list") or [
        kwargs[k] for k in ("column", "column_A", "column_B") if kwargs.get(k) is not None
    ]
    return f"{config.type}({', '.join(str(c) for c in cols)})"


def _raised(info: dict[str, Any] | None) -> str:
    """The messages of the exceptions an expectation raised ("" when none). GX 1.x keys them by the metric
    that failed (``{metric id: {"raised_exception": ...}}``); the flat form is an expectation's own."""
    info = info or {}
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(e.get("exception_message")) for e in entries if e.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages))


def run_suite(typed: pd.DataFrame, *, docs_dir: Path | None, run_name: str) -> SuiteRun:
    """Validate ``typed`` (RangeIndex) against the bars suite; Data Docs go to ``docs_dir`` when given."""
    from great_expectations.core.run_identifier import RunIdentifier

    rt = _runtime()
    if docs_dir is None:
        batch = rt.batch_definition.get_batch(batch_parameters={"dataframe": typed})
        validation = batch.validate(rt.suite, result_format="COMPLETE")
        docs_path = None
    else:
        docs_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        result = _checkpoint(rt, docs_dir).run(
            batch_parameters={"dataframe": typed}, run_id=RunIdentifier(run_name=run_name)
        )
        validation = next(iter(result.run_results.values()))
        # GX's pages load their scripts and styles from CDNs: point what this run wrote at local copies
        # (the slack covers file systems with coarse modification times).
        make_offline(docs_dir, since=started - 2)
        docs_path = docs_dir.resolve() / "index.html"
    results: list[dict[str, Any]] = []
    flagged: dict[str, list[int]] = {}
    for item in validation.results:
        label = expectation_label(item.expectation_config)
        rows = [int(i) for i in (item.result or {}).get("unexpected_index_list") or []]
        raised = _raised(item.exception_info)
        if not item.success and not rows and raised:
            # An expectation that crashed flags nothing row-wise; it is reported, not silently passed.
            log.warning("expectation %s raised: %s", label, raised)
        results.append({"name": label, "success": bool(item.success), "unexpected_count": len(rows)})
        if rows:
            flagged[label] = rows
    return SuiteRun(results=results, flagged=flagged, data_docs_path=docs_path)
