"""One KIS exchange, pinned where the simulator tests cannot look (issue 14, mutation testing of
``pipeline/kis/session.py``): a scripted fake KIS (httpx MockTransport, no network, no sleeping) checks the
headers every call carries (spec §3: appkey/appsecret, ``Bearer`` token, tr_id with the VTS V prefix,
tr_cont, custtype P, hashkey only on orders), the exact bytes an order's hashkey covers, the retry budget
and backoff of reads (tenacity's sleep and jitter are recorded, not waited), the resend-once rule of orders
and the errors that say whether an order may exist, the page cursors (tr_cont F/M, CTX_AREA_FK/NK) and the
SYDB0050 restarts, the per-key pacing budget (20/s real, 2/s paper by default), the operator's log lines,
and that query strings (the account number) never reach httpx's log."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import tenacity
from pydantic import SecretStr

import pipeline.kis.session as session_module
from pipeline.config import Settings
from pipeline.kis.config import KisConfig
from pipeline.kis.endpoints import ENDPOINTS, HASHKEY_PATH, TOKEN_PATH
from pipeline.kis.errors import (
    KisAuthError,
    KisConfigurationError,
    KisError,
    KisOrderNotSentError,
    KisPaginationChangedError,
    KisRateLimitedError,
    KisRejectedError,
    KisTemporaryError,
    KisTokenExpiredError,
    KisUncertainOrderError,
)
from pipeline.kis.ratelimit import limiter_for
from pipeline.kis.session import KisResponse, KisSession
from tests.kis.conftest import ACCOUNT, APP_KEY, APP_SECRET

BASE_URL = "https://openapi.example"
PRICE = ENDPOINTS["stock_price"].path  # GET FHKST01010100
ORDERS = ENDPOINTS["stock_orders"].path  # GET TTTC0081R, paged (output1 rows, output2 summary)
BUY = ENDPOINTS["stock_buy"].path  # POST TTTC0012U
HOLIDAY = ENDPOINTS["holiday"].path  # GET CTCA0903R, real-only
LOG = "pipeline.kis.session"
#: An order body as the client builds it; the Korean note shows the body is sent as UTF-8, not \u escapes.
ORDER = {"CANO": ACCOUNT, "PDNO": "005930", "ORD_QTY": "3", "NOTE": "매수"}
ORDER_BYTES = '{"CANO":"73310045","PDNO":"005930","ORD_QTY":"3","NOTE":"매수"}'.encode()

#: A scripted answer: a response, or a transport error class raised on the wire.
Answer = httpx.Response | type[httpx.TransportError]


def ok(tr_cont: str = "", **body: Any) -> httpx.Response:
    """A successful KIS envelope (HTTP 200) with response header ``tr_cont`` when given."""
    headers = {"tr_cont": tr_cont} if tr_cont else {}
    return httpx.Response(
        200, json={"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리", **body}, headers=headers
    )


def failed(msg_cd: str, msg1: str = "실패", status: int = 200) -> httpx.Response:
    """A failed KIS envelope (``rt_cd`` 1)."""
    return httpx.Response(status, json={"rt_cd": "1", "msg_cd": msg_cd, "msg1": msg1})


def raw(status: int, content: bytes) -> httpx.Response:
    return httpx.Response(status, content=content)


@dataclass
class FakeKis:
    """KIS over a MockTransport. Tokens are issued as ``tok-1``, ``tok-2``...; the hashkey is the SHA-256 of
    the posted bytes; any other path answers a plain success, unless answers were scripted for it with
    ``then`` (used in order, then the default again). Every request is recorded, with ``events``."""

    requests: list[httpx.Request] = field(default_factory=list)
    scripts: dict[str, list[Answer]] = field(default_factory=dict)
    tokens_issued: int = 0
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def then(self, path: str, *answers: Answer) -> FakeKis:
        self.scripts.setdefault(path, []).extend(answers)
        return self

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        path = request.url.path
        self.events.append(("send", path))
        if path == TOKEN_PATH:
            self.tokens_issued += 1
            body = {
                "access_token": f"tok-{self.tokens_issued}",
                "token_type": "Bearer",
                "expires_in": 86400,
                "access_token_token_expired": "2099-01-01 09:00:00",
            }
            return httpx.Response(200, json=body)
        script = self.scripts.get(path)
        if script:
            answer = script.pop(0)
            if isinstance(answer, type):
                raise answer("scripted fault", request=request)
            return answer
        if path == HASHKEY_PATH:  # KIS answers the hash without rt_cd (spec §2)
            return httpx.Response(200, json={"HASH": hashlib.sha256(request.content).hexdigest()})
        return ok(output={"stck_prpr": "71500"})

    def sent(self, path: str) -> list[httpx.Request]:
        """The requests to ``path``, in order."""
        return [r for r in self.requests if r.url.path == path]


@pytest.fixture
def kis() -> FakeKis:
    return FakeKis()


@dataclass
class Waits:
    """tenacity's sleeps (recorded, never slept) and the jitter windows it drew from."""

    slept: list[float] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> Waits:
    """Reads back off without sleeping; each jittered wait takes the top of its window (full jitter)."""
    rec = Waits()

    def uniform(low: float, high: float) -> float:
        rec.windows.append((low, high))
        return high

    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=rec.slept.append))
    monkeypatch.setattr(tenacity.wait, "random", SimpleNamespace(uniform=uniform))
    return rec


