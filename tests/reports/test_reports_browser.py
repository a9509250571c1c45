"""Every HTML report the pipeline writes, opened from disk in headless Chromium with no network, shows what a
person needs: the Data Docs index lists the validation runs as links, a run's page has one row per
expectation with its outcome and the failures' unexpected counts, the training report shows its tables and
figures. A screenshot of each page lands in ``var/screenshots/``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from pipeline.backtest.evaluation import AgentEvaluation, AgentEvaluationConfig, render_html, score
from pipeline.registry.report import ReportData, render_report
from pipeline.registry.statistics import training_statistics
from tests.registry.factories import wf_rows
from tests.reports.browser import (
    broken_images,
    click,
    errors,
    fonts_loaded,
    open_page,
    screenshot,
    wait_for,
)
from tests.reports.factories import NEGATIVE_VOLUME, DataDocs

pytestmark = [pytest.mark.integration]

#: The libraries every GX page runs, as the page sees them once loaded from static/vendor/.
LIBRARIES = """return {
    jquery: window.jQuery && jQuery.fn.jquery,
    bootstrap: jQuery.fn.tooltip && jQuery.fn.tooltip.Constructor.VERSION,
    popper: typeof window.Popper,
    bootstrapTable: jQuery.fn.bootstrapTable && jQuery.fn.bootstrapTable.Constructor.VERSION,
    datepicker: typeof jQuery.fn.datepicker,
    vega: window.vega && vega.version,
    vegaLite: window.vegaLite && vegaLite.version,
    vegaEmbed: window.vegaEmbed && vegaEmbed.version,
    bootstrapCss: getComputedStyle(document.querySelector('.row')).display,
};"""
#: Rows of the index's validation-results table (built by bootstrap-table from the page's data).
INDEX_ROWS = """return [...document.querySelectorAll('#Validation-Results tbody tr[data-href]')].map(tr => ({
    href: tr.dataset.href,
    text: tr.innerText,
    failed: !!tr.querySelector('i.fa-times'),
    passed: !!tr.querySelector('i.fa-check-circle'),
}));"""
#: One entry per expectation row of a validation page: the tables headed Status / Expectation.
EXPECTATION_ROWS = """
const tables = [...document.querySelectorAll('table')].filter(t => {
    const head = [...t.querySelectorAll(':scope > thead > tr > th')].map(th => th.innerText.trim());
    return head[0] === 'Status' && head[1] === 'Expectation';
});
return tables.flatMap(t => [...t.querySelectorAll(':scope > tbody > tr')].map(tr => {
    const [status, expectation] = tr.querySelectorAll(':scope > td');
    const icon = status.querySelector('i');
    return {
        styled: !!t.closest('.bootstrap-table'),
        passed: !!icon && icon.classList.contains('fa-check-circle'),
        failed: !!icon && icon.classList.contains('fa-times'),
        glyph: !!icon && getComputedStyle(icon, '::before').fontFamily.includes('Font Awesome'),
        text: expectation.innerText,
    };
}));"""


def _assert_gx_page_complete(driver: Any, *, icons: bool = True) -> None:
    """Every vendored library ran, Bootstrap styles apply, icons have their font, no load failed."""
    libraries = driver.execute_script(LIBRARIES)
    assert libraries == {
        "jquery": "3.7.1",
        "bootstrap": "4.3.1",
        "popper": "function",
        "bootstrapTable": "1.19.1",
        "datepicker": "function",
        "vega": "5.33.1",
        "vegaLite": "5.23.0",
        "vegaEmbed": "6.29.0",
        "bootstrapCss": "flex",
    }
    assert any("Font Awesome" in family for family in fonts_loaded(driver)) or not icons
    assert broken_images(driver) == []
    assert errors(driver) == []


def test_the_data_docs_index_lists_every_validation_run_as_a_link(browser: Any, data_docs: DataDocs) -> None:
    open_page(browser, data_docs.site / "index.html")
    rows = wait_for(browser, lambda d: d.execute_script(INDEX_ROWS), "the index's table of validation runs")
    _assert_gx_page_complete(browser)
    shot = screenshot(browser, "data_docs_index")
    assert len(rows) == len(data_docs.runs) == 2
    by_run = {next(run for run in data_docs.runs if f"\t{run}\t" in row["text"]): row for row in rows}
    assert by_run["broken"]["failed"] and not by_run["broken"]["passed"]
    assert by_run["clean"]["passed"] and not by_run["clean"]["failed"]
    for run, row in by_run.items():
        assert (data_docs.site / row["href"]).resolve() == data_docs.page(run).resolve()
    # The row is the link: clicking it opens the run's page.
    row_cell = f'#Validation-Results tr[data-href="{by_run["broken"]["href"]}"] td'
    wait_for(browser, lambda d: click(d, row_cell), "a clickable row of the broken run")
    wait_for(
        browser, lambda d: d.current_url == data_docs.page("broken").resolve().as_uri(), "the run's page"
    )
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("run", ["clean", "broken"])
def test_a_validation_page_shows_one_row_per_expectation_with_its_outcome(
    browser: Any, data_docs: DataDocs, run: str
) -> None:
    report = data_docs.runs[run]
    open_page(browser, data_docs.page(run))
    rows = wait_for(
        browser,
        lambda d: [r for r in d.execute_script(EXPECTATION_ROWS) if r["styled"]],
        "expectation tables built by bootstrap-table",
    )
    _assert_gx_page_complete(browser)
    screenshot(browser, f"data_docs_validation_{run}")
    results = report.expectation_results
    assert len(rows) == len(results) == 24
    assert all(r["styled"] and r["glyph"] and r["passed"] != r["failed"] for r in rows)
    assert sum(r["failed"] for r in rows) == sum(not r["success"] for r in results)
    # A failed expectation says how many rows broke it, as the validation counted them.
    shown = Counter(
        int(text.split(" unexpected values found")[0].split()[-1])
        for text in (r["text"] for r in rows if r["failed"])
    )
    counted = Counter(r["unexpected_count"] for r in results if not r["success"])
    assert shown == counted
    if run == "broken":
        assert counted == Counter({1: 3, len(NEGATIVE_VOLUME): 1})  # high < low/open/close; volume < 0
    else:
        assert not counted


def test_the_expectation_suite_page_lists_the_suite(browser: Any, data_docs: DataDocs) -> None:
    open_page(browser, data_docs.site / "expectations" / "bars.html")
    wait_for(
        browser,
        lambda d: d.execute_script("return document.querySelectorAll('.bootstrap-table').length > 0;"),
        "the suite's tables built by bootstrap-table",
    )
    _assert_gx_page_complete(browser, icons=False)  # the suite page shows no status icons
    screenshot(browser, "data_docs_expectation_suite")
    text = browser.find_element("tag name", "body").text
    assert "bars" in text and "values must never be null" in text


def _figure(path: Path) -> Path:
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.plot(np.cumprod(1 + rng.normal(0.0005, 0.01, 250)), label="agent")
    ax.legend()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def test_the_training_report_shows_its_tables_and_figures(browser: Any, tmp_path: Path) -> None:
    metrics = wf_rows({"sharpe": 1.2}, seeds=(0, 1, 2), folds=2).assign(config=0)
    rng = np.random.default_rng(1)
    returns = pd.DataFrame(
        [
            {"config": 0, "seed": s, "fold": 0, "split": split, "symbol": "KOSPI200F", "ts": str(t), "ret": r}
            for s in range(3)
            for split in ("val", "test")
            for t, r in enumerate(rng.normal(0.0005, 0.01, 120))
        ]
    )
    data = ReportData(
        spec="kospi200f-1d",
        model_name="krx-a3c-kospi200f-1d",
        version="1",
        run_id="abc123",
        outcome="champion",
        summary="champion: first version",
        rules=[{"name": "no_nan", "passed": True, "value": 1.0, "threshold": 1.0, "detail": "finite"}],
        metrics=metrics,
        trials=pd.DataFrame({"config": [0, 0, 0], "seed": [0, 1, 2], "val_sharpe": [1.1, 1.2, 1.3]})
        .assign(test_sharpe=[0.5, 0.6, 0.7])
        .assign(selected=[False, False, True]),
        statistics=training_statistics(metrics, returns, (0, 2), n_configurations=1),
        regimes=pd.DataFrame(
            {
                "regime": [0, 1],
                "share": [0.6, 0.4],
                "mean_return": [0.001, -0.002],
                "ann_volatility": [0.1, 0.3],
            }
        ).assign(n_bars=[60, 40]),
        regime_figure=_figure(tmp_path / "regimes.png"),
        figures=[_figure(tmp_path / "fold_0_test.png"), _figure(tmp_path / "fold_1_test.png")],
        data={"rows": 500, "first": "2024-01-02", "last": "2025-12-30", "sha256": "f" * 64},
        aliases={"champion": "1"},
    )
    page = tmp_path / "krx-a3c-kospi200f-1d-v1.html"
    page.write_text(render_report(data), encoding="utf-8")
    open_page(browser, page)
    figures = wait_for(
        browser,
        lambda d: d.execute_script(
            "const i = [...document.images]; return i.every(x => x.complete) && i.map(x => x.naturalWidth);"
        ),
        "the report's figures",
    )
    tables = browser.execute_script("return [...document.querySelectorAll('table')].map(t => t.rows.length);")
    headings = browser.execute_script("return [...document.querySelectorAll('h2')].map(h => h.innerText);")
    screenshot(browser, "training_report")
    assert figures == [480, 480, 480]  # 6 in x 80 dpi: the regime chart and one per test window
    assert len(tables) >= 7 and all(
        rows >= 2 for rows in tables
    )  # facts, val, test, gate, CI, trials, regimes
    assert "Agent vs baselines" in headings and "Promotion gate" in headings
    assert broken_images(browser) == [] and errors(browser) == []


def test_the_evaluation_report_shows_its_headline_figure_and_tables(browser: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    config = AgentEvaluationConfig(seeds=(0, 1))
    rows = [
        {"split": "test", "strategy": strategy, "symbol": symbol, "year": year, "seed": seed}
        | {"sharpe": rng.normal(), "total_return": 0.1, "max_drawdown": 0.2, "turnover": 3.0}
        for symbol in ("091160", "229200")
        for year in (2018, 2019)
        for strategy, seeds in (("agent", (0, 1)), ("buy_and_hold", (0,)), ("momentum", (0,)))
        for seed in seeds
    ]
    metrics = pd.DataFrame(rows)
    returns = {
        (s, y, seed): rng.normal(0, 0.01, 240)
        for s in ("091160", "229200")
        for y in (2018, 2019)
        for seed in (0, 1)
    }
    evaluation = AgentEvaluation(config=config, metrics=metrics, agent_returns=returns)
    evaluation.headline, evaluation.details = score(metrics, returns, config)
    page = tmp_path / "report.html"
    page.write_text(render_html(evaluation), encoding="utf-8")
    open_page(browser, page)
    widths = wait_for(
        browser,
        lambda d: d.execute_script(
            "const i = [...document.images]; return i.every(x => x.complete) && i.map(x => x.naturalWidth);"
        ),
        "the evaluation's Sharpe figure",
    )
    headline = browser.execute_script(
        "return [...document.querySelectorAll('table')[0].rows]"
        ".map(r => [r.cells[0].innerText, r.cells[1].innerText]);"
    )
    per_fold = browser.execute_script(  # the last table: per fund and year (a policies table comes before)
        "return [...document.querySelectorAll('table')].at(-1).tBodies[0].rows.length;"
    )
    screenshot(browser, "evaluation_report")
    assert widths and all(w > 0 for w in widths)
    assert [name for name, _ in headline][:3] == ["folds_beat_bh", "pairs_beat_bh", "mdd_not_worse"]
    assert all(value.replace(".", "", 1).lstrip("-").isdigit() for _, value in headline)
    assert per_fold == 4  # two funds x two years
    assert broken_images(browser) == [] and errors(browser) == []
