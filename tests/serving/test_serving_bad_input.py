"""Bad input gets a 400 naming the field (``{"error", "detail"}`` with the field's location), never a 5xx:
short or long windows, unsorted or repeated timestamps, non-finite or non-positive prices, high below low,
negative volume, an unknown spec or symbol, a position outside the model's levels."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.rl.synthetic import random_walk_bars
from tests.serving.server import MAX_BARS, Server, payload

Body = dict[str, Any]


def _set(index: int, key: str, value: Any) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        body["bars"][index][key] = value

    return change


def _swap(body: Body) -> None:
    bars = body["bars"]
    bars[10]["ts"], bars[11]["ts"] = bars[11]["ts"], bars[10]["ts"]


def _repeat(body: Body) -> None:
    body["bars"][11]["ts"] = body["bars"][10]["ts"]


def _long(body: Body) -> None:
    bars = random_walk_bars(MAX_BARS + 1, seed=3).tz_localize("Asia/Seoul")
    body["bars"] = payload(bars)["bars"]


CASES: dict[str, tuple[Callable[[Body], None], str, str]] = {
    # name: (change to a good body, a field the location names, a word of the message or type)
    "unsorted timestamps": (_swap, "ts", "before"),
    "duplicate timestamps": (_repeat, "ts", "repeats"),
    "zero close": (_set(5, "close", 0.0), "close", "greater"),
    "negative open": (_set(5, "open", -1.0), "open", "greater"),
    "infinite high": (_set(5, "high", float("inf")), "high", "finite"),
    "NaN low": (_set(5, "low", float("nan")), "low", "finite"),
    "high below low": (_set(5, "high", 1.0), "high", "below low"),
    "negative volume": (_set(5, "volume", -5.0), "volume", "greater"),
    "price as text": (_set(5, "close", "abc"), "close", "number"),
    "too long": (_long, "bars", "at most"),
    "unknown spec": (lambda b: b.update(spec="no-such-spec"), "spec", "unknown model spec"),
    "unknown symbol": (lambda b: b.update(spec=None, symbol="005930"), "symbol", "no served model spec"),
    "symbol of another spec": (lambda b: b.update(symbol="005930"), "symbol", "not traded"),
    "position above the levels": (lambda b: b.update(position=2.0), "position", "outside"),
    "position below the levels": (lambda b: b.update(position=-1.5), "position", "outside"),
    "no bars": (lambda b: b.pop("bars"), "bars", "missing"),
    "neither spec nor symbol": (lambda b: b.pop("spec"), "spec", "give spec or symbol"),
    "unknown field": (lambda b: b.update(size=3), "size", "extra"),
}


def _good(server: Server) -> Body:
    return payload(server.bars.iloc[-250:], spec=server.spec.name, position=0.0)


def _names_the_field(response: Any, field: str, word: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    locations = [".".join(str(p) for p in d["loc"]) for d in body["detail"]]
    assert any(field in loc.split(".") for loc in locations), (field, body)
    assert any(word in d["msg"] or word in d["type"] for d in body["detail"]), (word, body)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_a_400_that_names_the_field(server: Server, case: str) -> None:
    change, field, word = CASES[case]
    body = _good(server)
    change(body)
    raw = json.dumps(body)  # NaN and Infinity go out as the JSON extensions most clients send
    response = server.http.post(
        server.url + "/predict", content=raw, headers={**server.headers(), "content-type": "application/json"}
    )
    _names_the_field(response, field, word)


def test_a_window_shorter_than_the_model_needs_is_refused_with_the_minimum(server: Server) -> None:
    short = server.predict(server.bars.iloc[-(server.min_bars - 1) :], spec=server.spec.name)
    _names_the_field(short, "bars", "too short")
    assert f"at least {server.min_bars}" in short.json()["detail"][0]["msg"]
    exact = server.predict(server.bars.iloc[-server.min_bars :], spec=server.spec.name)
    assert exact.status_code == 200, exact.text


def test_a_bad_window_in_a_batch_names_its_place(server: Server) -> None:
    bodies = [_good(server), _good(server)]
    bodies[1]["bars"][3]["volume"] = -1.0
    _names_the_field(server.post("/predict_batch", bodies), "volume", "greater")
    assert server.post("/predict_batch", [_good(server)]).status_code == 200
