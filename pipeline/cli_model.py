"""``krx model …`` (list versions, promote with a recorded override, roll back) and ``krx mlflow ui``."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import get_settings, mask_url

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipeline.registry.promotion import VersionRow

model_app = typer.Typer(
    help="Registered models: versions, aliases, gate outcomes, promotion.", no_args_is_help=True
)
mlflow_app = typer.Typer(help="The MLflow UI on the embedded (or configured) store.", no_args_is_help=True)
console = Console()

SpecOption = Annotated[str, typer.Option("--spec", help="Model spec, e.g. kospi200f-1d or stocks-1d.")]


def _client() -> MlflowClient:
    from pipeline.registry.tracking import configure_mlflow

    return configure_mlflow(get_settings())


def _model_name(spec: str) -> str:
    from pipeline.registry.specs import SpecError, resolve_spec

    try:
        return resolve_spec(spec, get_settings()).registered_model_name
    except SpecError as exc:
        console.print(f"[red]error[/]: {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc


def _fmt(value: float | None, spec: str = "+.2f") -> str:
    return "-" if value is None else format(value, spec)


def _version_table(name: str, rows: list[VersionRow]) -> Table:
    # Fits an 80-column terminal: promotion notes are printed under the table, not in a column.
    table = Table("v", "aliases", "gate", title=name, caption="Sharpe annualised; metrics: mean over folds")
    for header in ("val SR", "test SR", "test ret", "test DD"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("created (UTC)")
    colours = {"champion": "green", "challenger": "yellow", "rejected": "red"}
    for r in rows:
        m = r.metrics
        table.add_row(
            r.version,
            ", ".join(r.aliases) or "-",
            f"[{colours.get(r.gate, 'white')}]{r.gate}[/]",
            _fmt(m.get("eval/val/sharpe")),
            _fmt(m.get("eval/test/sharpe")),
            _fmt(m.get("eval/test/total_return"), "+.1%"),
            _fmt(m.get("eval/test/max_drawdown"), ".1%"),
            r.created,
        )
    return table


@model_app.command("list")
def model_list(
    spec: Annotated[str | None, typer.Option("--spec", help="Only this spec (default: every spec).")] = None,
) -> None:
    """Versions of each spec's registered model: aliases, headline metrics, gate outcome."""
    from pipeline.registry.promotion import list_versions
    from pipeline.registry.specs import spec_names

    client = _client()
    names = [_model_name(spec)] if spec else [_model_name(s) for s in spec_names(get_settings())]
    shown = 0
    for name in names:
        rows = list_versions(client, name)
        if rows:
            console.print(_version_table(name, rows))
            for r in rows:
                if r.promotion:
                    console.print(f"  v{r.version} promoted by {r.promotion}", soft_wrap=True)
            shown += 1
        elif spec:
            console.print(f"{name}: no registered versions yet (train and register one first)")
    if not spec and not shown:
        console.print("no registered models yet: the train_agent DAG registers a version per training")


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="Version number to make the champion.")],
    spec: SpecOption,
    force: Annotated[bool, typer.Option("--force", help="Override a gate that did not pass.")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (required with --force).")] = None,
) -> None:
    """Make VERSION the champion (the old one becomes previous-champion); who and why are recorded."""
    from pipeline.registry.promotion import PromotionError, promote

    if force and not (reason and reason.strip()):
        console.print(
            "[red]error[/]: --force needs --reason TEXT (the override is recorded with who and why)"
        )
        raise typer.Exit(2)
    name = _model_name(spec)
    user = getpass.getuser()
    try:
        old = promote(_client(), name, version, force=force, reason=reason, user=user)
    except PromotionError as exc:
        console.print(f"[red]error[/]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    how = "forced by" if force else "by"
    console.print(f"{name}: champion is now v{version} ({how} {user}); previous champion: {old or 'none'}")


@model_app.command("rollback")
def model_rollback(
    spec: SpecOption,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
) -> None:
    """Champion <- previous-champion (the demoted version is tagged; there is no second rollback)."""
    from pipeline.registry.promotion import CHAMPION, PromotionError, alias_version, rollback

    name = _model_name(spec)
    client = _client()
    demoted = alias_version(client, name, CHAMPION)
    try:
        new = rollback(client, name, user=getpass.getuser(), reason=reason)
    except PromotionError as exc:
        console.print(f"[red]error[/]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(f"{name}: champion rolled back from v{demoted} to v{new}")


def mlflow_ui_command(host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command line for the configured store (backend, registry, artifact root)."""
    from pipeline.registry.tracking import artifact_root

    settings = get_settings()
    uri = settings.resolved_mlflow_uri
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",
        uri,
        "--default-artifact-root",
        artifact_root(settings),
        "--host",
        host,
        "--port",
        str(port),
    ]


@mlflow_app.command("ui")
def mlflow_ui(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5000,
    print_only: Annotated[
        bool, typer.Option("--print-only", help="Print the command, start nothing.")
    ] = False,
) -> None:
    """Run mlflow ui on the embedded store (KRX_MLFLOW_TRACKING_URI if set), print its URL; Ctrl-C stops."""
    command = mlflow_ui_command(host, port)
    url = f"http://{host}:{port}"
    shown = [mask_url(part) if "://" in part and "@" in part else part for part in command]
    console.print(f"MLflow UI: [bold]{url}[/]  (store {mask_url(get_settings().resolved_mlflow_uri)})")
    console.print(" ".join(shown), soft_wrap=True, markup=False, highlight=False)
    if print_only:
        return
    get_settings().var_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")}
    try:
        raise typer.Exit(subprocess.call(command, env=env))
    except KeyboardInterrupt:
        console.print("MLflow UI stopped")
