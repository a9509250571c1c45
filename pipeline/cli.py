"""The ``krx`` command line: settings, store migrations, data import, the KIS simulator, the demo and the
model server."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text

from pipeline.cli_model import mlflow_app, model_app
from pipeline.config import get_settings, mask_url
from pipeline.kis.cli import sim
from pipeline.market import TZ_NAME
from pipeline.stack_cli import stack_app
from pipeline.trading.cli import trading_app

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
app.add_typer(trading_app, name="trading")
app.add_typer(stack_app, name="stack")

console = Console()


@app.callback()
def _main(
    log_level: Annotated[str | None, typer.Option(help="Log level (default: KRX_LOG_LEVEL or INFO).")] = None,
) -> None:
    from pipeline.observability import configure_logging

    configure_logging(get_settings(), level=log_level)


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


def _chatter_to_file(path: Path) -> Path:
    """Send the libraries' INFO logging to ``path`` and keep only warnings on the console (the command
    prints one line per stage itself)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))  # the file gets INFO whatever else is set
    return path


#: The real KRX daily bars shipped beside the checkout (``shared/data/krx``, see its README).
SHARED_KRX_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "krx"
#: Every validation trial run on the shared data so far, kept in the repository so that a new machine's
#: ``--tune`` / ``--tuned`` still counts them (the deflated Sharpe pays for every trial ever run).
TUNING_LEDGER = Path(__file__).resolve().parents[1] / "docs" / "evaluation" / "tuning.json"


@app.command("evaluate")
def evaluate(
    data: Annotated[
        Path, typer.Option(help="Folder of daily KRX CSVs (one file per symbol).", envvar="KRX_EVALUATE_DATA")
    ] = SHARED_KRX_DATA,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Evaluate only these (repeatable; default: all).")
    ] = None,
    years: Annotated[str, typer.Option(help="Test years, e.g. 2013-2019 or 2017,2019.")] = "2013-2019",
    seeds: Annotated[int, typer.Option(min=1, help="Agent seeds per (instrument, year).")] = 5,
    steps: Annotated[
        int, typer.Option(min=100, help="Training env steps per (instrument, year, seed).")
    ] = 20_000,
    configurations: Annotated[
        int, typer.Option(min=1, help="Configurations tried so far (trials counted in the deflated Sharpe).")
    ] = 1,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke run: 2018-2019, 2 seeds, 2,000 steps.")
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune", help="Choose a configuration on the validation windows only (no test year runs)."
        ),
    ] = False,
    candidates: Annotated[
        str | None, typer.Option(help="With --tune: comma-separated candidates (default: all).")
    ] = None,
    tuned: Annotated[
        bool,
        typer.Option("--tuned", help="Evaluate the configuration --tune chose, counting all its trials."),
    ] = False,
    search: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Like --tune, with N configurations proposed by Optuna's TPE sampler (every one counted).",
        ),
    ] = None,
    pooled: Annotated[
        bool,
        typer.Option("--pooled", help="One agent per (year, seed) trained over every fund, judged per fund."),
    ] = False,
    ledger: Annotated[
        Path,
        typer.Option(
            help="Earlier trials that start var/evaluate/tuning.json when it is missing (--tune, --tuned).",
            envvar="KRX_EVALUATE_LEDGER",
        ),
    ] = TUNING_LEDGER,
) -> None:
    """Judge the agent on real KRX bars: import the CSVs into a fresh store, yearly walk-forward per
    instrument against buy-and-hold, SMA crossover, momentum and random; writes metrics.csv, summary.json
    and report.html under KRX_VAR_DIR/evaluate. --tune runs the candidate configurations on the
    validation windows only and writes tuning.json (--search N: N configurations proposed by Optuna instead);
    --tuned then runs the chosen one on the test years."""
    log_file = _chatter_to_file(get_settings().var_dir / "logs" / "evaluate.log")
    console.print(f"log: {log_file}", soft_wrap=True)
    from pipeline.backtest.evaluation import (
        HEADLINE,
        AgentEvaluationConfig,
        evaluate_agent,
        load_through_store,
        quick_config,
        write_outputs,
    )
    from pipeline.store import get_engine

    paths = sorted(data.glob("*.csv"))
    if symbol:
        paths = [p for p in paths if p.stem in set(symbol)]
    if not paths:
        console.print(f"[red]error[/]: no CSV {'of ' + ', '.join(symbol) + ' ' if symbol else ''}in {data}")
        raise typer.Exit(1)
    try:
        span = [int(y) for y in years.replace("-", ",").split(",")]
    except ValueError as exc:
        console.print(f"[red]error[/]: --years {years!r}: use 2013-2019 or 2017,2019")
        raise typer.Exit(2) from exc
    test_years = tuple(range(span[0], span[-1] + 1)) if "-" in years else tuple(span)
    config = AgentEvaluationConfig(
        years=test_years,
        seeds=tuple(range(seeds)),
        total_steps=steps,
        configurations=configurations,
        pooled=pooled,
    )
    config = quick_config(config) if quick else config
    out = get_settings().var_dir / "evaluate"
    if sum((tune, tuned, search is not None)) > 1:
        console.print("[red]error[/]: --tune / --search choose, --tuned evaluates the choice: give one")
        raise typer.Exit(2)
    if search is not None and candidates:
        console.print("[red]error[/]: --candidates names --tune's candidates; --search proposes its own")
        raise typer.Exit(2)
    if tune or tuned or search is not None:
        _start_from_ledger(out, ledger)
    if tuned:
        from pipeline.backtest.tuning import TUNING_FILE, chosen_config

        try:
            config = chosen_config(out / TUNING_FILE, config)
        except FileNotFoundError as exc:
            console.print(f"[red]error[/]: {exc}", soft_wrap=True)
            raise typer.Exit(1) from exc
        console.print(
            f"tuned: policy {config.policy}, {config.configurations} configurations counted", soft_wrap=True
        )
    out.mkdir(parents=True, exist_ok=True)
    store = out / "store.db"
    store.unlink(missing_ok=True)  # a fresh store each run
    console.print(f"importing {len(paths)} files into {store}", soft_wrap=True)
    bars, _ = load_through_store(paths, get_engine(f"sqlite:///{store}"))
    years_text = f"{config.years[0]}-{config.years[-1]}"
    console.print(
        f"walk-forward: test years {years_text}, {len(config.seeds)} seeds, {config.total_steps:,} steps"
    )
    say = lambda line: console.print(line, soft_wrap=True)  # noqa: E731
    if tune or search is not None:
        _tune(bars, config, candidates, out, say, search)
        return
    evaluation = evaluate_agent(bars, config, progress=say)
    written = write_outputs(evaluation, out)
    for key in HEADLINE:
        console.print(f"  {key:18} {evaluation.headline[key]:.3f}")
    for kind, path in written.items():
        console.print(f"{kind}: {path}", soft_wrap=True)


