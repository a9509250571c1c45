"""Readiness and hot reload: /readyz names the spec without a champion; a moved ``champion`` alias is
picked up within the poll interval with no failed request during the swap; a version that fails to load
leaves the old one serving."""

from __future__ import annotations

import threading
from typing import Any

import mlflow
import pytest
from mlflow.pyfunc.model import PythonModel

from pipeline.registry.register import register_agent
from tests.serving.server import Server, wait_for

#: MLflow warns about the untyped ``predict`` of the deliberately broken model; not what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:mlflow.*")


class Broken(PythonModel):  # type: ignore[misc]
    """A registered version that cannot be loaded."""

    def load_context(self, context: Any) -> None:
        raise RuntimeError("broken on purpose")

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input


def test_without_a_champion_readyz_is_503_and_names_the_spec(server: Server) -> None:
    before = server.readyz_before_champion
    assert before is not None and before.status_code == 503
    assert server.spec.name in before.text and "champion" in before.text
    assert server.get("/readyz").status_code == 200
    assert server.get("/livez").status_code == 200


def test_a_moved_champion_answers_with_no_failed_request_during_the_swap(served: Server) -> None:
    old = served.champion()
    new = register_agent(served.agent, served.spec, served.tracker)
    window = served.bars.iloc[-250:]
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = served.predict(window, spec=served.spec.name)
            seen.append((r.status_code, r.json().get("model_version") if r.status_code == 200 else r.text))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        wait_for(lambda: len(seen) >= 3, "requests before the swap")
        served.set_champion(new)
        wait_for(lambda: any(v == new for _, v in seen), f"v{new} answering", timeout_s=60)
        count = len(seen)
        wait_for(lambda: len(seen) >= count + 3, "requests after the swap")
    finally:
        stop.set()
        worker.join(timeout=30)
    assert all(status == 200 for status, _ in seen), [s for s in seen if s[0] != 200][:3]
    versions = [v for _, v in seen]
    first_new = versions.index(new)
    assert set(versions[:first_new]) == {old} and set(versions[first_new:]) == {new}


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(served: Server) -> None:
    old = served.champion()
    run_id = served.tracker.start_training(served.spec, run_name="broken")["run_id"]
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="agent",
            python_model=Broken(),
            pip_requirements=[],
            registered_model_name=served.name,
        )
    broken = str(info.registered_model_version)
    served.set_champion(broken)
    failed = f'krx_model_loads_total{{model="{served.name}",outcome="failed",version="{broken}"}}'
    wait_for(lambda: failed in served.get("/metrics").text, "the failed load in /metrics", timeout_s=60)
    assert served.answering_version() == old
    assert served.get("/readyz").status_code == 200
    assert f"loading {served.name} v{broken} failed" in served.log_text()
