"""The ``krx`` command line: settings, store migrations, data import, the KIS simulator and the demo."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from pipeline.cli_model import mlflow_app, model_app
from pipeline.config import get_settings
from pipeline.kis.cli import sim
from pipeline.market import TZ_NAME

if TYPE_CHECKING:
    pass

app = typer.Typer(help="krx-rl-trader: KRX RL trading pipeline.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect settings (env prefix KRX_, .env supported).", no_args_is_help=True)
db_app = typer.Typer(help="Create and migrate the market store.", no_args_is_help=True)
data_app = typer.Typer(help="Load and inspect market data in the store.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(mlflow_app, name="mlflow")

console = Console()


@app.callback()
def _main(
    log_level: Annotated[str | None, typer.Option(help="Log level (default: KRX_LOG_LEVEL or INFO).")] = None,
) -> None:
    level = (log_level or get_settings().log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the effective settings with secrets masked."""
    values = get_settings().masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    table = Table("setting", "value", title="krx settings (secrets masked)")
    for name, value in values.items():
        table.add_row(name, str(value))
    console.print(table)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target Alembic revision.")] = "head",
) -> None:
    """Create or migrate the market store schema (idempotent)."""
    from pipeline.store.migrate import upgrade

    at = upgrade(revision=revision)
    console.print(f"market store at revision [bold]{at}[/] ({_store_url()})")


@db_app.command("status")
def db_status() -> None:
    """Show the store's backend, migration revision, TimescaleDB state and row counts."""
    from pipeline.store.migrate import status

    st = status()
    console.print(f"store:      {st.url} ({st.backend})")
    state = "up to date" if st.up_to_date else "NOT up to date: run `krx db upgrade`"
    console.print(f"revision:   {st.current or 'none'} (head {st.head}) - {state}")
    if st.backend == "postgresql":
        console.print(f"timescaledb: available={st.timescale_available} enabled={st.timescale_enabled}")
    table = Table("table", "rows")
    for name, count in st.row_counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    if not st.up_to_date:
        raise typer.Exit(1)


def _checked(name: str) -> Callable[[str | None], str | None]:
    """A typer callback refusing an ``import-csv`` option value the import would refuse, with the same
    message (exit code 2), before any file is read."""

    def callback(value: str | None) -> str | None:
        if value is not None:
            try:
                _import_option_check(name)(value)
            except (ValueError, LookupError) as exc:
                raise typer.BadParameter(str(exc)) from exc
        return value

    return callback


def _import_option_check(name: str) -> Callable[[str], object]:
    from pipeline.data.csv_reader import check_encoding
    from pipeline.data.parsing import check_date_format, check_time_zone
    from pipeline.market import validate_symbol
    from pipeline.store.validation import validate_interval, validate_label

    checks: dict[str, Callable[[str], object]] = {
        "interval": validate_interval,
        "symbol": validate_symbol,
        "tz": check_time_zone,
        "source": validate_label,
        "date_format": check_date_format,
        "encoding": check_encoding,
    }
    return checks[name]


@data_app.command("import-csv")
def data_import_csv(
    paths: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="CSV files to load.")],
    interval: Annotated[
        str, typer.Option(help="Bar interval: 1m 3m 5m 10m 15m 30m 60m 1d 1w.", callback=_checked("interval"))
    ] = "1d",
    symbol: Annotated[
        str | None,
        typer.Option(
            help="Symbol for every row (default: a symbol column, else the file name).",
            callback=_checked("symbol"),
        ),
    ] = None,
    tz: Annotated[
        str, typer.Option(help="Time zone of timestamps without an offset.", callback=_checked("tz"))
    ] = TZ_NAME,
    source: Annotated[
        str,
        typer.Option(help="Source label stored with each bar (<= 32 chars).", callback=_checked("source")),
    ] = "csv",
    date_format: Annotated[
        str | None,
        typer.Option(
            help="strptime format of the date column, e.g. '%d.%m.%Y' (default: ISO / YYYYMMDD only).",
            callback=_checked("date_format"),
        ),
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="Text encoding of the files, e.g. cp949.", callback=_checked("encoding"))
    ] = "utf-8",
) -> None:
    """Load OHLCV CSV files into the store, each file all-or-nothing; bad lines are quarantined with a
    reason and their line number."""
    from pipeline.data.csv_import import count_rows, import_csv_files

    total = sum(count_rows(p) for p in paths)
    with _progress() as progress:
        task = progress.add_task("importing", total=total)
        summary = import_csv_files(
            paths,
            interval=interval,
            symbol=symbol,
            tz=tz,
            source=source,
            date_format=date_format,
            encoding=encoding,
            on_progress=lambda n: progress.advance(task, n),
        )
    _print_import_summary(summary)
    if summary.failed_files:
        raise typer.Exit(1)


@data_app.command("summary")
def data_summary(interval: Annotated[str, typer.Option(help="Bar interval.")] = "1d") -> None:
    """Per symbol: bar count, first and last timestamp, last close."""
    from pipeline.console import print_bar_summary

    print_bar_summary(console, interval)