def _start_from_ledger(out: Path, ledger: Path) -> None:
    """Copy the repository's record of trials to ``out`` when this machine has none yet."""
    from pipeline.backtest.tuning import TUNING_FILE, load_trials

    target = out / TUNING_FILE
    if target.exists() or not ledger.is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ledger, target)
    console.print(f"{len(load_trials(target))} earlier trials from {ledger} start {target}", soft_wrap=True)


def _tune(
    bars: Any, config: Any, candidates: str | None, out: Path, say: Callable[[str], None], search: int | None
) -> None:
    """Run the named candidates (or a search of ``search`` proposals) on validation, merge them into
    ``out``'s ledger of trials and show the table and the choice."""
    from pipeline.backtest.search import search_agent
    from pipeline.backtest.tuning import (
        CANDIDATES,
        TUNING_FILE,
        Tuning,
        load_trials,
        merge_trials,
        tune_agent,
        write_tuning,
    )

    names = [c.strip() for c in (candidates or ",".join(CANDIDATES)).split(",") if c.strip()]
    previous = load_trials(out / TUNING_FILE)
    if previous:
        say(f"{len(previous)} earlier trials in {out / TUNING_FILE} stay counted (delete it to start over)")

    def checkpoint(done: list[Any]) -> None:  # every finished candidate is on disk before the next runs
        write_tuning(Tuning(config, merge_trials(previous, done)), out)

    try:
        if search is None:
            tuning = tune_agent(bars, config, names, progress=say, on_trials=checkpoint)
        else:
            tuning = search_agent(bars, config, search, previous, progress=say, on_trials=checkpoint)
    except ValueError as exc:
        console.print(f"[red]error[/]: {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    tuning.trials = merge_trials(previous, tuning.trials)
    table = Table(
        Column("candidate", overflow="fold"),  # a searched trial's name is its identity: never cut
        "policy",
        "run",
        "val folds_beat_bh",
        "val MDD not worse",
        "val Sharpe",
        "B&H",
        title="validation",
    )
    for t in sorted(tuning.trials, key=lambda t: t.rank_key(), reverse=True):
        table.add_row(
            t.candidate,
            t.policy,
            t.run,
            f"{t.folds_beat_bh:.3f}",
            f"{t.mdd_not_worse:.3f}",
            f"{t.mean_sharpe:.3f}",
            f"{t.mean_sharpe_bh:.3f}",
        )
    console.print(table)
    best = tuning.best
    console.print(f"chosen: {best.candidate}/{best.policy} of {len(tuning.trials)} trials")
    console.print(f"tuning: {write_tuning(tuning, out)}  (next: krx evaluate --tuned)", soft_wrap=True)


@app.command("demo")
def demo(
    days: Annotated[int, typer.Option(help="Calendar days of daily history to ingest.")] = 1100,
    seed: Annotated[int | None, typer.Option(help="Simulator market seed (default KRX_SIM_SEED).")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="The smallest budgets (every stage still runs; for tests).")
    ] = False,
    minute_sessions: Annotated[
        int | None, typer.Option(help="Past sessions of 1-minute bars to backfill (default 20; quick 12).")
    ] = None,
    train_seconds: Annotated[
        float | None, typer.Option(help="Training seconds per seed (default 40; quick 4).")
    ] = None,
    seeds: Annotated[int | None, typer.Option(min=3, help="Agent seeds (at least 3; default 3).")] = None,
    session_minutes: Annotated[
        int | None,
        typer.Option(min=2, help="Trade only the last N minutes of the session (default: all; quick 60)."),
    ] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train a new version even if the spec has a champion.")
    ] = False,
) -> None:
    """The whole chain offline: KIS simulator, then the real DAGs with `airflow dags test` (ingest_bars,
    validate_and_featurize, cluster_regimes, train_agent and its gate), the model server, one simulated
    trading session and the end-of-day report; one summary at the end. Library output: var/logs/demo.log."""
    import dataclasses

    from pipeline.demo import QUICK_BUDGET, DemoBudget, DemoFailed, run_demo

    base = QUICK_BUDGET if quick else DemoBudget(history_days=days)
    changes: dict[str, object] = {"retrain": retrain}
    if quick and days != 1100:
        changes["history_days"] = days
    if minute_sessions is not None:
        changes["minute_sessions"] = minute_sessions
    if train_seconds is not None:
        changes["train_seconds"] = train_seconds
    if seeds is not None:
        changes["seeds"] = tuple(range(seeds))
    if session_minutes is not None:
        changes["session_minutes"] = session_minutes
    budget = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    try:
        run_demo(console, budget, seed=seed)
    except DemoFailed as exc:
        console.print(f"[red]krx demo failed at stage {exc.stage}[/]: {exc.detail}", soft_wrap=True)
        raise typer.Exit(1) from exc