@pytest.fixture
def make_session(tmp_path: Path, kis: FakeKis) -> Iterator[Callable[..., KisSession]]:
    """Sessions on the fake KIS: real env, 1000 calls/s (pacing is checked on its own), no minimum token
    interval; keyword arguments override KisConfig fields."""
    made: list[KisSession] = []

    def build(**overrides: Any) -> KisSession:
        values: dict[str, Any] = {
            "env": "real",
            "base_url": BASE_URL,
            "app_key": SecretStr(APP_KEY),
            "app_secret": SecretStr(APP_SECRET),
            "account_no": SecretStr(ACCOUNT),
            "token_cache": tmp_path / "tok.json",
            "rate_limit": 1000.0,
            "token_min_interval_s": 0.0,
            "backoff_max_s": 8.0,
            "read_retries": 4,
            **overrides,
        }
        session = KisSession(KisConfig(**values), transport=httpx.MockTransport(kis.handle))
        made.append(session)
        return session

    yield build
    for session in made:
        session.close()


@pytest.fixture(autouse=True)
def _session_log_reaches_caplog(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The session logger's records reach ``caplog`` whatever an earlier test did to logging (a CLI test
    routes library chatter to a file and stops propagation): its handler sits on the logger itself."""
    log = session_module.log  # the module's own logger object, even if logging's registry was rebuilt since
    saved = log.propagate, log.disabled, log.level
    log.propagate, log.disabled = False, False
    caplog.set_level(logging.DEBUG, logger=LOG)  # also lifts a logging.disable() left by an earlier test
    if log is not logging.getLogger(LOG):
        log.setLevel(logging.DEBUG)
    log.addHandler(caplog.handler)
    yield
    log.removeHandler(caplog.handler)
    log.propagate, log.disabled, level = saved
    log.setLevel(level)


def _messages(caplog: pytest.LogCaptureFixture, logger: str = LOG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


# --- the headers and bytes on the wire -------------------------------------------------------------------
def test_a_read_carries_the_spec_headers_its_params_and_no_hashkey(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    resp = make_session(timeout_s=7.5).get("stock_price", {"FID_INPUT_ISCD": "005930"})
    assert resp.output()["stck_prpr"] == "71500"
    (call,) = kis.sent(PRICE)
    assert call.method == "GET" and call.url.host == "openapi.example"
    assert dict(call.url.params) == {"FID_INPUT_ISCD": "005930"}
    headers = {k: call.headers.get(k) for k in ("authorization", "appkey", "appsecret", "tr_id", "tr_cont")}
    assert headers == {
        "authorization": "Bearer tok-1",
        "appkey": APP_KEY,
        "appsecret": APP_SECRET,
        "tr_id": "FHKST01010100",
        "tr_cont": "",
    }
    assert call.headers["custtype"] == "P"  # individual customer (spec §3)
    assert call.headers["content-type"] == "application/json; charset=utf-8"
    assert "hashkey" not in call.headers
    assert call.extensions["timeout"] == {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}


def test_an_order_posts_its_exact_utf8_bytes_with_the_hashkey_of_those_bytes(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(BUY, ok(output={"ODNO": "0000117057"}))
    resp = make_session().post_order("stock_buy", ORDER)
    assert resp.output()["ODNO"] == "0000117057"
    (hashed,) = kis.sent(HASHKEY_PATH)
    (order,) = kis.sent(BUY)
    # The hashkey call: key and secret, no token (spec §2); it hashes the very bytes the order carries.
    assert hashed.method == "POST" and hashed.content == ORDER_BYTES
    assert (hashed.headers["appkey"], hashed.headers["appsecret"]) == (APP_KEY, APP_SECRET)
    assert "authorization" not in hashed.headers and "tr_id" not in hashed.headers
    assert order.method == "POST" and order.content == ORDER_BYTES
    assert order.headers["hashkey"] == hashlib.sha256(ORDER_BYTES).hexdigest()
    assert order.headers["authorization"] == "Bearer tok-1"
    assert (order.headers["tr_id"], order.headers["tr_cont"], order.headers["custtype"]) == (
        "TTTC0012U",
        "",
        "P",
    )
    assert order.headers["content-type"] == "application/json; charset=utf-8"


def test_paper_trading_sends_v_tr_ids_and_refuses_real_only_trs_before_any_call(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    paper = make_session(env="vts")
    paper.get("stock_orders", {"CANO": ACCOUNT})
    paper.post_order("stock_buy", ORDER)
    assert [r.headers["tr_id"] for r in kis.sent(ORDERS) + kis.sent(BUY)] == ["VTTC0081R", "VTTC0012U"]
    sent = len(kis.requests)
    with pytest.raises(KisConfigurationError) as info:
        paper.get("holiday", {"BASS_DT": "20250610"})
    assert str(info.value) == f"KIS {HOLIDAY} (CTCA0903R) is real-only; not available on VTS"
    assert len(kis.requests) == sent
    make_session().get("holiday", {"BASS_DT": "20250610"})  # on the real domain it is a normal call
    assert [r.headers["tr_id"] for r in kis.sent(HOLIDAY)] == ["CTCA0903R"]


def test_the_response_keeps_the_tr_cont_and_gt_uid_headers(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    session = make_session()
    kis.then(PRICE, httpx.Response(200, json={"rt_cd": "0"}, headers={"tr_cont": " M ", "gt_uid": "G-42"}))
    kis.then(PRICE, httpx.Response(200, json={"rt_cd": "0"}))
    first = session.get("stock_price", {}, tr_cont="N")
    second = session.get("stock_price", {})
    assert (first.tr_cont, first.gt_uid) == ("M", "G-42")
    assert (second.tr_cont, second.gt_uid) == ("", "")
    assert [r.headers["tr_cont"] for r in kis.sent(PRICE)] == ["N", ""]


def test_outputs_unwrap_lists_and_rows_wrap_single_objects() -> None:
    resp = KisResponse(
        {
            "output": [{"a": "1"}, {"a": "2"}],
            "output1": [],
            "output2": {"b": "2"},
            "empty": {},
            "text": "x",
            "mixed": [{"c": "3"}, "junk", {"c": "4"}],
        },
        tr_cont="",
        gt_uid="",
    )
    assert resp.output() == {"a": "1"}  # the default key is "output"; a list gives its first object
    assert resp.output("output1") == {} and resp.output("output2") == {"b": "2"}
    assert resp.output("text") == {} and resp.output("missing") == {}
    assert resp.rows() == [{"b": "2"}]  # the default key is "output2"; a lone object is one row
    assert resp.rows("empty") == [] and resp.rows("output1") == [] and resp.rows("missing") == []
    assert resp.rows("mixed") == [{"c": "3"}, {"c": "4"}] and resp.rows("text") == []


def test_a_padded_or_numeric_rt_cd_zero_is_success(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    session = make_session()
    kis.then(PRICE, httpx.Response(200, json={"rt_cd": " 0 ", "output": {"v": "1"}}))
    kis.then(PRICE, httpx.Response(200, json={"rt_cd": 0, "output": {"v": "2"}}))
    assert [session.get("stock_price", {}).output()["v"] for _ in range(2)] == ["1", "2"]


# --- pacing: one budget per app key ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "rate"), [("real", 20.0), ("vts", 2.0)], ids=["real-20-per-s", "paper-2-per-s"]
)
def test_every_read_order_and_hashkey_waits_on_its_keys_budget_at_the_kis_default_rate(
    tmp_path: Path, kis: FakeKis, monkeypatch: pytest.MonkeyPatch, env: str, rate: float
) -> None:
    settings = Settings(var_dir=tmp_path / "var", kis_allow_real=True, kis_allow_real_custom_host=True)
    config = KisConfig.from_settings(
        settings,
        env=env,
        base_url=BASE_URL,
        app_key=SecretStr(f"PS{uuid.uuid4().hex}{uuid.uuid4().hex}"[:36]),
        app_secret=SecretStr(APP_SECRET),
        account_no=SecretStr(ACCOUNT),
        token_cache=tmp_path / "tok.json",
    )
    monkeypatch.setattr(session_module, "acquire", lambda limiter, key: kis.events.append(("wait", limiter)))
    with KisSession(config, transport=httpx.MockTransport(kis.handle)) as session:
        session.get("stock_price", {})
        session.post_order("stock_buy", ORDER)
    budget = limiter_for(config.key_fingerprint, rate)  # what every client of this key shares
    paced = [("wait", e[1] is budget) if e[0] == "wait" else e for e in kis.events if e[1] != TOKEN_PATH]
    # Token issuance is paced by its own once-a-minute rule; every other request waits its turn first.
    assert paced == [
        ("wait", True),
        ("send", PRICE),
        ("wait", True),
        ("send", HASHKEY_PATH),
        ("wait", True),
        ("send", BUY),
    ]


def test_a_sessions_calls_spend_its_own_keys_budget_and_no_other_keys(
    make_session: Callable[..., KisSession],
) -> None:
    rate = 0.001  # one call per 1000 s window: a second call on the same key would have to wait
    mine, other = (f"PS{uuid.uuid4().hex}{uuid.uuid4().hex}"[:36] for _ in range(2))
    session = make_session(app_key=SecretStr(mine), rate_limit=rate)
    session.get("stock_price", {})
    other_config = session.config.model_copy(update={"app_key": SecretStr(other)})
    mine_fp, other_fp = session.config.key_fingerprint, other_config.key_fingerprint
    assert not limiter_for(mine_fp, rate).try_acquire(mine_fp, blocking=False)  # another client must wait
    assert limiter_for(other_fp, rate).try_acquire(other_fp, blocking=False)  # another key need not


# --- token expiry: re-issue once, retry once -------------------------------------------------------------
def test_an_expired_token_is_reissued_and_the_read_repeated_once_with_the_same_request(
    make_session: Callable[..., KisSession], kis: FakeKis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    kis.then(PRICE, failed("EGW00123", "기간이 만료된 token 입니다.", status=500))
    resp = make_session().get("stock_price", {"FID_INPUT_ISCD": "005930"}, tr_cont="N")
    assert resp.output()["stck_prpr"] == "71500"
    calls = kis.sent(PRICE)
    assert [c.headers["authorization"] for c in calls] == ["Bearer tok-1", "Bearer tok-2"]
    assert [(c.headers["tr_id"], c.headers["tr_cont"], dict(c.url.params)) for c in calls] == [
        ("FHKST01010100", "N", {"FID_INPUT_ISCD": "005930"})
    ] * 2
    assert ["hashkey" in c.headers for c in calls] == [False, False]
    assert _messages(caplog) == [f"KIS token rejected on {PRICE}; re-issuing once"]


def test_a_token_rejected_twice_propagates_after_one_retry(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(PRICE, failed("EGW00123", status=500), failed("EGW00121", status=500))
    with pytest.raises(KisTokenExpiredError) as info:
        make_session().get("stock_price", {})
    assert info.value.msg_cd == "EGW00121" and info.value.status == 500
    assert len(kis.sent(PRICE)) == 2 and kis.tokens_issued == 2


def test_an_order_rejected_for_its_token_is_resent_once_with_its_hashkey(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(BUY, failed("EGW00123", status=500))
    make_session().post_order("stock_buy", ORDER)
    orders = kis.sent(BUY)
    assert [o.headers["authorization"] for o in orders] == ["Bearer tok-1", "Bearer tok-2"]
    assert [(o.content, o.headers["hashkey"], o.headers["tr_id"], o.headers["tr_cont"]) for o in orders] == [
        (ORDER_BYTES, hashlib.sha256(ORDER_BYTES).hexdigest(), "TTTC0012U", "")
    ] * 2
    assert len(kis.sent(HASHKEY_PATH)) == 1


# --- reads: bounded retries with exponential backoff and full jitter --------------------------------------
def test_a_rate_limited_read_backs_off_exponentially_up_to_its_cap_then_gives_up(
    make_session: Callable[..., KisSession], kis: FakeKis, waits: Waits, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    kis.then(PRICE, *[failed("EGW00201", "초당 거래건수를 초과하였습니다.")] * 5)
    with pytest.raises(KisRateLimitedError) as info:
        make_session(read_retries=4, backoff_max_s=0.3).get("stock_price", {})
    assert info.value.msg_cd == "EGW00201"
    assert (
        str(info.value) == f"KIS {PRICE} FHKST01010100: [EGW00201] 초당 거래건수를 초과하였습니다. (HTTP 200)"
    )
    assert len(kis.sent(PRICE)) == 5  # the call and read_retries more
    # 0.1 s doubling, capped at backoff_max_s; each wait drawn from [0, window] (full jitter)
    assert waits.slept == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert waits.windows and all(low == 0 for low, _ in waits.windows)
    assert _messages(caplog) == [
        f"retrying {PRICE} after KisRateLimitedError (attempt {n})" for n in (1, 2, 3, 4)
    ]


def test_a_read_that_recovers_returns_the_good_answer(
    make_session: Callable[..., KisSession], kis: FakeKis, waits: Waits
) -> None:
    kis.then(PRICE, httpx.ConnectError, failed("EGW00201"), raw(502, b"<html>bad gateway</html>"))
    resp = make_session(read_retries=3).get("stock_price", {})
    assert resp.output()["stck_prpr"] == "71500"
    assert len(kis.sent(PRICE)) == 4 and len(waits.slept) == 3


def test_a_read_cut_on_every_try_is_a_temporary_error_naming_the_call(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(PRICE, *[httpx.ConnectError] * 3)
    with pytest.raises(KisTemporaryError) as info:
        make_session(read_retries=2).get("stock_price", {})
    assert str(info.value) == f"KIS {PRICE} FHKST01010100: ConnectError after retries"
    assert len(kis.sent(PRICE)) == 3


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (failed("APBK0919", "주문가능금액을 초과 했습니다"), KisRejectedError),
        (failed("OPSQ2001", "INPUT_FIELD_NAME 오류", status=500), KisConfigurationError),
        (
            httpx.Response(403, json={"error_code": "EGW00103", "error_description": "유효하지 않은 AppKey"}),
            KisAuthError,
        ),
    ],
    ids=["rejected", "configuration", "auth-error-shape"],
)
def test_answers_that_cannot_change_are_not_retried(
    make_session: Callable[..., KisSession],
    kis: FakeKis,
    waits: Waits,
    answer: httpx.Response,
    error: type[KisError],
) -> None:
    kis.then(PRICE, answer)
    with pytest.raises(error) as info:
        make_session().get("stock_price", {})
    assert info.value.status == answer.status_code and info.value.msg_cd in str(info.value)
    assert f"KIS {PRICE} FHKST01010100: " in str(info.value)
    assert len(kis.sent(PRICE)) == 1 and waits.slept == []


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (raw(502, b"<html>bad gateway</html>"), "malformed body (HTTP 502, 24 bytes)"),
        (raw(200, b"42"), "body is not a KIS envelope (HTTP 200)"),
        (raw(200, b'"rt_cd"'), "body is not a KIS envelope (HTTP 200)"),
        (httpx.Response(200, json={"output": {"stck_prpr": "1"}}), "body is not a KIS envelope (HTTP 200)"),
    ],
    ids=["html", "number", "string", "no-rt_cd"],
)
def test_a_body_that_is_not_an_envelope_is_temporary_retried_and_described(
    make_session: Callable[..., KisSession], kis: FakeKis, answer: httpx.Response, message: str
) -> None:
    kis.then(PRICE, answer, answer)
    with pytest.raises(KisTemporaryError) as info:
        make_session(read_retries=1).get("stock_price", {})
    assert type(info.value) is KisTemporaryError
    assert str(info.value) == f"KIS {PRICE} FHKST01010100: {message}"
    assert info.value.status == answer.status_code and len(kis.sent(PRICE)) == 2


# --- pages ----------------------------------------------------------------------------------------------
def _page(tr_cont: str, n: int, fk: str | None, nk: str | None) -> httpx.Response:
    cursors = {k: v for k, v in (("ctx_area_fk100", fk), ("ctx_area_nk100", nk)) if v is not None}
    return ok(tr_cont, output1=[{"odno": str(n)}], output2={"page": str(n)}, **cursors)


def _cursor(request: httpx.Request) -> tuple[str, str | None, str | None, str | None]:
    p = request.url.params
    return request.headers["tr_cont"], p.get("CTX_AREA_FK100"), p.get("CTX_AREA_NK100"), p.get("CANO")


def test_pages_follow_the_cursors_until_the_last_page(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(ORDERS, _page("F", 1, "fk1  ", "nk1  "), _page("M", 2, None, None), _page("D", 3, "x", "y"))
    rows, summary = make_session().paged("stock_orders", {"CANO": ACCOUNT})
    assert rows == [{"odno": "1"}, {"odno": "2"}, {"odno": "3"}] and summary == {"page": "3"}
    assert [_cursor(r) for r in kis.sent(ORDERS)] == [
        ("", "", "", ACCOUNT),  # first page: empty cursors (spec §3)
        ("N", "fk1", "nk1", ACCOUNT),  # the previous page's lower-case body fields, stripped
        ("N", "", "", ACCOUNT),  # a page without cursors continues with empty ones
    ]


def test_futures_pages_use_their_own_cursor_and_output_keys(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(
        ORDERS,
        ok("F", output={"r": "1"}, output1={"s": "1"}, ctx_area_fk200="f", ctx_area_nk200="n"),
        ok("E", output=[{"r": "2"}], output1={"s": "2"}),
    )
    rows, summary = make_session().paged(
        "stock_orders", {}, ctx="200", rows_key="output", summary_key="output1"
    )
    assert rows == [{"r": "1"}, {"r": "2"}] and summary == {"s": "2"}
    sent = [
        (r.url.params.get("CTX_AREA_FK200"), r.url.params.get("CTX_AREA_NK200")) for r in kis.sent(ORDERS)
    ]
    assert sent == [("", ""), ("f", "n")] and "CTX_AREA_FK100" not in kis.sent(ORDERS)[0].url.params


def test_paging_stops_at_max_pages_with_a_warning(
    make_session: Callable[..., KisSession], kis: FakeKis, caplog: pytest.LogCaptureFixture
) -> None:
    kis.then(ORDERS, *[_page("F", n, f"f{n}", f"n{n}") for n in range(1, 6)])
    rows, summary = make_session(max_pages=3).paged("stock_orders", {})
    assert rows == [{"odno": "1"}, {"odno": "2"}, {"odno": "3"}] and summary == {"page": "3"}
    assert len(kis.sent(ORDERS)) == 3
    assert _messages(caplog) == ["KIS stock_orders: stopped after 3 pages (kis_max_pages)"]


def test_a_zero_page_budget_asks_nothing_and_returns_empty_results(
    make_session: Callable[..., KisSession], kis: FakeKis, caplog: pytest.LogCaptureFixture
) -> None:
    # KisConfig itself accepts max_pages=0 (Settings refuses it): the result keeps its shape.
    assert make_session(max_pages=0).paged("stock_orders", {}) == ([], {})
    assert kis.sent(ORDERS) == []
    assert _messages(caplog) == ["KIS stock_orders: stopped after 0 pages (kis_max_pages)"]


def test_a_token_expiring_mid_pages_repeats_that_page_with_its_cursor(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(ORDERS, _page("F", 1, "f1", "n1"), failed("EGW00123", status=500), _page("E", 2, None, None))
    rows, _ = make_session().paged("stock_orders", {"CANO": ACCOUNT})
    assert rows == [{"odno": "1"}, {"odno": "2"}]
    assert [_cursor(r) for r in kis.sent(ORDERS)] == [("", "", "", ACCOUNT)] + [
        ("N", "f1", "n1", ACCOUNT)
    ] * 2


def test_sydb0050_restarts_from_page_one_without_keeping_the_stale_rows(
    make_session: Callable[..., KisSession], kis: FakeKis, caplog: pytest.LogCaptureFixture
) -> None:
    kis.then(ORDERS, _page("F", 1, "f1", "n1"), failed("SYDB0050", "조회 데이터가 변경되었습니다"))
    kis.then(ORDERS, _page("F", 7, "f7", "n7"), _page("E", 8, None, None))
    rows, summary = make_session().paged("stock_orders", {"CANO": ACCOUNT})
    assert rows == [{"odno": "7"}, {"odno": "8"}] and summary == {"page": "8"}
    assert [_cursor(r)[:2] for r in kis.sent(ORDERS)] == [("", ""), ("N", "f1"), ("", ""), ("N", "f7")]
    assert _messages(caplog) == ["KIS stock_orders data changed between pages (SYDB0050); restart 1"]


def test_data_that_keeps_changing_gives_up_after_three_restarts_without_retrying_pages(
    make_session: Callable[..., KisSession], kis: FakeKis, waits: Waits, caplog: pytest.LogCaptureFixture
) -> None:
    kis.then(ORDERS, *[failed("SYDB0050")] * 10)
    with pytest.raises(KisPaginationChangedError) as info:
        make_session().paged("stock_orders", {})
    assert str(info.value) == "KIS stock_orders: data kept changing between pages (SYDB0050)"
    assert info.value.msg_cd == "SYDB0050"
    assert len(kis.sent(ORDERS)) == 4 and waits.slept == []  # page one, then 3 restarts; no read retries
    assert _messages(caplog) == [
        f"KIS stock_orders data changed between pages (SYDB0050); restart {n}" for n in (1, 2, 3, 4)
    ]


# --- orders: resent only when certainly not delivered ------------------------------------------------------
@pytest.mark.parametrize("fault", [httpx.ConnectError, httpx.ConnectTimeout])
def test_an_order_that_could_not_connect_is_sent_once_more(
    make_session: Callable[..., KisSession], kis: FakeKis, caplog: pytest.LogCaptureFixture, fault: type
) -> None:
    kis.then(BUY, fault)
    make_session().post_order("stock_buy", ORDER)
    assert len(kis.sent(BUY)) == 2 and len(kis.sent(HASHKEY_PATH)) == 2
    assert _messages(caplog) == [f"KIS order not delivered ({fault.__name__}); sending once more"]


def test_an_order_that_cannot_connect_twice_was_not_sent(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(BUY, httpx.ConnectError, httpx.ConnectError)
    with pytest.raises(KisTemporaryError) as info:
        make_session().post_order("stock_buy", ORDER)
    assert not isinstance(info.value, KisUncertainOrderError | KisRateLimitedError)
    assert str(info.value) == f"KIS {BUY} TTTC0012U: cannot connect; order not sent"
    assert len(kis.sent(BUY)) == 2


def test_a_rate_limited_order_is_sent_once_more_then_the_limit_propagates(
    make_session: Callable[..., KisSession], kis: FakeKis, caplog: pytest.LogCaptureFixture
) -> None:
    session = make_session()
    kis.then(BUY, failed("EGW00201"))
    session.post_order("stock_buy", ORDER)
    assert len(kis.sent(BUY)) == 2
    assert _messages(caplog) == ["KIS order not delivered (KisRateLimitedError); sending once more"]
    kis.then(BUY, failed("EGW00201"), failed("EGW00201"))
    with pytest.raises(KisRateLimitedError) as info:
        session.post_order("stock_buy", ORDER)
    assert info.value.msg_cd == "EGW00201" and len(kis.sent(BUY)) == 4


def test_an_order_whose_answer_was_lost_is_uncertain_and_never_resent(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    session = make_session()
    kis.then(BUY, httpx.ReadTimeout, raw(502, b"<html/>"))
    with pytest.raises(KisUncertainOrderError) as lost:
        session.post_order("stock_buy", ORDER)
    with pytest.raises(KisUncertainOrderError) as garbled:
        session.post_order("stock_buy", ORDER)
    assert str(lost.value) == f"KIS {BUY} TTTC0012U: order outcome unknown (ReadTimeout); query fills"
    assert str(garbled.value) == (
        f"KIS {BUY} TTTC0012U: order outcome unknown "
        f"(KIS {BUY} TTTC0012U: malformed body (HTTP 502, 7 bytes)); query fills"
    )
    assert len(kis.sent(BUY)) == 2  # one per order: neither was resent


def test_an_order_failed_by_an_envelope_5xx_is_not_uncertain_and_not_resent(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(BUY, failed("OPSQ0000", "일시적 오류", status=500))
    with pytest.raises(KisTemporaryError) as info:
        make_session().post_order("stock_buy", ORDER)
    assert not isinstance(info.value, KisUncertainOrderError) and info.value.msg_cd == "OPSQ0000"
    assert info.value.status == 500 and len(kis.sent(BUY)) == 1


# --- the hashkey step: failing there means nothing was sent ----------------------------------------------
@pytest.mark.parametrize(
    ("answer", "message", "msg_cd", "status"),
    [
        (httpx.ReadTimeout, f"KIS {HASHKEY_PATH}: ReadTimeout; order not sent", "", None),
        (
            raw(502, b"<html/>"),
            f"KIS {HASHKEY_PATH}: malformed body (HTTP 502, 7 bytes); order not sent",
            "",
            502,
        ),
        (
            raw(200, b"[]"),
            f"KIS {HASHKEY_PATH}: body is not a KIS envelope (HTTP 200); order not sent",
            "",
            200,
        ),
        (
            failed("OPSQ0000", "시스템 오류", status=500),
            f"KIS {HASHKEY_PATH}: [OPSQ0000] 시스템 오류 (HTTP 500); order not sent",
            "OPSQ0000",
            500,
        ),
    ],
    ids=["timeout", "malformed", "not-an-object", "5xx"],
)
def test_a_hashkey_that_cannot_be_had_means_the_order_was_not_sent(
    make_session: Callable[..., KisSession],
    kis: FakeKis,
    answer: Answer,
    message: str,
    msg_cd: str,
    status: Any,
) -> None:
    kis.then(HASHKEY_PATH, answer)
    with pytest.raises(KisOrderNotSentError) as info:
        make_session().post_order("stock_buy", ORDER)
    assert (str(info.value), info.value.msg_cd, info.value.status) == (message, msg_cd, status)
    assert kis.sent(BUY) == [] and len(kis.sent(HASHKEY_PATH)) == 1


def test_a_hashkey_refused_for_the_rate_is_asked_once_more_then_the_limit_propagates(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    session = make_session()
    kis.then(HASHKEY_PATH, failed("EGW00201"))
    session.post_order("stock_buy", ORDER)
    assert len(kis.sent(HASHKEY_PATH)) == 2 and len(kis.sent(BUY)) == 1
    kis.then(HASHKEY_PATH, failed("EGW00201"), failed("EGW00201"))
    with pytest.raises(KisRateLimitedError) as info:
        session.post_order("stock_buy", ORDER)
    assert (info.value.msg_cd, info.value.status) == ("EGW00201", 200)
    assert len(kis.sent(HASHKEY_PATH)) == 4 and len(kis.sent(BUY)) == 1  # no order without a hash


def test_a_hashkey_refused_for_the_key_is_an_auth_error_for_the_operator(
    make_session: Callable[..., KisSession], kis: FakeKis
) -> None:
    kis.then(
        HASHKEY_PATH, httpx.Response(403, json={"error_code": "EGW00105", "error_description": "AppSecret"})
    )
    with pytest.raises(KisAuthError) as info:
        make_session().post_order("stock_buy", ORDER)
    assert info.value.msg_cd == "EGW00105" and info.value.status == 403
    assert str(info.value) == f"KIS {HASHKEY_PATH}: [EGW00105] AppSecret (HTTP 403)"
    assert kis.sent(BUY) == [] and len(kis.sent(HASHKEY_PATH)) == 1


def test_a_padded_hash_is_sent_trimmed(make_session: Callable[..., KisSession], kis: FakeKis) -> None:
    kis.then(HASHKEY_PATH, httpx.Response(200, json={"HASH": "  abc123  "}))
    make_session().post_order("stock_buy", ORDER)
    assert [o.headers["hashkey"] for o in kis.sent(BUY)] == ["abc123"]


# --- what the operator sees -----------------------------------------------------------------------------
def test_the_repr_names_the_environment_and_host_only(make_session: Callable[..., KisSession]) -> None:
    assert repr(make_session()) == f"KisSession(env=real, base_url={BASE_URL})"


def test_httpx_request_logs_never_show_the_query_string(
    make_session: Callable[..., KisSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    make_session().get("stock_orders", {"CANO": ACCOUNT, "ACNT_PRDT_CD": "01"})
    lines = _messages(caplog, "httpx")
    assert f'HTTP Request: GET {BASE_URL}{ORDERS} "HTTP/1.1 200 OK"' in lines
    assert f'HTTP Request: POST {BASE_URL}{TOKEN_PATH} "HTTP/1.1 200 OK"' in lines
    assert not any(ACCOUNT in line for line in lines)
    # A URL handed to httpx's logger as text loses its query too, up to a space or quote.
    logging.getLogger("httpx").info('Redirect to "%s" %d', f"{BASE_URL}{ORDERS}?CANO={ACCOUNT}&X=1", 302)
    assert _messages(caplog, "httpx")[-1] == f'Redirect to "{BASE_URL}{ORDERS}?…" 302'
