"""With an API key configured, every route but the probes and /metrics needs it (and the key never shows
in the server's log); /metrics counts decisions by model, version and action and times every call."""

from __future__ import annotations

import re

from tests.serving.server import API_KEY, Server, payload


def test_the_api_key_is_enforced_and_the_probes_stay_open(server: Server) -> None:
    body = payload(server.bars.iloc[-250:], spec=server.spec.name)
    assert server.post("/predict", body, key=False).status_code == 401
    wrong = server.http.post(server.url + "/predict", json=body, headers={"X-API-Key": "wrong"})
    assert wrong.status_code == 401 and "X-Api-Key" in wrong.json()["detail"]
    assert server.post("/predict_batch", [body], key=False).status_code == 401
    assert server.post("/predict", body).status_code == 200
    for path in ("/livez", "/readyz", "/metrics"):
        assert server.get(path).status_code == 200, path
    assert API_KEY not in server.log_text()


def test_metrics_count_decisions_by_model_version_and_action_and_time_calls(server: Server) -> None:
    answer = server.predict(server.bars.iloc[-250:], spec=server.spec.name).json()
    text = server.get("/metrics").text
    labels = f'action="{answer["action"]}",model="{server.name}",version="{answer["model_version"]}"'
    match = re.search(rf"^krx_predictions_total\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    assert match and float(match.group(1)) >= 1, text[-2000:]
    assert re.search(r'^krx_request_latency_seconds_bucket\{endpoint="predict",le="0.01"\}', text, re.M)
    assert re.search(r'^krx_request_latency_seconds_count\{endpoint="predict"\} [1-9]', text, re.M)
