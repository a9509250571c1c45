"""The one MLflow pyfunc per model: a saved TradingAgent (features, regime model, normaliser, policy) that
turns windows of raw OHLCV bars plus the current position into decisions; logging, registering, loading."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import io
import logging
import math
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from pipeline.features.sets import OhlcvArrays
from pipeline.market import TZ_NAME
from pipeline.registry.specs import ModelSpec
from pipeline.rl import replay
from pipeline.rl.agent import TradingAgent

_mlflow_log = logging.getLogger("mlflow.krx")
#: Artifact key of the saved agent directory inside the MLflow model.
AGENT_ARTIFACT = "agent"
#: Name of the logged model inside its run (``name=`` of ``log_model``).
MODEL_NAME = "agent"
#: Distributions the model needs at load time, pinned to the installed versions (local labels such as
#: ``+cpu`` stripped, so pip takes the CPU wheel on the project's machines). The ``pipeline`` package
#: itself (krx-rl-trader) is not on PyPI: it must be installed where the model is loaded.
REQUIREMENTS = (
    "mlflow",
    "torch",
    "numpy",
    "pandas",
    "TA-Lib",
    "scikit-learn",
    "scipy",
    "joblib",
    "gymnasium",
    "SQLAlchemy",
    "tqdm",
)
_LOCAL_LABEL = re.compile(r"\+.*$")
OUTPUT_COLUMNS = (
    "symbol",
    "timestamp",
    "action",
    "target_level",
    "probabilities",
    "value",
    "regime",
    "simulated_position",
    "model_version",
)


def pip_requirements() -> list[str]:
    """``name==version`` of every distribution in :data:`REQUIREMENTS`, as installed here."""
    return [f"{name}=={_LOCAL_LABEL.sub('', md.version(name))}" for name in REQUIREMENTS]


def model_signature() -> ModelSignature:
    """Input: bars (``ts`` naive KST), optional ``symbol`` (one window per symbol), ``position`` (a level)
    and ``entry_price``; param ``position`` for a single window. Output: one row per window."""
    inputs = Schema(
        [
            ColSpec("datetime", "ts"),
            *(ColSpec("double", c) for c in ("open", "high", "low", "close", "volume")),
            ColSpec("string", "symbol", required=False),
            ColSpec("double", "position", required=False),
            ColSpec("double", "entry_price", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "symbol", required=False),
            ColSpec("string", "timestamp"),
            ColSpec("long", "action"),
            ColSpec("double", "target_level"),
            ColSpec(Array("double"), "probabilities"),
            ColSpec("double", "value"),
            ColSpec("long", "regime", required=False),
            ColSpec("double", "simulated_position"),
            ColSpec("string", "model_version", required=False),
        ]
    )
    params = ParamSchema([ParamSpec("position", "double", None), ParamSpec("entry_price", "double", None)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def to_model_input(
    bars: pd.DataFrame, symbol: str | None = None, position: float | None = None
) -> pd.DataFrame:
    """Bars (``ts`` column or a DatetimeIndex, any tz) → the pyfunc's input frame: ``ts`` as naive KST
    (MLflow schemas take naive datetimes only), float OHLCV, optional ``symbol`` and ``position``."""
    frame = bars.reset_index() if "ts" not in bars.columns else bars.reset_index(drop=True)
    frame = frame.rename(columns={frame.columns[0]: "ts"}) if "ts" not in frame.columns else frame
    ts = pd.to_datetime(frame["ts"])
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert(TZ_NAME).dt.tz_localize(None)
    out = pd.DataFrame({"ts": ts.astype("datetime64[ns]")})
    for column in ("open", "high", "low", "close", "volume"):
        out[column] = frame[column].astype(np.float64) if column in frame else 0.0
    if symbol is not None:
        out["symbol"] = symbol
    if position is not None:
        out["position"] = float(position)
    return out


def _given(value: Any, default: float | None) -> float | None:
    """``value`` as a float, or ``default`` where it is missing (None or NaN)."""
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return default


def _split_windows(model_input: pd.DataFrame, ts: pd.DatetimeIndex) -> list[tuple[str | None, np.ndarray]]:
    """Per window (per ``symbol`` in order of appearance, rows without one dropped; all rows without a
    ``symbol`` column): its row positions in time order. One sort of the whole input, as
    ``groupby("symbol", sort=False)`` and ``sort_values("ts")`` per group would order it."""
    if "symbol" in model_input.columns:
        codes, uniques = pd.factorize(model_input["symbol"])  # -1: no symbol, dropped as groupby does
        names: list[str | None] = [str(u) for u in uniques]
    else:
        codes, names = np.zeros(len(model_input), np.int64), [None]
    stamps = ts.asi8
    order = np.lexsort((stamps, codes))
    order = order[codes[order] >= 0]
    groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    return [
        (names[codes[rows[0]]] if len(rows) else None, _in_time_order(model_input, stamps, rows))
        for rows in groups
    ]


def _in_time_order(model_input: pd.DataFrame, stamps: np.ndarray, rows: np.ndarray) -> np.ndarray:
    t = stamps[rows]
    if not ((t[1:] == t[:-1]).any() or (t == pd.NaT.value).any()):
        return rows  # distinct times: one order, whichever sort finds it
    # Ties or missing times: the order pandas' own sort gives the window's rows, as before.
    group = np.sort(rows)
    return group[model_input.iloc[group].reset_index(drop=True).sort_values("ts").index.to_numpy()]


def _bars(
    model_input: pd.DataFrame, ts: pd.DatetimeIndex, windows: list[tuple[str | None, np.ndarray]]
) -> list[OhlcvArrays]:
    cols = {k: model_input[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")}
    return [OhlcvArrays(**{k: v[rows] for k, v in cols.items()}, index=ts[rows]) for _, rows in windows]


def _last_values(
    model_input: pd.DataFrame,
    column: str,
    windows: list[tuple[str | None, np.ndarray]],
    default: float | None,
) -> list[float | None]:
    """The value of ``column`` in each window's last row where given, else ``default``."""
    if column not in model_input.columns:
        return [default] * len(windows)
    values = model_input[column].to_numpy()
    return [_given(values[rows[-1]], default) for _, rows in windows]


