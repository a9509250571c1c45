"""``python -m pipeline.kis.simulator [--port N ...]``: the simulator without the krx CLI."""

import typer

from pipeline.kis.cli import sim

if __name__ == "__main__":
    typer.run(sim)
