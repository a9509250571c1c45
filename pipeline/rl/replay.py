"""Fast greedy replay of one window for ``TradingAgent.decide``: the actor-critic in float64 NumPy and the
env's position bookkeeping in plain Python floats, about 10x faster than stepping ``VecTradingEnv`` and the
torch model. Its decisions are those of the reference replay (``TradingAgent.replay_reference``): every
action is checked to win by a margin far above the float32 rounding of the reference, and a window with a
closer call returns None so that the caller replays it exactly."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from scipy.special import expit
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


class _Lstm:
    """One LSTM row stepped in place: x = tanh(W_s s_t + W_d d_t + b), gates = W [x; h; 1], (Hochreiter &
    Schmidhuber 1997 with a forget gate) c' = f*c + i*g, h' = o*tanh(c'), logits = W_pi [h'; 1]."""

    def __init__(self, policy: Float64Policy, encoded: np.ndarray) -> None:
        h = len(policy.encoder_bias)
        self.p, self.encoded = policy, encoded  # encoded: [N, H] W_s s_t + b of each decision row
        self.z = np.zeros(2 * h + 1)  # [x; h; 1]
        self.z[-1] = 1.0
        self.x, self.h, self.h1 = self.z[:h], self.z[h : 2 * h], self.z[h:]
        self.cg = np.zeros(2 * h)  # [c; g]
        self.c, self.g = self.cg[:h], self.cg[h:]
        self.fi_cg, self.tmp, self.d = np.empty(2 * h), np.empty(h), np.empty(2)  # fi_cg: [f*c; i*g]
        self.fc, self.ig = self.fi_cg[:h], self.fi_cg[h:]
        self.gates = np.empty(4 * h)  # pre-activations, then f, i, o in place
        self.fi, self.fio, self.o, self.pre_g = (
            self.gates[: 2 * h],
            self.gates[: 3 * h],
            self.gates[2 * h : 3 * h],
            self.gates[3 * h :],
        )
        self.logits = np.empty(len(policy.policy))

    def step(self, k: int, exposure: float, pnl: float) -> list[float]:
        """Logits after decision row ``k`` observed with ``exposure`` and ``pnl`` (rounded to float32, as
        the env's observation is)."""
        self.d[0], self.d[1] = np.float32(exposure), np.float32(pnl)
        np.dot(self.p.dynamic, self.d, out=self.x)
        self.x += self.encoded[k]
        np.tanh(self.x, out=self.x)
        np.dot(self.p.gates, self.z, out=self.gates)
        expit(self.fio, out=self.fio)
        np.tanh(self.pre_g, out=self.g)
        np.multiply(self.fi, self.cg, out=self.fi_cg)
        np.add(self.fc, self.ig, out=self.c)
        np.tanh(self.c, out=self.tmp)
        np.multiply(self.o, self.tmp, out=self.h)
        np.dot(self.p.policy, self.h1, out=self.logits)
        return self.logits.tolist()  # type: ignore[no-any-return]

    def trusted(self, margin: float) -> bool:
        """Whether the action that wins this step's logits by ``margin`` is the reference's too."""
        if margin > self.p.tolerance:
            return True
        scale = float((self.p.policy_abs @ np.abs(self.h1)).max())  # rare: the static bound was too coarse
        return margin > MARGIN_ULPS * _ULP * scale


def _greedy(logits: list[float]) -> tuple[int, float]:
    """argmax (the first on a tie, as torch and NumPy) and its margin over the runner-up; a NaN margin for
    non-finite logits (left to the reference, whatever it makes of them)."""
    if not math.isfinite(sum(logits)):
        return -1, math.nan
    ranked = sorted(logits)
    return logits.index(ranked[-1]), ranked[-1] - ranked[-2] if len(ranked) > 1 else math.inf


class Ledger:
    """``VecTradingEnv``'s bookkeeping of one env without auto-reset (position, entry price, cash, equity),
    in Python floats: the same IEEE operations in the same order as its NumPy code, hence the same
    numbers (``tests/rl/test_rl_replay.py`` steps both through random actions)."""

    def __init__(self, market: MarketArrays, config: EnvConfig, costs: BarCosts) -> None:
        inst = config.instrument
        self.open, self.close = market.open.tolist(), market.close.tolist()
        self.slip, self.tax = costs.slippage.tolist(), costs.sell_tax.tolist()
        self.buy_fee, self.sell_fee = costs.buy_fee.tolist(), costs.sell_fee.tolist()
        self.levels = np.asarray(config.levels, dtype=np.float64).tolist()
        self.mult, self.margin = float(inst.multiplier), float(inst.margin_rate)
        self.short_ok = inst.allow_short
        self.cash = self.equity = float(config.initial_cash)
        self.pos = self.entry = 0.0
        self.prev_action = -1

    def observe(self, t: int) -> tuple[float, float]:
        """Exposure and unrealised PnL over equity at bar ``t`` (the env's last two observations)."""
        close, eq = self.close[t], max(self.equity, 1e-12)
        return self.pos * close * self.mult / eq, self.pos * (close - self.entry) * self.mult / eq

    def _target(self, action: int, t: int) -> float:
        if action == self.prev_action:
            return self.pos
        close, level, eq = self.close[t], self.levels[action], max(self.equity, 0.0)
        if self.short_ok:  # x // 1.0 is np.floor(x) for every finite x, signed zeros included
            cap = (eq / (close * self.mult * self.margin)) // 1.0
            return min(max(level, -cap), cap)
        return (level * eq / (close * self.mult * (1.0 + self.buy_fee[t]))) // 1.0

    def step(self, action: int, t: int) -> None:
        """Apply ``action`` decided at bar ``t``: fill at the next open, mark at the next close."""
        t1, pos = t + 1, self.pos
        dq = self._target(action, t) - pos
        fill = self.open[t1] + _sign(dq) * self.slip[t1]
        if not self.short_ok and dq > 0:
            afford = (self.cash / (fill * self.mult * (1.0 + self.buy_fee[t1]))) // 1.0
            dq = min(dq, max(afford, 0.0))
        rate = self.buy_fee[t1] if dq > 0 else self.sell_fee[t1] + self.tax[t1]
        fee = abs(dq) * fill * self.mult * rate
        new_pos = pos + dq
        if new_pos == 0:
            self.entry = 0.0
        elif pos == 0 or _sign(new_pos) != _sign(pos):
            self.entry = fill
        elif abs(new_pos) > abs(pos):
            self.entry = (pos * self.entry + dq * fill) / new_pos
        self.cash = self.cash - dq * fill * self.mult - fee
        self.pos, self.prev_action = new_pos, action
        self.equity = self.cash + new_pos * self.close[t1] * self.mult

    def hold(self, level: float, entry_price: float | None, t: int) -> None:
        """Replace the position with ``level`` (contracts, or a fraction of equity for long-only kinds) held
        since ``entry_price`` (default: bar ``t``'s close), as ``TradingAgent``'s caller position does."""
        close = self.close[t]
        self.pos = level if self.short_ok else level * max(self.equity, 1e-12) / (close * self.mult)
        self.entry = close if entry_price is None else float(entry_price)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


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
    lstm = _Lstm(policy, static.astype(np.float64) @ policy.static.T + policy.encoder_bias)
    ledger = Ledger(market, config, bar_costs(undated(market, config.instrument), config.instrument))
    for k, t in enumerate(range(lo, end)):
        action, margin = _greedy(lstm.step(k, *ledger.observe(t)))
        if not lstm.trusted(margin):
            return None
        ledger.step(action, t)
    simulated = ledger.pos
    if position is not None and not math.isnan(position):
        ledger.hold(float(position), entry_price, end)
    logits = lstm.step(end - lo, *ledger.observe(end))
    action, margin = _greedy(logits)
    if not lstm.trusted(margin):
        return None
    z = np.exp(np.asarray(logits) - max(logits))
    return Replayed(action, (z / z.sum()).tolist(), float(policy.value @ lstm.h1), float(simulated))
