"""The model server client on a fake transport: what each ``/predict_batch`` call carries (the window's
newest bars, the position, the API key), how batches are split and a bad window isolated, and that every
answer short of a finite, well-formed decision comes back as ``ModelUnavailable`` saying why (gaps found by
mutation testing, ``tools/mutation.py``; the simulator-backed trading tests are too slow per mutant)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from pipeline.config import Settings
from pipeline.market import KST
from pipeline.trading.decider import (
    Decision,
    HttpDecider,
    ModelUnavailable,
    WindowRequest,
    server_url,
)

Handler = Callable[[httpx.Request], httpx.Response]


def bars(n: int, start_close: float = 100.0) -> pd.DataFrame:
    """``n`` one-minute bars from 09:00 KST, closes ``start_close``, +1, +2..."""
    index = pd.DatetimeIndex([dt.datetime(2025, 10, 2, 9, i, tzinfo=KST) for i in range(n)])
    close = [start_close + i for i in range(n)]
    return pd.DataFrame(
        {
            "open": [c - 0.5 for c in close],
            "high": [c + 1 for c in close],
            "low": [c - 1 for c in close],
            "close": close,
            "volume": [10 * (i + 1) for i in range(n)],
        },
        index=index,
    )


def answer(spec: str, action: int = 2, level: float = 1.0, version: str = "7") -> dict[str, Any]:
    return {"spec": spec, "action": action, "target_level": level, "model_version": version}


class FakeServer:
    """Records each ``/predict_batch`` body and answers with ``reply(bodies)``."""

    def __init__(self, reply: Callable[[list[dict[str, Any]]], httpx.Response] | None = None) -> None:
        self.calls: list[httpx.Request] = []
        self.reply = reply or (lambda bodies: httpx.Response(200, json=[answer(b["spec"]) for b in bodies]))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        return self.reply(json.loads(request.content))

    @property
    def bodies(self) -> list[list[dict[str, Any]]]:
        return [json.loads(r.content) for r in self.calls]


def decider(handler: Handler, **settings: Any) -> HttpDecider:
    values: dict[str, Any] = {"trading_server_url": "http://model.test:3000"} | settings
    return HttpDecider(Settings(**values), transport=httpx.MockTransport(handler))


def unavailable(result: Decision | ModelUnavailable) -> str:
    assert isinstance(result, ModelUnavailable), result
    return str(result)


# --- where it asks, and with what -------------------------------------------------------------------


def test_the_server_url_defaults_to_the_serving_host_and_port_and_loses_a_trailing_slash() -> None:
    assert server_url(Settings(serving_host="10.0.0.5", serving_port=3100)) == "http://10.0.0.5:3100"
    assert server_url(Settings(trading_server_url="http://models.internal:8080/")) == (
        "http://models.internal:8080"
    )
    # only slashes are trimmed: a host or path ending in another character keeps it
    assert server_url(Settings(trading_server_url="http://INFERENCE-BOX/")) == "http://INFERENCE-BOX"
    server = FakeServer()
    with_slash = decider(server, trading_server_url="http://model.test:3000/")
    with_slash.decide([WindowRequest("s", bars(2), 0.0)])
    assert str(server.calls[0].url) == "http://model.test:3000/predict_batch"
    assert repr(with_slash) == "HttpDecider(url='http://model.test:3000')"


def test_the_api_key_is_sent_only_when_set() -> None:
    server = FakeServer()
    decider(server, serving_api_key="k3y").decide([WindowRequest("s", bars(2), 0.0)])
    decider(server).decide([WindowRequest("s", bars(2), 0.0)])
    assert server.calls[0].headers["X-API-Key"] == "k3y"
    assert "X-API-Key" not in server.calls[1].headers


def test_the_request_times_out_after_the_configured_seconds() -> None:
    client = decider(FakeServer(), trading_server_timeout_s=2.5)
    assert client._http.timeout == httpx.Timeout(2.5)
    client.close()
    assert client._http.is_closed


def test_a_window_carries_its_bars_oldest_first_the_position_and_a_nonzero_entry_price() -> None:
    server = FakeServer()
    window = bars(2)
    client = decider(server)
    client.decide(
        [
            WindowRequest("a", window, 0.0),  # flat: the position is still said
            WindowRequest("b", window, None),  # the model's own replay decides the position
            WindowRequest("c", window, -1.0, entry_price=350.25),
            WindowRequest("d", window, 1.0, entry_price=0.0),  # no entry price to speak of
        ]
    )
    a, b, c, d = server.bodies[0]
    assert a == {
        "spec": "a",
        "bars": [
            {
                "ts": "2025-10-02T09:00:00+09:00",
                "open": 99.5,
                "high": 101.0,
                "low": 99.0,
                "close": 100.0,
                "volume": 10,
            },
            {
                "ts": "2025-10-02T09:01:00+09:00",
                "open": 100.5,
                "high": 102.0,
                "low": 100.0,
                "close": 101.0,
                "volume": 20,
            },
        ],
        "position": 0.0,
    }
    assert "position" not in b and "entry_price" not in b
    assert c["position"] == -1.0 and c["entry_price"] == 350.25
    assert d["position"] == 1.0 and "entry_price" not in d


def test_only_the_newest_max_bars_of_a_window_are_sent() -> None:
    server = FakeServer()
    decider(server, serving_max_bars=3).decide([WindowRequest("s", bars(5), 0.0)])
    sent = server.bodies[0][0]["bars"]
    assert [row["close"] for row in sent] == [102.0, 103.0, 104.0]


def test_requests_are_split_into_batches_of_max_batch_answers_kept_in_order() -> None:
    server = FakeServer()
    specs = [f"s{i}" for i in range(5)]
    results = decider(server, serving_max_batch=2).decide([WindowRequest(s, bars(2), 0.0) for s in specs])
    assert [[b["spec"] for b in call] for call in server.bodies] == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    assert [r.spec for r in results if isinstance(r, Decision)] == specs


# --- answers ----------------------------------------------------------------------------------------


def test_a_well_formed_answer_becomes_a_typed_decision() -> None:
    reply = [{"spec": "s", "action": "0", "target_level": "-1", "model_version": 12}]
    server = FakeServer(lambda bodies: httpx.Response(200, json=reply))
    (result,) = decider(server).decide([WindowRequest("s", bars(2), 0.0)])
    assert result == Decision("s", 0, -1.0, "12")
    assert isinstance(result, Decision)
    assert type(result.action) is int and type(result.target_level) is float
    assert type(result.model_version) is str


def test_an_unreachable_server_gives_every_window_a_reason_naming_the_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    results = decider(refuse).decide([WindowRequest("a", bars(2), 0.0), WindowRequest("b", bars(2), 0.0)])
    assert len(results) == 2
    for r in results:
        assert unavailable(r) == "model server unreachable at http://model.test:3000: ConnectError"


def test_a_400_on_a_batch_asks_window_by_window_so_the_good_ones_still_get_decisions() -> None:
    def reply(bodies: list[dict[str, Any]]) -> httpx.Response:
        if any(b["spec"] == "bad" for b in bodies):
            return httpx.Response(400, text="window bad: 1 bar, need 2")
        return httpx.Response(200, json=[answer(b["spec"]) for b in bodies])

    server = FakeServer(reply)
    results = decider(server).decide([WindowRequest(s, bars(2), 0.0) for s in ("a", "bad", "c")])
    assert [[b["spec"] for b in call] for call in server.bodies] == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    a, bad, c = results
    assert isinstance(a, Decision) and a.spec == "a" and isinstance(c, Decision) and c.spec == "c"
    assert unavailable(bad) == "model server answered 400: window bad: 1 bar, need 2"


def test_a_400_on_a_batch_of_two_still_decides_the_good_window() -> None:
    def reply(bodies: list[dict[str, Any]]) -> httpx.Response:
        if any(b["spec"] == "bad" for b in bodies):
            return httpx.Response(400, text="bad window")
        return httpx.Response(200, json=[answer(b["spec"]) for b in bodies])

    good, bad = decider(FakeServer(reply)).decide(
        [WindowRequest("good", bars(2), 0.0), WindowRequest("bad", bars(2), 0.0)]
    )
    assert isinstance(good, Decision) and good.spec == "good"
    assert unavailable(bad) == "model server answered 400: bad window"


def test_an_error_status_is_reported_with_at_most_300_characters_of_its_body() -> None:
    server = FakeServer(lambda bodies: httpx.Response(503, text="x" * 299 + "yz"))
    results = decider(server).decide([WindowRequest("a", bars(2), 0.0), WindowRequest("b", bars(2), 0.0)])
    assert len(server.calls) == 1  # only a 400 is retried window by window
    assert [unavailable(r) for r in results] == ["model server answered 503: " + "x" * 299 + "y"] * 2


def test_an_answer_that_is_not_json_or_of_the_wrong_length_is_unavailable() -> None:
    not_json = FakeServer(lambda bodies: httpx.Response(200, text="<html>oops</html>"))
    (r,) = decider(not_json).decide([WindowRequest("a", bars(2), 0.0)])
    assert unavailable(r) == "model server answered something that is not JSON"

    one_short = FakeServer(lambda bodies: httpx.Response(200, json=[answer("a")]))
    results = decider(one_short).decide([WindowRequest("a", bars(2), 0.0), WindowRequest("b", bars(2), 0.0)])
    assert [unavailable(r) for r in results] == ["model server answered the wrong number of decisions"] * 2

    not_a_list = FakeServer(lambda bodies: httpx.Response(200, json={"spec": "a"}))
    (r,) = decider(not_a_list).decide([WindowRequest("a", bars(2), 0.0)])
    assert unavailable(r) == "model server answered the wrong number of decisions"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"spec": "a", "action": 1, "model_version": "7"}, "KeyError: 'target_level'"),
        ({"spec": "a", "target_level": 1.0, "model_version": "7"}, "KeyError: 'action'"),
        ({"action": 1, "target_level": 1.0, "model_version": "7"}, "KeyError: 'spec'"),
        ({"spec": "a", "action": 1, "target_level": 1.0}, "KeyError: 'model_version'"),
        ({"spec": "a", "action": None, "target_level": 1.0, "model_version": "7"}, "TypeError"),
        ({"spec": "a", "action": "buy", "target_level": 1.0, "model_version": "7"}, "ValueError"),
        ("not an object", "TypeError"),
    ],
)
def test_a_malformed_decision_is_unavailable_naming_the_error(bad: object, why: str) -> None:
    server = FakeServer(lambda bodies: httpx.Response(200, json=[bad]))
    (r,) = decider(server).decide([WindowRequest("a", bars(2), 0.0)])
    assert unavailable(r).startswith(f"malformed decision from the model server ({why}")


@pytest.mark.parametrize("level", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_target_level_is_unavailable(level: str) -> None:
    body = '[{"spec": "a", "action": 1, "target_level": ' + level + ', "model_version": "7"}]'
    server = FakeServer(lambda bodies: httpx.Response(200, text=body))
    (r,) = decider(server).decide([WindowRequest("a", bars(2), 0.0)])
    assert unavailable(r) == f"non-finite target level {float(level)!r} from the model server"
