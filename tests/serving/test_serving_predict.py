"""A good window gets the decision the registered pyfunc makes in process on the same bars, with the model
and version that answered; many windows in one call (or symbols instead of specs) give the same."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.registry.pyfunc import load_pyfunc, to_model_input
from tests.serving.server import Server

KEYS = ("action", "target_level", "value", "regime", "simulated_position")


def _in_process(server: Server, window: pd.DataFrame, position: float | None = None) -> pd.Series:
    model = load_pyfunc(server.name, "champion", server.client)
    return model.predict(to_model_input(window, position=position)).iloc[0]


def test_a_good_window_gets_exactly_the_in_process_pyfunc_decision(served: Server) -> None:
    for end, position in ((300, None), (420, -1.0), (500, 1.0)):
        window = served.bars.iloc[end - 250 : end]
        response = served.predict(window, spec=served.spec.name, position=position)
        assert response.status_code == 200, response.text
        got, expected = response.json(), _in_process(served, window, position)
        for key in KEYS:
            assert got[key] == expected[key], (key, got[key], expected[key])
        assert got["probabilities"] == list(expected["probabilities"])
        assert got["model_name"] == served.name and got["model_version"] == served.champion()
        assert got["spec"] == served.spec.name and 0 < got["latency_ms"] < 10_000


def test_a_symbol_picks_the_spec_that_trades_it(served: Server) -> None:
    window = served.bars.iloc[-250:]
    response = served.predict(window, symbol=served.spec.symbols[0])
    assert response.status_code == 200, response.text
    assert response.json()["spec"] == served.spec.name
    assert response.json()["action"] == _in_process(served, window)["action"]


def test_a_batch_answers_each_window_in_order_like_one_at_a_time(served: Server) -> None:
    from tests.serving.server import payload

    windows = [served.bars.iloc[200 + 40 * k : 450 + 40 * k] for k in range(3)]
    bodies = [payload(w, spec=served.spec.name, position=float(k - 1)) for k, w in enumerate(windows)]
    response = served.post("/predict_batch", bodies)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert len(answers) == 3
    for k, (window, answer) in enumerate(zip(windows, answers, strict=True)):
        expected = _in_process(served, window, float(k - 1))
        assert answer["action"] == expected["action"] and answer["model_version"] == served.champion()
        assert np.allclose(answer["probabilities"], expected["probabilities"], atol=1e-6)
