"""Mutation testing of the money and data paths with mutmut 3: one run per module against its own tests.

``make mutation`` calls this; ``make mutation MODULES=pipeline/kis/token.py,pipeline/store/`` limits it (a
folder means every module in it). For each module a scratch project under ``<out>/work/<module>/`` links the
checkout and gets a ``[tool.mutmut]`` section that mutates only that module and selects only its tests
(``TESTS``), so a run takes minutes, not the whole suite per mutant. Results land in ``<out>/summary.json``
(killed / survived / timeout / no tests per module, ``score`` per module and overall) and
``<out>/survivors.txt`` (module, line, mutant name and its diff). Mutants are generated afresh every run.

Score = (killed + timeout) / (every mutant − skipped): a timeout is a mutant the tests noticed (it hangs),
a mutant no selected test reaches counts as not killed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What ``make mutation`` mutates without MODULES: where a silent change costs money or corrupts data.
DEFAULT_MODULES = (
    "pipeline/kis/token.py",
    "pipeline/kis/session.py",
    "pipeline/validation/",
    "pipeline/store/",
    "pipeline/rl/env.py",
    "pipeline/rl/a3c.py",
    "pipeline/backtest/",
    "pipeline/trading/",
)
#: The tests that guard each module (a prefix matches a folder). A module without an entry gets the tests
#: folder mirroring its package (``pipeline/x/y.py`` -> ``tests/x``).
TESTS: dict[str, tuple[str, ...]] = {
    # token.py's own tests run on a fake clock and endpoint (seconds); the simulator-backed fault tests
    # would cost minutes per mutant of TokenManager.get, which every call goes through.
    "pipeline/kis/token.py": ("tests/kis/test_kis_token.py", "tests/kis/test_kis_envelopes.py"),
    # session.py against the simulator-backed tests (test_kis_session/faults/client/secrets) took over 25 min
    # (a simulator start per test, per mutant); the fake-KIS tests pin the same exchanges in seconds.
    "pipeline/kis/session.py": (
        "tests/kis/test_kis_session_mutation_gaps.py",
        "tests/kis/test_kis_envelopes.py",
    ),
    # metrics.py's own tests (hand-built paths, seconds); the walk-forward tests train agents per mutant.
    "pipeline/backtest/metrics.py": (
        "tests/backtest/test_backtest_metrics.py",
        "tests/backtest/test_backtest_metrics_mutation_gaps.py",
    ),
    # store/validation.py and store/bars.py against their own tests (seconds per mutant); the migration,
    # engine and quarantine tests in tests/store build a PostgreSQL schema per test without reaching them.
    "pipeline/store/validation.py": (
        "tests/store/test_store_mutation_gaps.py",
        "tests/store/test_store_bars.py",
    ),
    "pipeline/store/bars.py": (
        "tests/store/test_store_mutation_gaps.py",
        "tests/store/test_store_bars.py",
    ),
    # quarantine.py against its own tests and the end-to-end validation-store test (seconds per mutant);
    # the migration and engine tests in tests/store build schemas without reaching it.
    "pipeline/store/quarantine.py": (
        "tests/store/test_store_quarantine.py",
        "tests/store/test_store_quarantine_mutation_gaps.py",
        "tests/validation/test_validation_store.py",
    ),
    # regimes.py against its gap tests (seconds); test_registry_regimes.py fits models per test.
    "pipeline/store/regimes.py": ("tests/store/test_store_regimes_mutation_gaps.py",),
    "pipeline/store/times.py": (
        "tests/store/test_store_times_mutation_gaps.py",
        "tests/store/test_store_mutation_gaps.py",
    ),
    "pipeline/store/load.py": (
        "tests/store/test_store_load_mutation_gaps.py",
        "tests/store/test_store_quarantine.py",
    ),
    "pipeline/rl/env.py": (
        "tests/rl/test_rl_env.py",
        "tests/rl/test_rl_env_sizing.py",
        "tests/rl/test_rl_multisymbol_env.py",
        "tests/rl/test_rl_instruments.py",
        "tests/rl/test_rl_env_mutation_gaps.py",
    ),
    # a3c.py in one process (seconds per mutant): SharedAdam against torch's Adam and by hand, the loss of
    # hand-made rollouts, the schedule, seeds, the inverse-CDF draw and one update replayed by hand.
    # test_rl_train.py trains agents per mutant; the worker-process tests are marked integration.
    "pipeline/rl/a3c.py": ("tests/rl/test_rl_a3c.py", "tests/rl/test_rl_a3c_mutation_gaps.py"),
    # risk.py's pure tests (seconds); the mirror folder tests/trading starts the simulator and a model
    # server per test. test_kill_switch.py guards state.py, not risk.py.
    "pipeline/trading/risk.py": (
        "tests/trading/test_risk.py",
        "tests/trading/test_risk_mutation_gaps.py",
    ),
    # stats.py's own tests (numbers by hand, seconds); the walk-forward/evaluation tests train agents.
    "pipeline/backtest/stats.py": (
        "tests/backtest/test_backtest_stats.py",
        "tests/backtest/test_backtest_stats_mutation_gaps.py",
    ),
    # the baselines on hand-built markets (seconds); of the look-ahead tests only the baselines' one, the
    # others train an agent per test.
    "pipeline/backtest/policies.py": (
        "tests/backtest/test_backtest_metrics.py",
        "tests/backtest/test_backtest_policies_mutation_gaps.py",
        "tests/backtest/test_backtest_lookahead.py::test_baselines_never_look_ahead",
    ),
    # orders.py and reconcile.py against a fake broker and a SQLite store (plus two PostgreSQL cases): ms per
    # test. The mirror folder tests/trading starts the simulator and a model server per test; test_faults.py
    # and test_reconcile.py still run under make test.
    "pipeline/trading/orders.py": ("tests/trading/test_orders_mutation_gaps.py",),
    "pipeline/trading/reconcile.py": ("tests/trading/test_reconcile_mutation_gaps.py",),
    # state.py's own tests and its gaps (SQLite and PostgreSQL, seconds); the rest of tests/trading starts
    # the simulator and a model server per test.
    "pipeline/trading/state.py": (
        "tests/trading/test_kill_switch.py",
        "tests/trading/test_state_mutation_gaps.py",
    ),
    # clock.py is pure: its own tests (the simulator one is marked integration) and its gaps.
    "pipeline/trading/clock.py": (
        "tests/trading/test_clock.py",
        "tests/trading/test_clock_mutation_gaps.py",
    ),
    # decider.py against a fake transport (seconds); the trading tests reach it only through a model server.
    "pipeline/trading/decider.py": ("tests/trading/test_decider_mutation_gaps.py",),
    # brokers.py against a fake KIS client (seconds); the mirror folder tests/trading starts the simulator
    # and a model server per test.
    "pipeline/trading/brokers.py": ("tests/trading/test_brokers_mutation_gaps.py",),
    # types.py: its own gaps file (seconds); the fast orders/reconcile/risk tests also kill its 5 mutants.
    "pipeline/trading/types.py": ("tests/trading/test_types_mutation_gaps.py",),
    # engine.py against a fake broker and a fake decider on a SQLite store copied from one migrated per
    # process (seconds); tests/trading starts the simulator and a model server per test.
    "pipeline/trading/engine.py": (
        "tests/trading/test_engine_mutation_gaps.py",
        "tests/trading/test_engine_mutation_gaps2.py",
    ),
    # the backtest loop on hand-built bars and a scripted policy (seconds); walk-forward tests train agents.
    "pipeline/backtest/engine.py": (
        "tests/backtest/test_backtest_metrics.py",
        "tests/backtest/test_backtest_engine_mutation_gaps.py",
    ),
    # folds by hand and the walk-forward loop with a train spy and a stand-in agent (seconds); the other
    # walk-forward tests train A3C agents per mutant.
    "pipeline/backtest/walkforward.py": (
        "tests/backtest/test_backtest_walkforward.py::test_folds_are_time_ordered_with_embargo_and_tile_the_end",
        "tests/backtest/test_backtest_walkforward_mutation_gaps.py",
    ),
    # the check on hand-built bars (seconds); most of test_backtest_lookahead.py trains agents.
    "pipeline/backtest/lookahead.py": ("tests/backtest/test_backtest_lookahead_mutation_gaps.py",),
    # db.py, migrate.py, pgcopy.py, schema.py against their own gap tests (SQLite files, one PostgreSQL schema
    # per module, fakes for alembic's upgrade: seconds). test_store_engine.py and test_store_migrations.py
    # run a full migration per test (seconds per mutant of every function they touch).
    "pipeline/store/db.py": ("tests/store/test_store_db_mutation_gaps.py",),
    "pipeline/store/migrate.py": ("tests/store/test_store_migrate_mutation_gaps.py",),
    "pipeline/store/pgcopy.py": ("tests/store/test_store_pgcopy_mutation_gaps.py",),
    "pipeline/store/schema.py": ("tests/store/test_store_schema_mutation_gaps.py",),
    # cli.py against a hand-filled SQLite store (plus one PostgreSQL case) and the commands in-process
    # (seconds); test_trading_cli.py's first test runs the console script in subprocesses (~35 s) and the
    # rest migrate a store through `krx db upgrade` per test.
    "pipeline/trading/cli.py": ("tests/trading/test_trading_cli_mutation_gaps.py",),
    # bars.py's pandas helpers on hand-built frames, and validate_bars against a recording stand-in for
    # run_suite (seconds): a real GX run costs ~0.45 s CPU per validate_bars call once its context exists
    # (5 s for the first), and tests/validation makes ~100 such calls per surviving mutant (one a minute).
    "pipeline/validation/bars.py": ("tests/validation/test_validation_bars_mutation_gaps.py",),
    # offline.py on hand-written pages and a small stand-in vendor/ folder (seconds); the report tests'
    # data_docs fixture renders two GX runs with Data Docs (~1 min on the shared cores) and
    # test_validation_bars.py is GX-bound, per mutant.
    "pipeline/validation/offline.py": (
        "tests/validation/test_validation_offline_mutation_gaps.py",
        "tests/reports/test_reports_offline.py::test_a_page_is_pointed_at_the_local_copies_relative_to_its_folder",
        "tests/reports/test_reports_offline.py::test_an_existing_site_is_rewritten_whole_once_then_only_what_a_run_wrote",
        "tests/reports/test_reports_offline.py::test_every_cdn_asset_in_the_gx_templates_has_a_local_copy",
    ),
    # report.py: the walk-forward it asks for, the CSV and summary it hands back, with a stand-in
    # run_walkforward and read_bars (seconds); the walk-forward tests train agents per mutant.
    "pipeline/backtest/report.py": (
        "tests/backtest/test_backtest_report.py",
        "tests/backtest/test_backtest_report_mutation_gaps.py",
    ),
    # plot.py: the figure's series, labels and PNG, drawn from hand-built results (seconds per mutant).
    "pipeline/backtest/plot.py": ("tests/backtest/test_backtest_plot_mutation_gaps.py",),
    # suite.py: the suite's expectations, a GX run on a 14-row frame and one Data Docs run in two folders,
    # each on a GX context of its own (seconds); tests/validation runs GX on realistic frames per test
    # (about 10 min for the folder, per mutant).
    "pipeline/validation/suite.py": (
        "tests/validation/test_validation_suite_mutation_gaps.py",
        "tests/validation/test_validation_mutation_gaps.py::test_expectation_labels_name_the_type_and_columns",
    ),
    # eod.py against a SQLite store filled by hand, a file-based MLflow store in tmp_path and a figure whose
    # savefig is recorded (ms to ~1 s per test); test_eod.py's run_eod tests (real SQLite MLflow store,
    # real figure, both store backends) take 10-25 s each and reach almost every function.
    "pipeline/trading/eod.py": ("tests/trading/test_eod_mutation_gaps.py",),
    # the evaluation with run_walkforward replaced by a stand-in that plays back chosen metrics rows and
    # equity paths, plus one pass through the real walk-forward with a train spy (seconds); the
    # evaluation's own tests train A3C agents or run `krx evaluate` on real data per mutant.
    "pipeline/backtest/evaluation.py": ("tests/backtest/test_backtest_evaluation_mutation_gaps.py",),
    # tuning with evaluate_agent replaced by a stand-in answering chosen validation figures (ms); the
    # tuning tests train agents per candidate.
    "pipeline/backtest/tuning.py": ("tests/backtest/test_backtest_tuning_mutation_gaps.py",),
}
#: Tests left out of mutation runs, with the reason. Under the stats run's tracing on a busy machine these
#: miss their timing by a few milliseconds, and one failure there stops the whole run.
DESELECT: tuple[str, ...] = ()
#: Top-level entries of the checkout the scratch project does not link (state, caches, the mutants).
NOT_LINKED = {".git", ".venv", ".lock-venv", "var", "mutants", "pyproject.toml", "node_modules"}
#: mutmut's exit codes by outcome (mutmut/stats.py); anything else is "suspicious".
OUTCOME = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped"}
OUTCOME |= {36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 37: "type check"}


@dataclass
class ModuleResult:
    """Counts of one module's mutants by outcome, and the survivors (mutants no selected test killed or
    reached) as (line, "name (outcome)", diff)."""

    module: str
    counts: Counter[str]
    survivors: list[tuple[int, str, str]]
    error: str = ""

    @property
    def score(self) -> float | None:
        tested = sum(self.counts.values()) - self.counts["skipped"]
        return round((self.counts["killed"] + self.counts["timeout"]) / tested, 4) if tested else None

    def as_json(self) -> dict[str, object]:
        keys = ("killed", "survived", "timeout", "no tests", "suspicious", "skipped", "not checked")
        out: dict[str, object] = {k.replace(" ", "_"): self.counts[k] for k in keys}
        out.update(total=sum(self.counts.values()), score=self.score)
        if self.error:
            out["error"] = self.error
        return out


def expand(modules: list[str], root: Path) -> list[str]:
    """Module paths (relative to ``root``); a folder becomes its ``.py`` files, a missing path nothing."""
    out: list[str] = []
    for item in modules:
        path = root / item
        if path.is_dir():
            out += sorted(p.relative_to(root).as_posix() for p in path.glob("*.py"))
        elif path.is_file():
            out.append(Path(item).as_posix())
    return list(dict.fromkeys(out))


def tests_for(module: str, tests: dict[str, tuple[str, ...]]) -> list[str]:
    """The test paths that guard ``module``: the longest matching prefix in ``tests``, else the mirror."""
    matches = [k for k in tests if module == k or module.startswith(k.rstrip("/") + "/")]
    if matches:
        return list(tests[max(matches, key=len)])
    parts = Path(module).parts
    return [str(Path("tests", *parts[1:-1]))] if len(parts) > 2 else ["tests"]


def mutmut_config(module: str, tests: list[str], isolation: str) -> str:
    """The ``[tool.mutmut]`` section of one module's run."""
    source = Path(module).parts[0]
    values = {
        "source_paths": [source],
        "only_mutate": [module],
        "pytest_add_cli_args_test_selection": tests,
        # Tests that start processes are left out: a child imports the mutated package outside mutmut's
        # working folder, where its trampolines cannot find their configuration.
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-m", "not integration"]
        + [arg for test in DESELECT for arg in ("--deselect", test)],
        "use_git_change_detection": False,
        "process_isolation": isolation,
    }
    return "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def prepare(work: Path, root: Path, config: str) -> None:
    """A fresh scratch project: links to the checkout's entries and its pyproject plus ``config``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for entry in root.iterdir():
        if entry.name not in NOT_LINKED and not entry.name.endswith((".egg-info", "_cache")):
            (work / entry.name).symlink_to(entry)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8") if pyproject.exists() else ""
    (work / "pyproject.toml").write_text(text + config, encoding="utf-8")


def run_module(module: str, root: Path, out: Path, tests: list[str], max_children: int) -> ModuleResult:
    """Mutate ``module`` against ``tests`` in a scratch project; collect each mutant's outcome."""
    work = out / "work" / module.replace("/", "__").removesuffix(".py")
    # torch-based tests are not fork-safe after the stats run imported torch in mutmut's main process
    isolation = "forkserver" if module.startswith("pipeline/rl/") else "fork"
    prepare(work, root, mutmut_config(module, tests, isolation))
    mutmut = Path(sys.executable).with_name("mutmut")
    cmd = [str(mutmut), "run", "--max-children", str(max_children)]
    # mutmut runs copies of the tests, which no longer sit beside shared/: point the real-data tests at it
    env = {"KRX_TEST_KRX_DATA": str(root.resolve().parent / "shared" / "data" / "krx")} | dict(os.environ)
    with open(work / "mutmut.log", "w", encoding="utf-8") as log:
        done = subprocess.run(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, check=False, env=env)
    meta = work / "mutants" / (module + ".meta")
    if not meta.exists():
        tail = (work / "mutmut.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        return ModuleResult(module, Counter(), [], error=f"mutmut exited {done.returncode}: {tail}")
    codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    if done.returncode != 0 or all(code is None for code in codes.values()):
        tail = (work / "mutmut.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        return ModuleResult(module, Counter(), [], error=f"mutmut exited {done.returncode}: {tail}")
    counts = Counter(
        OUTCOME.get(code, "suspicious") if code is not None else "not checked" for code in codes.values()
    )
    lost = {
        name: OUTCOME[code] for name, code in codes.items() if OUTCOME.get(code) in ("survived", "no tests")
    }
    source = (root / module).read_text(encoding="utf-8")
    survivors = [
        (_line_of(source, diff), f"{name} ({lost[name]})", diff)
        for name, diff in _diffs(work, module, list(lost))
    ]
    return ModuleResult(module, counts, sorted(survivors))


def _diffs(work: Path, module: str, names: list[str]) -> list[tuple[str, str]]:
    """Each mutant's diff against its function, from mutmut's own index (run inside ``work``)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(work)
    try:
        return [(name, get_diff_for_mutant(name, path=module)) for name in names]
    finally:
        os.chdir(here)


def _line_of(source: str, diff: str) -> int:
    """Line in ``source`` of the first line a mutant changed (0 when not found)."""
    removed = [
        line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")
    ]
    lines = [line.strip() for line in source.splitlines()]
    for text in removed[:1]:
        if text in lines:
            return lines.index(text) + 1
    return 0


def write_reports(results: list[ModuleResult], out: Path) -> dict[str, object]:
    """``summary.json`` and ``survivors.txt`` under ``out``; returns the summary."""
    total: Counter[str] = Counter()
    for r in results:
        total.update(r.counts)
    overall = ModuleResult("overall", total, [])
    summary: dict[str, object] = {
        "modules": {r.module: r.as_json() for r in results},
        "overall": overall.as_json(),
        "score": overall.score,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    blocks = [f"## {r.module}:{line} {name}\n{diff}\n" for r in results for line, name, diff in r.survivors]
    (out / "survivors.txt").write_text("\n".join(blocks), encoding="utf-8")
    return summary


def _parse_tests(items: list[str]) -> dict[str, tuple[str, ...]]:
    """``--tests MODULE=path,path`` overrides."""
    out = dict(TESTS)
    for item in items:
        module, _, paths = item.partition("=")
        out[module] = tuple(p for p in paths.split(",") if p)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--modules", default="", help="comma list of modules or folders (default: all)")
    parser.add_argument("--tests", action="append", default=[], help="MODULE=test,paths (repeatable)")
    parser.add_argument("--root", type=Path, default=REPO, help="project root (default: this checkout)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: ROOT/var/mutation)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    out = (args.out or root / "var" / "mutation").resolve()
    requested = [m.strip() for m in args.modules.split(",") if m.strip()] or list(DEFAULT_MODULES)
    modules = expand(requested, root)
    if not modules:
        parser.error(f"no Python module found in {requested}")
    tests = _parse_tests(args.tests)
    results = []
    for module in modules:
        selected = tests_for(module, tests)
        print(f"== {module} (tests: {' '.join(selected)})", flush=True)
        result = run_module(module, root, out, selected, args.max_children)
        print(f"   {json.dumps(result.as_json())}", flush=True)
        results.append(result)
        write_reports(results, out)  # partial reports survive an interrupted run
    summary = write_reports(results, out)
    print(f"score {summary['score']}; {out / 'summary.json'}, {out / 'survivors.txt'}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
