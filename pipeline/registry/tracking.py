"""MLflow tracking for training: an embedded store under var/, one parent run per training and a nested
run per seed (created by id, so each can live in its own process or DAG task), params without secrets,
namespaced metrics and reproducibility artifacts."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from pydantic import SecretStr

from pipeline.config import Settings, get_settings, mask_url
from pipeline.features import FEATURE_SET_VERSION
from pipeline.registry.specs import ModelSpec

#: Training metrics renamed for the UI: everything about the learning run lives under ``train/``.
TRAIN_METRIC_NAMES = {
    "charts/episode_return": "train/episode_return",
    "charts/steps_per_s": "train/steps_per_s",
    "charts/learning_rate": "train/learning_rate",
    "charts/episodes": "train/episodes",
    "losses/explained_variance": "train/explained_variance",
}
#: Metric columns of a walk-forward row that are not performance metrics.
_ROW_KEYS = frozenset({"fold", "split", "strategy", "seed", "start", "end"})
_BATCH = 1000


class TrainingRun(TypedDict):
    """Handle of one training's parent run: JSON-able, passed between DAG tasks (XCom) and processes."""

    experiment_id: str
    run_id: str
    spec: str
    registered_model_name: str


def mlflow_log_file(settings: Settings) -> Path:
    """Where MLflow's own log lines go (the console only shows its errors)."""
    return settings.var_dir.resolve() / "logs" / "mlflow.log"


def quiet_mlflow(log_file: Path) -> None:
    """Send MLflow's INFO chatter to ``log_file``; keep only errors on the console."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("mlflow")
    for handler in logger.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)
    if not any(getattr(h, "baseFilename", None) == str(log_file) for h in logger.handlers):
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(file_handler)
    logger.setLevel(logging.INFO)


def artifact_root(settings: Settings) -> str:
    """Artifact root of the experiments krx creates: the setting, or ``<var_dir>/mlflow-artifacts``
    as an absolute ``file:`` URI (the MLflow default is relative to the working directory)."""
    if settings.mlflow_artifact_root:
        root = settings.mlflow_artifact_root
        return root if "://" in root else Path(root).resolve().as_uri()
    return (settings.var_dir.resolve() / "mlflow-artifacts").as_uri()


def configure_mlflow(settings: Settings | None = None) -> MlflowClient:
    """Point MLflow (tracking and registry) at ``settings.resolved_mlflow_uri``, quietly; returns a client."""
    s = settings or get_settings()
    s.var_dir.mkdir(parents=True, exist_ok=True)
    from mlflow.telemetry import set_telemetry_client

    set_telemetry_client()  # re-reads MLFLOW_DISABLE_TELEMETRY in case mlflow was imported before us
    quiet_mlflow(mlflow_log_file(s))
    uri = s.resolved_mlflow_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """Id of experiment ``name``, created with an explicit artifact location under the artifact root."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = f"{artifact_root(settings).rstrip('/')}/{name}"
    return str(client.create_experiment(name, artifact_location=location))


# ---- what gets logged ----------------------------------------------------------------------------------
def spec_params(spec: ModelSpec) -> dict[str, Any]:
    """Flat params of a spec, its TrainConfig and walk-forward config (no secret is part of any)."""
    out: dict[str, Any] = {f"spec.{k}": v for k, v in spec.model_dump(mode="json").items()}
    out.update({f"train.{k}": v for k, v in spec.train_config().flat_params().items()})
    wf = spec.walkforward_config()
    out.update({f"walkforward.{k}": getattr(wf, k) for k in wf.__dataclass_fields__})
    return out


def public_settings(settings: Settings) -> dict[str, Any]:
    """Settings without their secrets: secret fields dropped (not even masked), URLs without passwords."""
    out: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            continue
        if name in {"database_url", "mlflow_tracking_uri", "kis_base_url"} and value:
            value = mask_url(str(value))
        out[name] = str(value) if isinstance(value, Path) else value
    return out


def bars_fingerprint(bars: pd.DataFrame) -> dict[str, Any]:
    """Row count, time range, columns and a sha256 of the bars' values and index (same bars, same hash)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in bars.columns]).encode())
    digest.update(np.ascontiguousarray(pd.util.hash_pandas_object(bars, index=True).to_numpy()).tobytes())
    times = bars["ts"] if "ts" in bars.columns else bars.index
    out: dict[str, Any] = {"rows": len(bars), "columns": [str(c) for c in bars.columns]}
    out["first"], out["last"] = (str(times.min()), str(times.max())) if len(bars) else (None, None)
    if "symbol" in bars.columns:
        out["symbols"] = sorted(map(str, bars["symbol"].unique()))
    out["sha256"] = digest.hexdigest()
    return out


def history_metrics(history: pd.DataFrame, start_ms: int) -> list[Metric]:
    """Trainer metrics (one row per worker update) as MLflow points: step = ``global_step``, timestamp =
    run start + the update's ``time``; NaN points (no episode finished yet) are skipped."""
    if history.empty:
        return []
    steps = history["global_step"].astype(np.int64).to_numpy()
    times = history["time"].to_numpy(np.float64) if "time" in history else np.zeros(len(history))
    stamps = start_ms + (times * 1000).astype(np.int64)
    points: list[Metric] = []
    for column in history.columns:
        if not column.startswith(("losses/", "charts/")):
            continue
        key = TRAIN_METRIC_NAMES.get(column, column)
        for value, step, stamp in zip(history[column].to_numpy(np.float64), steps, stamps, strict=True):
            if math.isfinite(value):
                points.append(Metric(key, float(value), int(stamp), int(step)))
    return points


