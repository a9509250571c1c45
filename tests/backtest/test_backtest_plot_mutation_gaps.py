"""What a reader of a backtest figure sees: each policy's equity over its initial cash, its drawdown and its
exposure on three stacked panels sharing the time axis, the agent drawn thicker, the legend, labels and title,
a 1000 x 800 PNG in a folder created on demand, and no figure left open (gaps found by mutation testing,
``tools/mutation.py``)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline.backtest import plot
from pipeline.backtest.engine import BacktestResult
from pipeline.backtest.plot import plot_backtests

DAYS = pd.bdate_range("2024-01-01", periods=5)


def _result(name: str, equity: list[float], exposure: list[float], initial: float) -> BacktestResult:
    frame = pd.DataFrame({"equity": equity, "exposure": exposure}, index=DAYS)
    return BacktestResult(name=name, frame=frame, initial_cash=initial)


AGENT = _result("agent", [200.0, 220.0, 176.0, 198.0, 242.0], [0.0, 1.0, 1.0, -1.0, 0.0], 200.0)
HOLD = _result("buy_and_hold", [50.0, 40.0, 60.0, 45.0, 30.0], [1.0, 1.0, 1.0, 1.0, 1.0], 100.0)


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """The figures ``plot_backtests`` creates (it closes them; the objects stay readable)."""
    figures: list[Figure] = []
    real = plt.subplots

    def subplots(*args: Any, **kwargs: Any) -> Any:
        fig, axes = real(*args, **kwargs)
        figures.append(fig)
        return fig, axes

    monkeypatch.setattr(plot.plt, "subplots", subplots)
    yield figures
    for fig in figures:
        plt.close(fig)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _panels(fig: Figure) -> tuple[Any, Any, Any]:
    eq, dd, pos = fig.axes
    return eq, dd, pos


def test_each_policy_is_drawn_as_equity_over_initial_cash_drawdown_and_exposure(
    drawn: list[Figure], tmp_path: Path
) -> None:
    plot_backtests([HOLD, AGENT], tmp_path / "bt.png", "fold 0 test (seed 1)")
    (fig,) = drawn
    eq, dd, pos = _panels(fig)
    assert [line.get_label() for line in eq.get_lines()] == ["buy_and_hold", "agent"]
    hold_eq, agent_eq = eq.get_lines()
    np.testing.assert_allclose(agent_eq.get_ydata(), [1.0, 1.1, 0.88, 0.99, 1.21])
    np.testing.assert_allclose(hold_eq.get_ydata(), [0.5, 0.4, 0.6, 0.45, 0.3])
    assert list(pd.DatetimeIndex(agent_eq.get_xdata())) == list(DAYS)
    # drawdown below the running peak, as a negative fraction: 0 at each new high
    hold_dd, agent_dd = dd.get_lines()
    np.testing.assert_allclose(agent_dd.get_ydata(), [0.0, 0.0, -0.2, -0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(hold_dd.get_ydata(), [0.0, -0.2, 0.0, -0.25, -0.5], atol=1e-12)
    assert list(pd.DatetimeIndex(hold_dd.get_xdata())) == list(DAYS)
    # exposure held from each bar until the next: a step drawn after the point
    hold_pos, agent_pos = pos.get_lines()
    np.testing.assert_allclose(agent_pos.get_ydata(), [0.0, 1.0, 1.0, -1.0, 0.0])
    np.testing.assert_allclose(hold_pos.get_ydata(), [1.0] * 5)
    assert agent_pos.get_drawstyle() == hold_pos.get_drawstyle() == "steps-post"
    assert list(pd.DatetimeIndex(agent_pos.get_xdata())) == list(DAYS)
    # the agent stands out whatever its place in the list
    assert [line.get_linewidth() for line in eq.get_lines()] == [0.9, 1.4]
    assert [line.get_linewidth() for line in dd.get_lines()] == [0.9, 0.9]
    assert [line.get_linewidth() for line in pos.get_lines()] == [0.9, 0.9]


def test_panels_have_their_labels_legend_title_grid_and_shared_time_axis(
    drawn: list[Figure], tmp_path: Path
) -> None:
    plot_backtests([AGENT, HOLD], tmp_path / "bt.png", "fold 2 test")
    eq, dd, pos = _panels(drawn[0])
    assert eq.get_title() == "fold 2 test"
    labels = (eq.get_ylabel(), dd.get_ylabel(), pos.get_ylabel())
    assert labels == ("equity / initial", "drawdown", "exposure")
    legend = eq.get_legend()
    assert legend is not None and dd.get_legend() is None and pos.get_legend() is None
    assert [t.get_text() for t in legend.get_texts()] == ["agent", "buy_and_hold"]
    assert legend._loc == 2  # "upper left"
    assert {t.get_fontsize() for t in legend.get_texts()} == {8.0}
    for ax in (eq, dd, pos):
        grid = ax.xaxis.get_gridlines() + ax.yaxis.get_gridlines()
        assert grid and all(g.get_visible() and g.get_alpha() == 0.3 for g in grid)
        assert ax.get_shared_x_axes().joined(ax, eq)
    # the equity panel is twice as tall as each of the other two, on top
    heights = [ax.get_position().height for ax in (eq, dd, pos)]
    assert heights[0] == pytest.approx(2 * heights[1], rel=0.05)
    assert heights[1] == pytest.approx(heights[2], rel=0.01)
    assert eq.get_position().y0 > dd.get_position().y0 > pos.get_position().y0
    # matplotlib's default margins leave 12.5 % left and 10 % right; tight_layout trims them
    assert eq.get_position().x0 < 0.12 and eq.get_position().x1 > 0.95
    assert pos.get_position().y0 < 0.1


def test_the_png_is_1000_by_800_in_a_folder_created_on_demand_and_the_figure_is_closed(
    drawn: list[Figure], tmp_path: Path
) -> None:
    open_before = set(plt.get_fignums())
    target = tmp_path / "fig" / "fold_0" / "bt.png"
    out = plot_backtests([AGENT], str(target))
    assert isinstance(out, Path) and out == target
    assert _png_size(target) == (1000, 800)
    assert tuple(drawn[0].get_size_inches()) == (10.0, 8.0)
    assert drawn[0].axes[0].get_title() == ""  # untitled by default
    assert set(plt.get_fignums()) == open_before  # one figure per fold and seed: none may stay open


def test_the_png_keeps_its_size_whatever_the_local_matplotlibrc_says(tmp_path: Path) -> None:
    with matplotlib.rc_context({"figure.dpi": 50, "savefig.dpi": "figure"}):
        out = plot_backtests([AGENT], tmp_path / "bt.png")
    assert _png_size(out) == (1000, 800)
