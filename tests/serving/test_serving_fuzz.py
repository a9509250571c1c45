"""Requests generated from the service's own OpenAPI schema (hypothesis-jsonschema), and good windows with
generated extreme values, never get a 5xx: every answer is a decision (200) or names what is wrong (4xx)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.serving.server import Server, payload

FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)


def _request_schema(server: Server, path: str) -> dict[str, Any]:
    spec = server.get("/docs.json", headers=server.headers()).json()
    body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**body, "components": spec["components"]}


def _no_5xx(server: Server, path: str, body: Any) -> None:
    raw = json.dumps(body, allow_nan=True)
    r = server.http.post(
        server.url + path, content=raw, headers={**server.headers(), "content-type": "application/json"}
    )
    assert r.status_code < 500, (r.status_code, r.text[:500], raw[:500])
    if r.status_code >= 400:
        assert "error" in r.json(), r.text[:500]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/predict", "/predict_batch"])
def test_requests_generated_from_the_openapi_schema_never_get_a_5xx(server: Server, path: str) -> None:
    @FUZZ
    @given(from_schema(_request_schema(server, path)))
    def check(body: Any) -> None:
        _no_5xx(server, path, body)

    check()


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-300, max_value=1e300),
    st.sampled_from([0.0, -0.0, 1e-320, 5e-324, 1e308, 1.7976931348623157e308]),
)


@pytest.mark.slow
def test_good_windows_with_extreme_values_never_get_a_5xx(server: Server) -> None:
    base = payload(server.bars.iloc[-250:], spec=server.spec.name)

    @FUZZ
    @given(
        st.lists(
            st.tuples(
                st.integers(0, 249), st.sampled_from(["open", "high", "low", "close", "volume"]), values
            ),
            min_size=1,
            max_size=6,
        ),
        st.one_of(st.none(), st.floats(-1, 1)),
    )
    def check(changes: list[tuple[int, str, float]], position: float | None) -> None:
        body = json.loads(json.dumps(base))
        for i, key, value in changes:
            bar = body["bars"][i]
            if key == "volume":
                bar[key] = value
            else:  # keep the bar consistent so the model, not the schema, meets the value
                bar["open"] = bar["high"] = bar["low"] = bar["close"] = value
        body["position"] = position
        _no_5xx(server, "/predict", body)

    check()