class AgentModel(PythonModel):  # type: ignore[misc]
    """pyfunc wrapper of a saved :class:`TradingAgent`: one decision row per window (per ``symbol``),
    computed by ``TradingAgent.decide_arrays`` (``decide``/``decide_batch`` without frames), so serving and
    training share every line."""

    def load_context(self, context: Any) -> None:
        """Load the agent directory bundled as artifact ``agent``."""
        self.agent = TradingAgent.load(context.artifacts[AGENT_ARTIFACT])
        replay.warm_up()  # the compiled replay, before the first request rather than during it
        config = dict(context.model_config or {})
        self.model_version = str(config.get("model_version") or "") or None

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Decisions for the bar after the last of each window (see :func:`model_signature`)."""
        p = params or {}
        ts = pd.DatetimeIndex(model_input["ts"])
        windows = _split_windows(model_input, ts)
        decisions = self.agent.decide_arrays(
            _bars(model_input, ts, windows),
            _last_values(model_input, "position", windows, p.get("position")),
            _last_values(model_input, "entry_price", windows, p.get("entry_price")),
        )
        columns: dict[str, list[Any]] = {c: [d.get(c) for d in decisions] for c in OUTPUT_COLUMNS}
        columns["symbol"] = [symbol for symbol, _ in windows]
        columns["model_version"] = [self.model_version] * len(windows)
        return pd.DataFrame(columns, columns=list(OUTPUT_COLUMNS))


def log_agent(
    agent: TradingAgent, spec: ModelSpec, example: pd.DataFrame | None = None, register: bool = True
) -> Any:
    """Log ``agent`` as a pyfunc named ``agent`` in the active run (registering it under the spec's name
    unless ``register`` is False); returns MLflow's ``ModelInfo``. ``example``: bars for the input example."""
    with tempfile.TemporaryDirectory(prefix="krx-agent-") as tmp:
        agent_dir = agent.save(Path(tmp) / AGENT_ARTIFACT)
        input_example = to_model_input(example) if example is not None else None
        chatter = io.StringIO()  # MLflow prints "Successfully registered …" to stderr: keep it in its log
        with warnings.catch_warnings(), contextlib.redirect_stderr(chatter):
            warnings.simplefilter("ignore")  # pandas/MLflow deprecation chatter while saving
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=AgentModel(),
                artifacts={AGENT_ARTIFACT: str(agent_dir)},
                signature=model_signature(),
                input_example=input_example,
                pip_requirements=pip_requirements(),
                registered_model_name=spec.registered_model_name if register else None,
                model_config={"model_version": "", "registered_model_name": spec.registered_model_name},
                metadata={
                    "spec": spec.name,
                    "interval": spec.interval,
                    "kind": spec.kind.value,
                    "levels": list(spec.resolved_levels),
                    "feature_set": spec.feature_set,
                    "krx_rl_trader": md.version("krx-rl-trader"),
                    "requires": "the krx-rl-trader package (pipeline) installed where the model loads",
                },
            )
        for line in chatter.getvalue().splitlines():
            _mlflow_log.info(line)
        return info


def load_pyfunc(name: str, alias: str = "champion", client: Any = None) -> Any:
    """``models:/<name>@<alias>`` as a pyfunc whose output names the version it came from."""
    client = client or mlflow.MlflowClient()
    version = str(client.get_model_version_by_alias(name, alias).version)
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}", model_config={"model_version": version})


def load_agent(model_uri: str) -> TradingAgent:
    """The :class:`TradingAgent` inside a logged model (e.g. ``models:/<name>@champion``), to re-evaluate
    it in process (the gate re-runs the champion on the candidate's windows)."""
    with tempfile.TemporaryDirectory(prefix="krx-agent-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return TradingAgent.load(Path(local) / "artifacts" / AGENT_ARTIFACT)
