"""``krx stack up|down|status`` (``make up``, ``make down``, ``make status``): the UIs on this machine as
background processes (registered by pipeline/cli.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import get_settings
from pipeline.stack import GRACE_S, Ports, Stack, StackError

stack_app = typer.Typer(
    help="The local stack: Airflow, the MLflow UI, the model server and the KIS simulator (pid files and "
    "logs under <var_dir>/stack).",
    no_args_is_help=True,
)
console = Console()


def _say(line: str) -> None:
    console.print(line, soft_wrap=True, markup=False, highlight=False)


@stack_app.command("up")
def up(
    airflow_port: Annotated[int, typer.Option(min=1, max=65535, help="Airflow UI and REST API.")] = 8080,
    mlflow_port: Annotated[int, typer.Option(min=1, max=65535, help="MLflow UI.")] = 5000,
    serve_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Model server (default KRX_SERVING_PORT, 3000).")
    ] = None,
    sim_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="KIS simulator (default KRX_SIM_PORT, 8900).")
    ] = None,
    unpause: Annotated[
        str,
        typer.Option(help="DAGs to unpause: 'all' (every DAG is created unpaused), 'none', or a comma list."),
    ] = "all",
) -> None:
    """Start whatever is not running yet (a second `up` starts no duplicates) and wait until each answers;
    print the URLs and the Airflow admin login."""
    settings = get_settings()
    ports = Ports(
        airflow_port, mlflow_port, serve_port or settings.serving_port, sim_port or settings.sim_port
    )
    stack = Stack(settings, ports)
    dags = None if unpause == "all" else [d.strip() for d in unpause.split(",") if d.strip() and d != "none"]
    try:
        stack.up(dags, say=_say)
    except StackError as exc:
        console.print(f"[red]error[/]: {exc}", soft_wrap=True, highlight=False)
        console.print("what did start keeps running: `krx stack status`, `krx stack down`")
        raise typer.Exit(1) from exc
    _print_status(stack)


@stack_app.command("down")
def down(
    grace: Annotated[float, typer.Option(min=0, help="Seconds between SIGTERM and SIGKILL.")] = GRACE_S,
) -> None:
    """Stop exactly the processes `up` started (by pid file and process group) and remove the pid files."""
    stopped = Stack(get_settings()).down(grace, say=_say)
    if not stopped:
        console.print("nothing was running")


@stack_app.command("status")
def status() -> None:
    """Each component: pid, alive, whether its port answers, URL and log file. Exit 1 if one is down."""
    stack = Stack(get_settings())
    rows = stack.status()
    _print_status(stack)
    if not all(r.alive and r.answering is not False for r in rows):
        raise typer.Exit(1)


def _print_status(stack: Stack) -> None:
    table = Table("component", "pid", "alive", "answers", "URL", title="krx stack")
    for s in stack.status():
        answering = "-" if s.answering is None else ("yes" if s.answering else "[red]no[/]")
        alive = "yes" if s.alive else "[red]no[/]"
        table.add_row(s.name, str(s.pid or "-"), alive, answering, s.url or "")
    for column in (table.columns[0], table.columns[-1]):
        column.no_wrap = True
    console.print(table)
    console.print(
        f"logs: {stack.dir}/<component>.log; task logs: {stack.airflow_home / 'logs'}", soft_wrap=True
    )
    creds = stack.credentials(create=False)
    if creds is not None:
        console.print(
            f"Airflow login: user [bold]{creds.username}[/] password [bold]{creds.password}[/] "
            f"(kept in {creds.file})",
            soft_wrap=True,
            highlight=False,
        )