def evaluation_metrics(metrics: pd.DataFrame, seed: int | None = None) -> dict[str, float]:
    """Walk-forward rows → ``eval/<split>/<metric>`` (the agent) and ``baseline/<name>/<split>/<metric>``,
    each the mean over folds (and seeds, unless ``seed`` picks one agent). NaN means stay NaN."""
    rows = metrics if seed is None else metrics[(metrics["strategy"] != "agent") | (metrics["seed"] == seed)]
    values = [c for c in rows.columns if c not in _ROW_KEYS and pd.api.types.is_numeric_dtype(rows[c])]
    means = rows.groupby(["strategy", "split"])[values].mean()
    out: dict[str, float] = {}
    for (strategy, split), row in means.iterrows():  # type: ignore[misc]
        prefix = "eval" if strategy == "agent" else f"baseline/{strategy}"
        if strategy != "agent" and seed is not None:
            continue  # baselines belong to the parent run
        out.update({f"{prefix}/{split}/{name}": float(v) for name, v in row.items()})
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Tracker:
    """Logs one training to MLflow. Every method takes run ids, so the parent, the seed runs and the
    registration may happen in different processes; ``start_run(parent_run_id=…)`` would need the parent
    active in this process, so seed runs are created by id with the parent tag instead (what it does)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.client = configure_mlflow(self.settings)

    def start_training(
        self,
        spec: ModelSpec,
        bars: pd.DataFrame | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> TrainingRun:
        """Open the parent run of a training: params, resolved config, data fingerprint, feature set."""
        experiment_id = ensure_experiment(self.client, spec.registered_model_name, self.settings)
        run_tags = {"krx.spec": spec.name, "krx.registered_model": spec.registered_model_name, **(tags or {})}
        run = self.client.create_run(experiment_id, run_name=run_name or f"{spec.name}-train", tags=run_tags)
        run_id = run.info.run_id
        self.log_params(run_id, spec_params(spec))
        resolved = {
            "spec": spec.model_dump(mode="json"),
            "train_config": spec.train_config().to_dict(),
            "settings": public_settings(self.settings),
        }
        self.client.log_dict(run_id, resolved, "config/resolved_config.json")
        features = {"feature_set": spec.feature_set, "ta_feature_set_version": FEATURE_SET_VERSION}
        self.client.log_dict(run_id, features, "data/feature_set.json")
        if bars is not None:
            self.log_data(run_id, bars)
        return TrainingRun(
            experiment_id=experiment_id,
            run_id=run_id,
            spec=spec.name,
            registered_model_name=spec.registered_model_name,
        )

    def log_data(self, run_id: str, bars: pd.DataFrame) -> dict[str, Any]:
        """Record the data range and sha256 of the training bars (artifact + ``data.*`` tags)."""
        fingerprint = bars_fingerprint(bars)
        self.client.log_dict(run_id, fingerprint, "data/training_bars.json")
        for key in ("sha256", "rows", "first", "last"):
            self.client.set_tag(run_id, f"data.{key}", str(fingerprint[key]))
        return fingerprint

    def start_seed_run(self, parent: TrainingRun, seed: int, spec: ModelSpec | None = None) -> str:
        """A run nested under ``parent`` for one seed (its params: the seed's TrainConfig)."""
        tags = {
            MLFLOW_PARENT_RUN_ID: parent["run_id"],
            MLFLOW_RUN_NAME: f"{parent['spec']}-seed{seed}",
            "krx.spec": parent["spec"],
            "krx.seed": str(seed),
        }
        run = self.client.create_run(parent["experiment_id"], run_name=tags[MLFLOW_RUN_NAME], tags=tags)
        if spec is not None:
            params = {f"train.{k}": v for k, v in spec.train_config(seed).flat_params().items()}
            self.log_params(run.info.run_id, params)
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Log params in batches (MLflow takes 100 per call); values are strings, None as ``None``."""
        items = [Param(k, str(v)) for k, v in params.items()]
        for chunk in _chunks(items, 100):
            self.client.log_batch(run_id, params=chunk)

    def log_history(self, run_id: str, history: pd.DataFrame) -> int:
        """Log the trainer's metrics history with its steps and times; returns the points logged.

        For histories collected without the live ``on_metrics`` callback of ``pipeline.rl.train.train``;
        timestamps follow training time."""
        start_ms = int(self.client.get_run(run_id).info.start_time or 0)
        points = history_metrics(history, start_ms)
        for chunk in _chunks(points, _BATCH):
            self.client.log_batch(run_id, metrics=chunk)
        return len(points)

    def log_metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        """Log ``values`` at ``step`` (NaN is kept: the gate reads it as a failure)."""
        stamp = int(pd.Timestamp.now(tz="UTC").value // 1_000_000)
        items = [Metric(k, float(v), stamp, step) for k, v in values.items()]
        for chunk in _chunks(items, _BATCH):
            self.client.log_batch(run_id, metrics=chunk)

    def log_evaluation(self, run_id: str, metrics: pd.DataFrame, seed: int | None = None) -> dict[str, float]:
        """Log walk-forward results (see :func:`evaluation_metrics`); the parent also keeps the CSV."""
        values = evaluation_metrics(metrics, seed)
        self.log_metrics(run_id, values)
        if seed is None:
            self.client.log_text(run_id, metrics.to_csv(index=False), "evaluation/walkforward_metrics.csv")
        return values

    def log_files(self, run_id: str, paths: Iterable[str | Path], folder: str = "figures") -> None:
        """Attach files (figures, reports) under ``folder``."""
        for path in paths:
            self.client.log_artifact(run_id, str(path), folder)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """End a run (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.from_string(status)))

    def finish_training(self, parent: TrainingRun, status: str = "FINISHED") -> None:
        """End the parent run: the last task of a training calls this."""
        self.end_run(parent["run_id"], status)