@app.command("reports")
def reports(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the reports written under KRX_VAR_DIR (Data Docs, training reports, walk-forward results)
    with their paths; each opens from the file system without a network."""
    from pipeline.console import print_reports
    from pipeline.reports import find_reports

    found = find_reports(get_settings().var_dir)
    if as_json:
        rows = [
            {"kind": r.kind, "name": r.name, "path": str(r.path), "written": r.written.isoformat()}
            for r in found
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    print_reports(console, found)


def serve_command(host: str, port: int) -> list[str]:
    """The ``bentoml serve`` command line of the model server (a separate process: ``pipeline`` never
    imports BentoML)."""
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", "serving.service:KrxTrader", "--host", host, "--port", str(port)]


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default KRX_SERVING_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default KRX_SERVING_PORT).")] = None,
    print_only: Annotated[
        bool, typer.Option("--print-only", help="Print the command, start nothing.")
    ] = False,
) -> None:
    """Serve the champion of every model spec over HTTP (BentoML) from the configured MLflow store;
    POST /predict, /predict_batch; /readyz, /metrics. Ctrl-C stops."""
    settings = get_settings()
    host, port = host or settings.serving_host, port or settings.serving_port
    command = serve_command(host, port)
    specs = ", ".join(settings.serving_specs) or "every spec with a registered model"
    console.print(f"model server: [bold]http://{host}:{port}[/]  (specs: {specs})", soft_wrap=True)
    console.print(f"MLflow store: {mask_url(settings.resolved_mlflow_uri)}", soft_wrap=True, highlight=False)
    console.print(" ".join(command), soft_wrap=True, markup=False, highlight=False)
    if print_only:
        return
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")}
    try:
        raise typer.Exit(subprocess.call(command, env=env))
    except KeyboardInterrupt:
        console.print("model server stopped")


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
