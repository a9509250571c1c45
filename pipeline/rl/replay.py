"""Fast greedy replay of one window for ``TradingAgent.decide``: the actor-critic in float64 and the env's
position bookkeeping as scalars, compiled with Numba into one loop (about 30x faster than stepping
``VecTradingEnv`` and the torch model, 5x faster than the same loop in NumPy). Its decisions are those of the
reference replay (``TradingAgent.replay_reference``): every action is checked to win by a margin far above
the float32 rounding of the reference, and a window with a closer call returns None so that the caller
replays it exactly."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from numba import njit
from threadpoolctl import ThreadpoolController

from pipeline.rl.env import EnvConfig
from pipeline.rl.instruments import InstrumentSpec
from pipeline.rl.market import MarketArrays
from pipeline.rl.network import LSTMActorCritic
from pipeline.rl.segments import BarCosts, bar_costs, decision_ranges, feature_windows

MARGIN_ULPS = 128.0
"""A greedy action is trusted when the best logit beats the next by more than this many float32 ulps
(2^-23) of the logits' scale: at once when it clears the static bound ``max_a sum_j |W_aj| + |b_a|``
(|h| < 1), else when it clears this step's ``max_a sum_j |W_aj| |h_j| + |b_a|``. The reference computes in
float32 and differs from this float64 replay by at most 0.24 ulps of the first and 1.4 of the second
(measured over 20k steps of the bench agent and of the tests' agents), so a closer call, ~1 % of steps or
less, is left to the reference."""
_ULP = 2.0**-23


class Replayed(NamedTuple):
    """What a greedy replay of one window ends with."""

    action: int
    """The action decided at the window's last bar."""
    probabilities: list[float]
    """Policy probabilities there, one per action."""
    value: float
    """The critic's value there (scaled reward units)."""
    simulated_position: float
    """The position (units) the replay holds before the caller's position replaces it."""


@dataclass(frozen=True)
class Float64Policy:
    """The weights of an :class:`LSTMActorCritic` in float64, laid out for one row at a time."""

    static: np.ndarray
    """[H, D-2] encoder weights of the feature window and the regime one-hot."""
    dynamic: np.ndarray
    """[H, 2] encoder weights of the exposure and the unrealised PnL (the last two observations)."""
    encoder_bias: np.ndarray
    """[H] encoder bias."""
    gates: np.ndarray
    """[4H, 2H+1] ``[W_ih | W_hh | b_ih + b_hh]`` with the rows of torch's gates (i, f, g, o) reordered to
    (f, i, o, g): one sigmoid covers three gates, and f, i multiply [c; g] in one product."""
    policy: np.ndarray
    """[A, H+1] ``[W | b]`` of the policy head."""
    value: np.ndarray
    """[H+1] ``[w | b]`` of the value head."""
    policy_abs: np.ndarray
    """[A, H+1] ``|policy|``: the scale of each logit's terms."""
    tolerance: float
    """A margin beyond which an action is trusted whatever the state (see :data:`MARGIN_ULPS`)."""

    @classmethod
    def of(cls, model: LSTMActorCritic) -> Float64Policy:
        """The weights of ``model`` as they are now."""

        def f64(t: Any) -> np.ndarray:
            return np.asarray(t.detach().cpu().numpy(), dtype=np.float64)

        h = model.hidden_size
        enc = model.encoder[0]
        w_ih, w_hh, b_ih, b_hh = (f64(w) for w in model.lstm.all_weights[0])
        order = np.r_[h : 2 * h, 0:h, 3 * h : 4 * h, 2 * h : 3 * h]  # (i, f, g, o) -> (f, i, o, g)
        gates = np.concatenate([w_ih, w_hh, (b_ih + b_hh)[:, None]], axis=1)[order]
        policy = np.concatenate([f64(model.policy_head.weight), f64(model.policy_head.bias)[:, None]], 1)
        value = np.concatenate([f64(model.value_head.weight)[0], f64(model.value_head.bias)])
        bound = float(np.abs(policy).sum(axis=1).max())
        return cls(
            static=np.ascontiguousarray(f64(enc.weight)[:, :-2]),
            dynamic=np.ascontiguousarray(f64(enc.weight)[:, -2:]),
            encoder_bias=f64(enc.bias),
            gates=np.ascontiguousarray(gates),
            policy=np.ascontiguousarray(policy),
            value=value,
            policy_abs=np.abs(policy),
            tolerance=MARGIN_ULPS * _ULP * bound,
        )


# ---- the compiled replay ---------------------------------------------------------------------------------
# One scalar ledger, compiled: VecTradingEnv's bookkeeping of one env without auto-reset, as the same IEEE
# operations in the same order as its NumPy code (no fast-math: nothing is fused or reassociated), hence
# the same numbers; ``tests/rl/test_rl_replay.py`` steps it and the env through random actions.

# Ledger state, float64[5]: cash, equity, position (units), entry price, previous action (-1: none).
_CASH, _EQUITY, _POS, _ENTRY, _PREV = range(5)
# Bar arrays, float64[6, T]: open, close, slippage per unit, sell tax, buy fee and sell fee rates.
_OPEN, _CLOSE, _SLIP, _TAX, _BUY_FEE, _SELL_FEE = range(6)


@njit(cache=True, nogil=True)
def _max(a: float, b: float) -> float:
    return b if b > a else a  # Python's max(a, b): the first unless the second is greater


@njit(cache=True, nogil=True)
def _min(a: float, b: float) -> float:
    return b if b < a else a  # Python's min(a, b)


@njit(cache=True, nogil=True)
def _floor(x: float) -> float:
    return np.floor(x) if np.isfinite(x) else np.nan  # Python's x // 1.0 (the env's np.floor when finite)


@njit(cache=True, nogil=True)
def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


@njit(cache=True, nogil=True)
def _observe(st: np.ndarray, bars: np.ndarray, mult: float, t: int) -> tuple[float, float]:
    """Exposure and unrealised PnL over equity at bar ``t`` (the env's last two observations)."""
    close, eq = bars[_CLOSE, t], _max(st[_EQUITY], 1e-12)
    return st[_POS] * close * mult / eq, st[_POS] * (close - st[_ENTRY]) * mult / eq


@njit(cache=True, nogil=True)
def _target(
    st: np.ndarray,
    bars: np.ndarray,
    levels: np.ndarray,
    mult: float,
    margin: float,
    short_ok: bool,
    a: int,
    t: int,
) -> float:
    if a == st[_PREV]:
        return st[_POS]
    close, level, eq = bars[_CLOSE, t], levels[a], _max(st[_EQUITY], 0.0)
    if short_ok:
        cap = _floor(eq / (close * mult * margin))
        return _min(_max(level, -cap), cap)
    return _floor(level * eq / (close * mult * (1.0 + bars[_BUY_FEE, t])))


@njit(cache=True, nogil=True)
def _book(
    st: np.ndarray,
    bars: np.ndarray,
    levels: np.ndarray,
    mult: float,
    margin: float,
    short_ok: bool,
    a: int,
    t: int,
) -> None:
    """Apply action ``a`` decided at bar ``t``: fill at the next open, mark at the next close."""
    t1, pos = t + 1, st[_POS]
    dq = _target(st, bars, levels, mult, margin, short_ok, a, t) - pos
    fill = bars[_OPEN, t1] + _sign(dq) * bars[_SLIP, t1]
    if not short_ok and dq > 0:
        afford = _floor(st[_CASH] / (fill * mult * (1.0 + bars[_BUY_FEE, t1])))
        dq = _min(dq, _max(afford, 0.0))
    rate = bars[_BUY_FEE, t1] if dq > 0 else bars[_SELL_FEE, t1] + bars[_TAX, t1]
    fee = abs(dq) * fill * mult * rate
    new_pos = pos + dq
    if new_pos == 0:
        st[_ENTRY] = 0.0
    elif pos == 0 or _sign(new_pos) != _sign(pos):
        st[_ENTRY] = fill
    elif abs(new_pos) > abs(pos):
        st[_ENTRY] = (pos * st[_ENTRY] + dq * fill) / new_pos
    st[_CASH] = st[_CASH] - dq * fill * mult - fee
    st[_POS], st[_PREV] = new_pos, a
    st[_EQUITY] = st[_CASH] + new_pos * bars[_CLOSE, t1] * mult


@njit(cache=True, nogil=True)
def _hold(
    st: np.ndarray, bars: np.ndarray, mult: float, short_ok: bool, level: float, entry: float, t: int
) -> None:
    """Replace the position with ``level`` held since ``entry`` (NaN: bar ``t``'s close)."""
    close = bars[_CLOSE, t]
    st[_POS] = level if short_ok else level * _max(st[_EQUITY], 1e-12) / (close * mult)
    st[_ENTRY] = close if np.isnan(entry) else entry


@njit(cache=True, nogil=True)
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


@njit(cache=True, nogil=True)
def _tanh(x: float) -> float:
    # 2 sigmoid(2x) - 1: one exp, twice as fast as libm's tanh; absolute error ~1e-16, far below the trust
    # margin (and exactly +-1 where tanh saturates).
    return 2.0 / (1.0 + np.exp(-2.0 * x)) - 1.0


@njit(cache=True, nogil=True)
def _lstm_step(
    dynamic: np.ndarray,
    gates_w: np.ndarray,
    policy_w: np.ndarray,
    encoded_row: np.ndarray,
    z: np.ndarray,
    c: np.ndarray,
    exposure: float,
    pnl: float,
) -> np.ndarray:
    """One step of the float64 network: x = tanh(W_s s_t + W_d d_t + b), gates = W [x; h; 1],
    c' = f*c + i*g, h' = o*tanh(c') (Hochreiter & Schmidhuber 1997 with a forget gate) written into
    ``z = [x; h; 1]`` and ``c``; returns the logits W_pi [h'; 1]. The observation is rounded to float32, as
    the env's is."""
    h = c.shape[0]
    d0, d1 = np.float64(np.float32(exposure)), np.float64(np.float32(pnl))
    for j in range(h):
        z[j] = _tanh((dynamic[j, 0] * d0 + dynamic[j, 1] * d1) + encoded_row[j])
    pre = np.dot(gates_w, z)  # rows (f, i, o, g)
    for j in range(h):
        c[j] = _sigmoid(pre[j]) * c[j] + _sigmoid(pre[h + j]) * _tanh(pre[3 * h + j])
        z[h + j] = _sigmoid(pre[2 * h + j]) * _tanh(c[j])
    return np.dot(policy_w, z[h:])


@njit(cache=True, nogil=True)
def _trusted_argmax(logits: np.ndarray, policy_abs: np.ndarray, h1: np.ndarray, tolerance: float) -> int:
    """argmax of ``logits`` (the first on a tie, as torch and NumPy) when it wins by a margin the reference's
    float32 rounding cannot overturn (see :data:`MARGIN_ULPS`), else -1 (non-finite logits too)."""
    best = 0
    for a in range(1, logits.shape[0]):
        if logits[a] > logits[best]:
            best = a
    runner = -np.inf
    for a in range(logits.shape[0]):
        if a != best and logits[a] > runner:
            runner = logits[a]
    if not np.isfinite(np.sum(logits)):
        return -1
    margin = logits[best] - runner
    if margin > tolerance:
        return best
    scale = 0.0  # rare: the static bound was too coarse; this step's bound
    for a in range(policy_abs.shape[0]):
        s = 0.0
        for j in range(h1.shape[0]):
            s += policy_abs[a, j] * abs(h1[j])
        scale = max(scale, s)
    return best if margin > MARGIN_ULPS * _ULP * scale else -1


class Ledger:
    """The compiled ledger of one env as an object (for tests and callers stepping it by hand)."""

    def __init__(self, market: MarketArrays, config: EnvConfig, costs: BarCosts) -> None:
        inst = config.instrument
        self.bars = _bar_table(market, costs)
        self.levels = np.asarray(config.levels, dtype=np.float64)
        self.mult, self.margin, self.short_ok = (
            float(inst.multiplier),
            float(inst.margin_rate),
            inst.allow_short,
        )
        cash = float(config.initial_cash)
        self.state = np.array([cash, cash, 0.0, 0.0, -1.0])

    pos = property(lambda self: float(self.state[_POS]))
    entry = property(lambda self: float(self.state[_ENTRY]))
    cash = property(lambda self: float(self.state[_CASH]))
    equity = property(lambda self: float(self.state[_EQUITY]))

    def observe(self, t: int) -> tuple[float, float]:
        """Exposure and unrealised PnL over equity at bar ``t`` (the env's last two observations)."""
        return _observe(self.state, self.bars, self.mult, t)  # type: ignore[no-any-return]

    def step(self, action: int, t: int) -> None:
        """Apply ``action`` decided at bar ``t``: fill at the next open, mark at the next close."""
        _book(self.state, self.bars, self.levels, self.mult, self.margin, self.short_ok, action, t)

    def hold(self, level: float, entry_price: float | None, t: int) -> None:
        """Replace the position with ``level`` (contracts, or a fraction of equity for long-only kinds) held
        since ``entry_price`` (default: bar ``t``'s close), as ``TradingAgent``'s caller position does."""
        entry = math.nan if entry_price is None else float(entry_price)
        _hold(self.state, self.bars, self.mult, self.short_ok, float(level), entry, t)


class _Lstm:
    """The compiled network stepped one observation at a time (for tests)."""

    def __init__(self, policy: Float64Policy, encoded: np.ndarray) -> None:
        h = len(policy.encoder_bias)
        self.p, self.encoded = policy, np.ascontiguousarray(encoded, dtype=np.float64)
        self.z, self.c = np.zeros(2 * h + 1), np.zeros(h)
        self.z[-1] = 1.0
        self.h1 = self.z[h:]

    def step(self, k: int, exposure: float, pnl: float) -> list[float]:
        """Logits after decision row ``k`` observed with ``exposure`` and ``pnl``."""
        p = self.p
        logits = _lstm_step(
            p.dynamic, p.gates, p.policy, self.encoded[k], self.z, self.c, float(exposure), float(pnl)
        )
        return logits.tolist()  # type: ignore[no-any-return]


def _bar_table(market: MarketArrays, costs: BarCosts) -> np.ndarray:
    columns = (market.open, market.close, costs.slippage, costs.sell_tax, costs.buy_fee, costs.sell_fee)
    return np.ascontiguousarray(np.stack([np.asarray(c, dtype=np.float64) for c in columns]))


@njit(cache=True, nogil=True)
def _replay_kernel(
    encoded: np.ndarray,
    dynamic: np.ndarray,
    gates_w: np.ndarray,
    policy_w: np.ndarray,
    value_w: np.ndarray,
    policy_abs: np.ndarray,
    tolerance: float,
    bars: np.ndarray,
    levels: np.ndarray,
    mult: float,
    margin: float,
    short_ok: bool,
    cash: float,
    lo: int,
    end: int,
    position: float,
    entry: float,
) -> tuple[int, np.ndarray, float, float]:
    """Greedy steps at bars lo .. end-1, then the decision at ``end`` holding ``position`` (NaN: the
    simulated one): (action or -1 for a call too close, logits, value, simulated position)."""
    h = encoded.shape[1]
    z, c = np.zeros(2 * h + 1), np.zeros(h)
    z[2 * h] = 1.0
    st = np.array([cash, cash, 0.0, 0.0, -1.0])
    for k in range(end - lo):
        exposure, pnl = _observe(st, bars, mult, lo + k)
        logits = _lstm_step(dynamic, gates_w, policy_w, encoded[k], z, c, exposure, pnl)
        a = _trusted_argmax(logits, policy_abs, z[h:], tolerance)
        if a < 0:
            return -1, logits, 0.0, 0.0
        _book(st, bars, levels, mult, margin, short_ok, a, lo + k)
    simulated = st[_POS]
    if not np.isnan(position):
        _hold(st, bars, mult, short_ok, position, entry, end)
    exposure, pnl = _observe(st, bars, mult, end)
    logits = _lstm_step(dynamic, gates_w, policy_w, encoded[end - lo], z, c, exposure, pnl)
    a = _trusted_argmax(logits, policy_abs, z[h:], tolerance)
    return a, logits, np.dot(value_w, z[h:]), simulated


def undated(market: MarketArrays, instrument: InstrumentSpec) -> MarketArrays:
    """``market`` without its dates where ``instrument``'s sell tax does not depend on the date (futures,
    ETFs, a fixed rate): its costs are the same, and ``bar_costs`` skips looking up every day's tax."""
    if market.index is None:
        return market
    try:
        instrument.sell_taxes(None, 0)
    except ValueError:  # a stock's tax depends on the day
        return market
    return replace(market, index=None)


_BLAS: list[ThreadpoolController] = []


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """NumPy's BLAS on one thread inside the block: these matrices are tiny, and a thread pool on a busy
    machine turns a 1 µs product into tens (the NumPy twin of ``network.single_threaded``)."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())  # finds the loaded BLAS libraries once (milliseconds)
    with _BLAS[0].limit(limits=1, user_api="blas"):
        yield


def replay_window(
    policy: Float64Policy,
    market: MarketArrays,
    config: EnvConfig,
    position: float | None = None,
    entry_price: float | None = None,
) -> Replayed | None:
    """The greedy replay of one (normalised) market by ``TradingAgent.replay_reference``, or None when some
    step is too close to call."""
    with _one_blas_thread():
        return _replay(policy, market, config, position, entry_price)


def _replay(
    policy: Float64Policy,
    market: MarketArrays,
    config: EnvConfig,
    position: float | None,
    entry_price: float | None,
) -> Replayed | None:
    ranges = decision_ranges(market, config.window, None)
    lo, end = int(ranges.lo[0]), int(ranges.hi[0]) - 1  # steps at bars lo .. end-1, then the decision at end
    rows = np.arange(lo, end + 1)
    static = feature_windows(market, config.window)[rows]
    if market.n_regimes:
        static = np.concatenate([static, np.eye(market.n_regimes, dtype=np.float32)[market.regimes[rows]]], 1)
    encoded = np.ascontiguousarray(static.astype(np.float64) @ policy.static.T + policy.encoder_bias)
    inst = config.instrument
    bars = _bar_table(market, bar_costs(undated(market, inst), inst))
    held = math.nan if position is None or math.isnan(position) else float(position)
    action, logits, value, simulated = _replay_kernel(
        encoded,
        policy.dynamic,
        policy.gates,
        policy.policy,
        policy.value,
        policy.policy_abs,
        policy.tolerance,
        bars,
        np.asarray(config.levels, dtype=np.float64),
        float(inst.multiplier),
        float(inst.margin_rate),
        bool(inst.allow_short),
        float(config.initial_cash),
        lo,
        end,
        held,
        math.nan if entry_price is None else float(entry_price),
    )
    if action < 0:
        return None
    z = np.exp(logits - logits.max())
    return Replayed(int(action), (z / z.sum()).tolist(), float(value), float(simulated))


def warm_up() -> None:
    """Compile (or load from Numba's cache) the replay loop now, on a dummy window, so that a server's first
    decision does not pay for it."""
    h, n = 2, 4
    policy = Float64Policy(
        static=np.zeros((h, 1)),
        dynamic=np.zeros((h, 2)),
        encoder_bias=np.zeros(h),
        gates=np.zeros((4 * h, 2 * h + 1)),
        policy=np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]),
        value=np.zeros(h + 1),
        policy_abs=np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]),
        tolerance=0.0,
    )
    ones = np.ones(n)
    _replay_kernel(
        np.zeros((n, h)), policy.dynamic, policy.gates, policy.policy, policy.value, policy.policy_abs,
        policy.tolerance, np.stack([ones] * 6), np.array([0.0, 1.0]), 1.0, 1.0, True, 1.0, 0, 2, math.nan,
        math.nan,
    )  # fmt: skip
