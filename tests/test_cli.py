"""The ``krx`` command line as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.market import TZ_NAME

runner = CliRunner()


def _krx(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("krx")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import typer.main

    click_group = typer.main.get_command(group)  # type: ignore[arg-type]
    out = []

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(click_group, prefix)
    return out


def test_every_command_has_help() -> None:
    paths = _commands(app)
    assert ("db", "upgrade") in paths and ("data", "import-csv") in paths and ("config", "show") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_console_script_is_installed_and_runs() -> None:
    result = _krx("--help")
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRX_KIS_APP_SECRET", "super-secret-1234")
    from pipeline.config import get_settings

    get_settings.cache_clear()
    result = runner.invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0
    assert "super-secret-1234" not in result.output
    assert '"kis_app_secret": "**********"' in result.output


def test_db_upgrade_then_status(isolated_settings: Path) -> None:
    before = runner.invoke(app, ["db", "status"])
    assert before.exit_code == 1 and "NOT up to date" in before.output
    up = runner.invoke(app, ["db", "upgrade"])
    assert up.exit_code == 0, up.output
    assert (isolated_settings / "market.db").exists()
    after = runner.invoke(app, ["db", "status"])
    assert after.exit_code == 0 and "up to date" in after.output and "bars_quarantine" in after.output


def test_import_csv_prints_a_summary_and_fails_on_unreadable_files(tmp_path: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    good = tmp_path / "005930.csv"
    good.write_text("date,open,high,low,close,volume\n2024-01-02,10,11,9,10,5\n2024-01-03,10,9,9,10,5\n")
    result = runner.invoke(app, ["data", "import-csv", str(good)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "005930.csv" in result.output and "bars_quarantine" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("just,some,columns\n1,2,3\n")
    failed = runner.invoke(app, ["data", "import-csv", str(bad)], terminal_width=200)
    assert failed.exit_code == 1
    assert "no column for" in failed.output


def test_backtest_of_a_symbol_without_bars_is_a_clear_error(isolated_settings: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    result = runner.invoke(app, ["backtest", "NOPE"], terminal_width=200)
    assert result.exit_code == 1
    assert "no 1d bars of NOPE in the store" in result.output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--interval", "1minute"], "unknown interval '1minute'"),
        (["--symbol", "S" * 40], "invalid symbol"),
        (["--source", "s" * 40], "source label"),
        (["--date-format", "%d"], "date format"),
    ],
)
def test_import_csv_refuses_options_outside_the_rules_with_one_clear_message(
    tmp_path: Path, option: list[str], message: str
) -> None:
    runner.invoke(app, ["db", "upgrade"])
    path = tmp_path / "005930.csv"
    path.write_text("date,open,high,low,close,volume\n2024-01-02,10,11,9,10,5\n")
    result = runner.invoke(app, ["data", "import-csv", str(path), *option], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_import_csv_names_the_line_of_an_ambiguous_date_and_reads_it_with_date_format(tmp_path: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    path = tmp_path / "005930.csv"
    path.write_text("date,open,high,low,close,volume\n02.01.2024,10,11,9,10,5\n03.01.2024,10,11,9,10,5\n")
    failed = runner.invoke(app, ["data", "import-csv", str(path)], terminal_width=200)
    assert failed.exit_code == 1
    assert "line 2: date '02.01.2024' is ambiguous" in failed.output and "--date-format" in failed.output
    ok = runner.invoke(
        app, ["data", "import-csv", str(path), "--date-format", "%d.%m.%Y"], terminal_width=200
    )
    assert ok.exit_code == 0, ok.output
    from pipeline.store import read_bars

    stamps = read_bars("005930")["ts"].dt.tz_convert(TZ_NAME).dt.strftime("%Y-%m-%d %H:%M")
    assert list(stamps) == ["2024-01-02 00:00", "2024-01-03 00:00"]


def test_import_csv_lists_the_lines_it_quarantined(tmp_path: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    path = tmp_path / "005930.csv"
    path.write_text("date,open,high,low,close,volume\n2024-01-02,10,11,9,10,5\n2024-01-03,10,9,9,10,5\n")
    result = runner.invoke(app, ["data", "import-csv", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "line 3: high < max(open, close)" in result.output


def _store_daily_bars(symbol: str, start: str, end: str, seed: int = 0) -> pd.DataFrame:
    """Migrate the isolated store and upsert consistent daily bars of ``symbol`` on every XKRX session."""
    import numpy as np

    from pipeline.market import krx_sessions
    from pipeline.store import upsert_bars

    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    days = krx_sessions(start, end)
    rng = np.random.default_rng(seed)
    close = np.round(50_000 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days)))), -1)
    open_ = np.round(close * np.exp(rng.normal(0, 0.004, len(days))), -1)
    bars = pd.DataFrame(
        {
            "symbol": symbol,
            "interval": "1d",
            "ts": days.tz_localize(TZ_NAME),
            "open": open_,
            "high": np.maximum(open_, close) + 50,
            "low": np.minimum(open_, close) - 50,
            "close": close,
            "volume": rng.integers(1_000, 1_000_000, len(days)),
        }
    )
    upsert_bars(bars, source="test")
    return bars


def test_data_summary_lists_each_symbols_count_range_and_last_close(isolated_settings: Path) -> None:
    bars = _store_daily_bars("005930", "2025-06-02", "2025-06-30")
    result = runner.invoke(app, ["data", "summary"], terminal_width=200)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "005930" in line)
    assert f"{len(bars):,}" in row and "2025-06-02" in row and "2025-06-30" in row
    assert f"{bars['close'].iloc[-1]:,.2f}" in row
    assert "no 1m bars in the store" in runner.invoke(app, ["data", "summary", "--interval", "1m"]).output


@pytest.mark.slow
def test_data_validate_passes_clean_bars_and_exits_1_over_the_failure_threshold(
    isolated_settings: Path,
) -> None:
    import sqlalchemy as sa

    from pipeline.store import get_engine
    from pipeline.store.schema import bars as table

    bars = _store_daily_bars("005930", "2025-04-01", "2025-06-30")
    window = ["data", "validate", "--start", "2025-06-02", "--end", "2025-06-30"]
    clean = runner.invoke(app, window, terminal_width=200)
    assert clean.exit_code == 0, clean.output
    assert '"passed": true' in clean.output and '"quarantined": 0' in clean.output
    june = bars[bars["ts"] >= pd.Timestamp("2025-06-02", tz=TZ_NAME)]
    broken = june["ts"].iloc[::4]  # a quarter of June's bars get a high below their low
    with get_engine().begin() as conn:
        for ts in broken:
            stored = table.c.ts == ts.to_pydatetime()
            conn.execute(sa.update(table).where(stored).values(high=table.c.low * 0.5))
    failed = runner.invoke(app, window, terminal_width=200)
    assert failed.exit_code == 1, failed.output
    assert "validation failed" in failed.output and "5.0%" in failed.output  # the default threshold
    with get_engine().connect() as conn:  # quarantined even though the run failed
        assert conn.execute(sa.text("SELECT count(*) FROM bars_quarantine")).scalar_one() == len(broken)


@pytest.mark.slow
def test_backtest_of_stored_bars_prints_the_test_summary_and_writes_metrics_and_figures(
    isolated_settings: Path,
) -> None:
    _store_daily_bars("005930", "2022-06-01", "2025-06-30")
    args = ["backtest", "005930", "--folds", "1", "--seeds", "0", "--seconds", "1"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "005930 walk-forward, test windows" in result.output
    reports = isolated_settings / "reports" / "005930"
    metrics = pd.read_csv(reports / "walkforward_metrics.csv")
    assert {"agent", "buy_and_hold", "sma_crossover", "momentum", "random"} <= set(metrics["strategy"])
    assert set(metrics["split"]) >= {"test"} and set(metrics.loc[metrics["strategy"] == "agent", "seed"]) == {
        0
    }
    assert sorted(p.name for p in reports.glob("*.png")) == ["fold_0_test.png"]
    assert f"metrics: {reports / 'walkforward_metrics.csv'}" in result.output
