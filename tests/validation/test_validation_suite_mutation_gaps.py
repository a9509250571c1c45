"""The Great Expectations bars suite itself: every expectation with its columns and thresholds, the rows a
tiny frame gets flagged at each edge, a crashing expectation reported, a quiet in-memory context built once
per process, and Data Docs written offline per folder (gaps found by mutation testing,
``tools/mutation.py``). Each test builds its own GX context (``_RUNTIME`` is a per-process cache)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.validation import suite
from pipeline.validation.offline import make_offline as real_make_offline
from pipeline.validation.suite import LIMIT_EPS, run_suite

T0 = pd.Timestamp("2024-01-02 00:00", tz="UTC")
BIG = float(2**53)  # the largest volume a float64 still holds as a whole number


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GX context built by this test (the process's cached one comes back afterwards)."""
    monkeypatch.setattr(suite, "_RUNTIME", None)


def _pairs(a: str, b: str) -> tuple[str, dict[str, Any]]:
    kwargs = {"column_A": a, "column_B": b, "or_equal": True, "ignore_row_if": "either_value_is_missing"}
    return "expect_column_pair_values_a_to_be_greater_than_b", kwargs


def _between(column: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    return "expect_column_values_to_be_between", {"column": column, **kwargs}


def _in_set(column: str) -> tuple[str, dict[str, Any]]:
    return "expect_column_values_to_be_in_set", {"column": column, "value_set": [1.0]}


EXPECTED_SUITE = [
    *[
        ("expect_column_values_to_not_be_null", {"column": c})
        for c in ("symbol", "interval", "ts", "open", "high", "low", "close", "volume")
    ],
    *[_between(c, min_value=0, strict_min=True) for c in ("open", "high", "low", "close")],
    _pairs("high", "low"),
    _pairs("high", "open"),
    _pairs("high", "close"),
    _pairs("open", "low"),
    _pairs("close", "low"),
    _between("volume", min_value=0, max_value=2**53),
    _between("volume_fraction", min_value=0, max_value=0),
    (
        "expect_compound_columns_to_be_unique",
        {"column_list": ["symbol", "interval", "ts"], "ignore_row_if": "any_value_is_missing"},
    ),
    _in_set("ts_in_session"),
    _in_set("symbol_valid"),
    _in_set("interval_known"),
    _between("max_move_over_limit", min_value=0, max_value=1 + 1e-9),
]


def test_the_suite_holds_each_expectation_with_its_columns_and_thresholds(fresh: None) -> None:
    rt = suite._runtime()
    assert rt.suite.name == "bars"
    got = [(e.configuration.type, dict(e.configuration.kwargs)) for e in rt.suite.expectations]
    assert got == EXPECTED_SUITE
    assert LIMIT_EPS == 1e-9


def test_the_context_is_built_once_in_memory_without_analytics(
    fresh: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a GX project in the working folder (or GX Cloud settings) must not capture the pipeline's results
    (tmp_path / "gx").mkdir()
    (tmp_path / "gx" / "great_expectations.yml").write_text("config_version: 4.0\n")
    monkeypatch.chdir(tmp_path)
    rt = suite._runtime()
    assert suite._runtime() is rt
    config = rt.context.variables.config
    assert config.analytics_enabled is False  # no network from pipeline code
    assert config.progress_bars.globally is False
    assert type(rt.context).__name__ == "EphemeralDataContext"
    # the names Data Docs shows for what was validated
    asset = rt.batch_definition.data_asset
    assert (asset.datasource.name, asset.name, rt.batch_definition.name) == ("bars", "bars", "whole")


def _row(**overrides: Any) -> dict[str, Any]:
    """A clean bar with its derived checks; ``overrides`` break one thing."""
    row = {
        "symbol": "005930",
        "interval": "1d",
        "ts": T0,
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.0,
        "volume": 100.0,
        "ts_in_session": 1.0,
        "max_move_over_limit": 0.0,
        "volume_fraction": 0.0,
        "symbol_valid": 1.0,
        "interval_known": 1.0,
    }
    return row | overrides


def _edges() -> pd.DataFrame:
    """One row per edge; the row position is what the suite reports."""
    day = pd.Timedelta(days=1)
    rows = [
        # 0: everything exactly at its bound passes: flat bar, volume 2**53, a move of exactly the limit
        _row(open=10.0, high=10.0, low=10.0, close=10.0, volume=BIG, max_move_over_limit=1 + LIMIT_EPS),
        # 1: a price of 0 is not positive; volume 0 is fine
        _row(ts=T0 + day, open=0.0, low=0.0, close=5.0, volume=0.0),
        # 2: a missing high is flagged once, not by the OHLC pairs
        _row(ts=T0 + 2 * day, high=np.nan),
        _row(ts=T0 + 3 * day, high=11.0, close=12.0),  # 3: close above high
        _row(ts=T0 + 4 * day, volume=2.0**54),  # 4: volume beyond 2**53
        # 5: fractional volume, outside the session, bad symbol and interval, a move beyond the limit
        _row(
            ts=T0 + 5 * day,
            volume_fraction=0.5,
            ts_in_session=0.0,
            symbol_valid=0.0,
            interval_known=0.0,
            max_move_over_limit=1 + 10 * LIMIT_EPS,
        ),
        _row(),  # 6: the same (symbol, interval, ts) as row 0
        _row(symbol=None),  # 7: no symbol: flagged as missing, not as a duplicate
        _row(ts=T0 + 8 * day, open=9.0, low=9.5),  # 8: open below low
        _row(ts=T0 + 9 * day, close=8.0),  # 9: close below low
        _row(ts=T0 + 10 * day, open=12.0, close=10.5),  # 10: open above high
        _row(ts=T0 + 11 * day, high=8.0, open=8.0, close=8.0),  # 11: high below low (and open, close)
        _row(ts=T0 + 12 * day, volume=-1.0),  # 12: negative volume
        _row(ts=T0 + 13 * day, max_move_over_limit=-0.5),  # 13: a move is a magnitude
    ]
    return pd.DataFrame(rows)


EDGE_FLAGS = {
    "expect_column_values_to_not_be_null(symbol)": [7],
    "expect_column_values_to_not_be_null(high)": [2],
    "expect_column_values_to_be_between(open)": [1],
    "expect_column_values_to_be_between(low)": [1],
    "expect_column_pair_values_a_to_be_greater_than_b(high, low)": [11],
    "expect_column_pair_values_a_to_be_greater_than_b(high, open)": [10],
    "expect_column_pair_values_a_to_be_greater_than_b(high, close)": [3],
    "expect_column_pair_values_a_to_be_greater_than_b(open, low)": [8, 11],
    "expect_column_pair_values_a_to_be_greater_than_b(close, low)": [9, 11],
    "expect_column_values_to_be_between(volume)": [4, 12],
    "expect_column_values_to_be_between(volume_fraction)": [5],
    "expect_compound_columns_to_be_unique(symbol, interval, ts)": [0, 6],
    "expect_column_values_to_be_in_set(ts_in_session)": [5],
    "expect_column_values_to_be_in_set(symbol_valid)": [5],
    "expect_column_values_to_be_in_set(interval_known)": [5],
    "expect_column_values_to_be_between(max_move_over_limit)": [5, 13],
}


def _capture(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    logger = logging.getLogger(suite.__name__)
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger=suite.__name__)
    return logger


def test_a_tiny_frame_is_flagged_row_by_row_at_each_edge(
    fresh: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    logger = _capture(caplog)
    try:
        run = run_suite(_edges(), docs_dir=None, run_name="edges")
    finally:
        logger.removeHandler(caplog.handler)
    assert run.flagged == EDGE_FLAGS
    assert run.data_docs_path is None
    by_name = {r["name"]: (r["success"], r["unexpected_count"]) for r in run.results}
    assert len(run.results) == len(by_name) == len(EXPECTED_SUITE)
    for name, (success, count) in by_name.items():
        rows = EDGE_FLAGS.get(name, [])
        assert (success, count) == (not rows, len(rows)), name
    assert all(type(r["success"]) is bool for r in run.results)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # flagged rows are no crash
    assert os.listdir(tmp_path) == []  # an in-memory context writes nothing
    assert "Calculating Metrics" not in capfd.readouterr().err  # no progress bars


def test_an_expectation_that_crashes_is_reported_failed_and_logged(
    fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pd.DataFrame([_row(), _row(ts=T0 + pd.Timedelta(days=1))]).drop(columns=["interval_known"])
    logger = _capture(caplog)
    try:
        run = run_suite(frame, docs_dir=None, run_name="crash")
    finally:
        logger.removeHandler(caplog.handler)
    label = "expect_column_values_to_be_in_set(interval_known)"
    (crashed,) = [r for r in run.results if not r["success"]]
    assert crashed == {"name": label, "success": False, "unexpected_count": 0}
    assert run.flagged == {}
    warnings = {id(r): r for r in caplog.records if r.levelno >= logging.WARNING}.values()
    (warning,) = warnings  # once, though two of its metrics failed with the same error
    assert warning.levelno == logging.WARNING and warning.name == suite.__name__
    assert warning.getMessage() == (
        f'expectation {label} raised: Error: The column "interval_known" in BatchData does not exist.'
    )


def test_the_errors_of_a_crashed_expectation_are_read_in_both_of_gxs_shapes() -> None:
    def error(message: str, raised: bool = True) -> dict[str, Any]:
        return {"raised_exception": raised, "exception_message": message, "exception_traceback": "..."}

    # per failed metric, as GX 1.x reports a metric that could not be computed
    assert suite._raised({"m1": error("no column"), "m2": error("no column")}) == "no column"
    assert suite._raised({"m1": error("a"), "m2": error("b"), "m3": error("c", False)}) == "a; b"
    # the expectation's own, flat
    assert suite._raised(error("boom")) == "boom"
    assert suite._raised(error("", raised=False) | {"exception_message": None}) == ""
    assert suite._raised({}) == suite._raised(None) == ""


def test_data_docs_go_offline_to_each_folder_with_the_same_flags(
    fresh: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pages rewritten are those changed since the run started, less 2 s for file systems that keep
    # modification times to the even second (FAT); older pages are left alone
    now = time.time()
    monkeypatch.setattr(suite, "time", SimpleNamespace(time=lambda: now))
    offline: list[tuple[Path, float | None]] = []

    def make_offline(site: Path, *, since: float | None = None) -> list[str]:
        offline.append((site, since))
        return real_make_offline(site, since=since)

    monkeypatch.setattr(suite, "make_offline", make_offline)
    first = tmp_path / "docs"
    first.mkdir()  # an existing folder is fine
    second = tmp_path / "nested" / "docs"  # a missing one is created with its parents
    frame = _edges()
    run_a = run_suite(frame, docs_dir=first, run_name="run-a")
    run_b = run_suite(frame, docs_dir=second, run_name="run-b")
    assert run_a.data_docs_path == (first / "index.html").resolve()
    assert run_b.data_docs_path == (second / "index.html").resolve()
    assert run_a.flagged == run_b.flagged == EDGE_FLAGS  # complete results, as without Data Docs
    index_a, index_b = (first / "index.html").read_text(), (second / "index.html").read_text()
    assert "run-a" in index_a and "run-b" not in index_a
    assert "run-b" in index_b and "run-a" not in index_b
    for index in (index_a, index_b):
        assert "https://code.jquery.com" not in index  # the pages load local copies
    assert offline == [(first, now - 2), (second, now - 2)]
    pages = list((first / "validations" / "bars" / "run-a").rglob("*.html"))
    assert pages and all("https://code.jquery.com" not in p.read_text() for p in pages)