@data_app.command("ingest")
def data_ingest(
    day: Annotated[
        str | None, typer.Option(help="Session date YYYY-MM-DD (default: the last closed session).")
    ] = None,
    minutes: Annotated[bool, typer.Option(help="Also fetch the session's 1-minute bars.")] = True,
    minute_sessions: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Past sessions of 1-minute bars to backfill where not stored completely "
            "(default KRX_INGEST_MINUTE_SESSIONS; 0: this session only; at most ~1 year).",
        ),
    ] = None,
) -> None:
    """Fetch daily (and 1-minute, backfilling past sessions) bars for one KRX session from KIS
    (KRX_KIS_ENV) into the store."""
    import datetime as dt

    from pipeline.demo import last_closed_session
    from pipeline.ingest.tasks import ingest_daily_session, ingest_minute_session

    session = dt.date.fromisoformat(day) if day else last_closed_session(dt.datetime.now(dt.UTC))
    results = [ingest_daily_session(session)]
    if minutes:
        results.append(ingest_minute_session(session, sessions=minute_sessions))
    for r in results:
        console.print_json(data={k: v for k, v in r.items() if k != "symbols"})


@data_app.command("validate")
def data_validate(
    start: Annotated[str, typer.Option(help="First KST day YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last KST day YYYY-MM-DD.")],
    interval: Annotated[list[str], typer.Option(help="Intervals to check (repeatable).")] = ["1d"],  # noqa: B006
) -> None:
    """Validate stored bars in a window, quarantine failures, build features (as the DAG does)."""
    from pipeline.ingest.quality import ValidationFailed, validate_and_featurize

    windows = [{"intervals": interval, "symbols": [], "start": start, "end": end}]
    try:
        result = validate_and_featurize(windows)
    except ValidationFailed as exc:
        console.print(f"[red]validation failed[/]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print_json(data=result)


@app.command("backtest")
def backtest(
    symbol: Annotated[str, typer.Argument(help="Stored symbol, e.g. KOSPI200F or 005930.")],
    interval: Annotated[str, typer.Option(help="Bar interval.")] = "1d",
    folds: Annotated[int, typer.Option(help="Walk-forward folds.")] = 2,
    seeds: Annotated[str, typer.Option(help="Comma-separated agent seeds per fold.")] = "0,1,2",
    seconds: Annotated[float, typer.Option(help="Training seconds per fold and seed.")] = 20.0,
    futures: Annotated[
        bool | None, typer.Option("--futures/--stock", help="Instrument (default: from the symbol).")
    ] = None,
) -> None:
    """Walk-forward: train the A3C agent per fold, backtest it and the baselines; write PNGs and a CSV."""
    from pipeline.backtest.report import EvaluationSpec, evaluate_symbol
    from pipeline.console import print_backtest_summary
    from pipeline.store import get_engine

    settings = get_settings()
    spec = EvaluationSpec(
        symbol=symbol,
        interval=interval,
        futures=futures,
        seconds_per_fold=seconds,
        folds=folds,
        seeds=tuple(int(s) for s in seeds.split(",")),
        out_dir=settings.var_dir / "reports",
    )
    try:
        result, summary, csv = evaluate_symbol(
            spec, engine=get_engine(), futures_symbol=settings.futures_symbol, etfs=settings.etf_symbols
        )
    except ValueError as exc:
        console.print(f"[red]error[/]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    print_backtest_summary(
        console, summary, f"{symbol} walk-forward, test windows (mean over folds and seeds)"
    )
    console.print(f"metrics: {csv}", soft_wrap=True)
    for path in result.figures:
        console.print(f"figure:  {path}", soft_wrap=True)


@app.command("demo")
def demo(
    days: Annotated[int, typer.Option(help="Calendar days of daily history to ingest.")] = 1500,
    seed: Annotated[int | None, typer.Option(help="Simulator market seed (default KRX_SIM_SEED).")] = None,
    train_seconds: Annotated[
        float, typer.Option(help="A3C training seconds per fold and seed in the walk-forward (0: skip).")
    ] = 4.0,
) -> None:
    """End to end on embedded defaults: store, KIS simulator, ingest, validate, features, walk-forward."""
    from pipeline.demo import run_demo

    run_demo(console, days=days, seed=seed, train_seconds=train_seconds)


def _store_url() -> str:
    from pipeline.config import mask_url

    return mask_url(get_settings().resolved_database_url)


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
        console=console,
    )


def _print_import_summary(summary: object) -> None:
    from pipeline.data.csv_import import ImportSummary

    assert isinstance(summary, ImportSummary)
    counts = ("rows", "inserted", "updated", "unchanged", "rejected")
    table = Table("file", *counts, "status", title="import")
    for f in summary.files:
        table.add_row(
            Path(f.path).name, *(f"{getattr(f, k):,}" for k in counts), "failed" if f.error else "ok"
        )
    table.add_row("[bold]total", *(f"[bold]{summary.total(k):,}" for k in counts), "")
    console.print(table)
    for f in summary.failed_files:
        console.print(Text.assemble(("error", "red"), f" {f.path}: {f.error}"), soft_wrap=True)
    for f in summary.files:
        shown = f.problems[:10]
        for problem in shown:
            console.print(f"  {Path(f.path).name} {problem}", soft_wrap=True, markup=False, highlight=False)
        if f.rejected > len(shown):
            console.print(f"  {Path(f.path).name}: {f.rejected - len(shown):,} more", soft_wrap=True)
    if summary.total("rejected"):
        console.print("rejected rows are in table [bold]bars_quarantine[/] with their reasons")


app.command("sim", help="Run the offline KIS simulator (same wire format as KIS).")(sim)

if __name__ == "__main__":
    app()
