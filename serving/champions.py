"""The ``champion`` of every served model spec, loaded from the MLflow registry and followed: each poll
resolves the alias to a version; a new version is loaded fully and warmed up before it is swapped in, so
in-flight requests finish on the model they started with; a failed load keeps the old model and logs
why. Also the request checks that need a served model (spec or symbol, window length, position)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mlflow

from pipeline.config import Settings
from pipeline.registry.promotion import CHAMPION, alias_version
from pipeline.registry.pyfunc import OUTPUT_COLUMNS, to_model_input
from pipeline.registry.specs import MODEL_PREFIX, ModelSpec, SpecError, resolve_spec, spec_names
from pipeline.registry.tracking import configure_mlflow
from pipeline.serving_support import probe_window, required_bars
from serving.schemas import PredictRequest, field_error

log = logging.getLogger("serving.champions")
#: Called after every load attempt with (registered model name, version, "loaded" | "failed").
LoadHook = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Served:
    """One loaded champion and what a request must satisfy to be decided by it."""

    spec: str
    name: str
    version: str
    model: Any
    """The MLflow pyfunc (``mlflow.pyfunc.load_model``) of ``models:/<name>/<version>``."""
    levels: tuple[float, ...]
    min_bars: int
    """The fewest bars a window needs (the agent's warm-up plus its observation window)."""


class Champions:
    """The served champions by spec name; :meth:`refresh` follows the aliases (:meth:`start` polls)."""

    def __init__(self, settings: Settings, on_load: LoadHook | None = None) -> None:
        self.settings = settings
        self.client = configure_mlflow(settings)
        self._on_load = on_load or (lambda name, version, outcome: None)
        self._specs: dict[str, ModelSpec] = {}
        self._served: dict[str, Served] = {}
        self._problems: dict[str, str] = {}
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- following the aliases -----------------------------------------------------------------------
    def start(self) -> None:
        """Refresh now, then every ``serving_poll_s`` seconds in a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="champion-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.serving_poll_s):
            try:
                self.refresh()
            except Exception:
                log.exception("checking the champions failed; serving what is loaded")

    def _configured(self) -> list[str]:
        if self.settings.serving_specs:
            return list(self.settings.serving_specs)
        names = spec_names(self.settings)
        return [
            n
            for n in names
            if self.client.search_model_versions(f"name = '{MODEL_PREFIX}{n}'", max_results=1)
        ]

    def refresh(self) -> None:
        """Resolve every configured spec's champion; load and swap in the ones that moved."""
        with self._refreshing:
            specs: dict[str, ModelSpec] = {}
            for name in self._configured():
                try:
                    specs[name] = resolve_spec(name, self.settings)
                except SpecError as exc:
                    self._problems[name] = str(exc)
                    log.error("cannot serve %s: %s", name, exc)
                    continue
            self._specs = specs
            for spec in specs.values():
                self._follow(spec)

    def _follow(self, spec: ModelSpec) -> None:
        name = spec.registered_model_name
        version = alias_version(self.client, name, CHAMPION)
        current = self._served.get(spec.name)
        if version is None:
            if current is None:
                self._problems[spec.name] = (
                    f"model spec {spec.name}: {name} has no {CHAMPION} yet "
                    f"(promote a version: krx model promote N --spec {spec.name})"
                )
            return
        if current is not None and current.version == version:
            return
        try:
            served = self._load(spec, version)
        except Exception as exc:  # noqa: BLE001 - whatever broke the load, the old model keeps serving
            kept = f"keeping v{current.version}" if current else "nothing served for it yet"
            log.error("loading %s v%s failed (%s): %s: %s", name, version, kept, type(exc).__name__, exc)
            if current is None:
                self._problems[spec.name] = f"model spec {spec.name}: loading {name} v{version} failed: {exc}"
            self._on_load(name, version, "failed")
            return
        self._served = {**self._served, spec.name: served}  # one reference swap: readers see old or new
        self._problems.pop(spec.name, None)
        was = f"v{current.version}" if current else "nothing"
        log.info("serving %s v%s (was %s), windows of >= %d bars", name, version, was, served.min_bars)
        self._on_load(name, version, "loaded")

    def _load(self, spec: ModelSpec, version: str) -> Served:
        """Load ``models:/<name>/<version>`` completely and decide once on a probe window."""
        uri = f"models:/{spec.registered_model_name}/{version}"
        model = mlflow.pyfunc.load_model(uri, model_config={"model_version": version})
        meta = model.metadata.metadata or {}
        if meta.get("spec") != spec.name:
            raise ValueError(f"{uri} is a model of spec {meta.get('spec')!r}, not {spec.name!r}")
        levels = tuple(float(x) for x in meta["levels"])
        min_bars = required_bars(model.unwrap_python_model().agent)
        out = model.predict(to_model_input(probe_window(max(min_bars, 250)), position=levels[0]))
        if len(out) != 1 or not set(OUTPUT_COLUMNS) <= set(out.columns):
            raise ValueError(f"{uri} answered a probe window with {list(out.columns)} x {len(out)}")
        return Served(spec.name, spec.registered_model_name, version, model, levels, min_bars)

    # ---- what is served --------------------------------------------------------------------------------
    def snapshot(self) -> Mapping[str, Served]:
        """The served champions now (a request keeps this one even if a swap happens meanwhile)."""
        return self._served

    def not_ready(self) -> str | None:
        """None when every configured spec has a champion loaded, else why not (naming the specs)."""
        if not self._specs:
            if self.settings.serving_specs:
                return "; ".join(self._problems.values()) or "no model spec resolved yet"
            return (
                f"no model spec to serve: none of {spec_names(self.settings)} has a registered model yet "
                "(set KRX_SERVING_SPECS or train and register one)"
            )
        missing = [s for s in self._specs if s not in self._served]
        if not missing:
            return None
        return "; ".join(self._problems.get(s, f"model spec {s}: {CHAMPION} not loaded yet") for s in missing)

    def check(self, request: PredictRequest) -> PredictRequest:
        """Fill in the spec from the symbol, and refuse what the served model cannot decide on."""
        spec = request.spec if request.spec is not None else self._spec_of(request)
        definition = self._specs.get(spec)
        if definition is None:
            raise field_error(
                ("spec",), "unknown_spec", f"unknown model spec {spec!r}; served: {sorted(self._specs)}", spec
            )
        if request.symbol is not None and request.symbol not in definition.symbols:
            message = (
                f"{request.symbol!r} is not traded by model spec {spec} ({', '.join(definition.symbols)})"
            )
            raise field_error(("symbol",), "unknown_symbol", message, request.symbol)
        if request.interval is not None and request.interval != definition.interval:
            message = f"model spec {spec} decides on {definition.interval} bars, not {request.interval}"
            raise field_error(("interval",), "wrong_interval", message, request.interval)
        served = self._served.get(spec)
        if served is not None:  # not loaded yet: the handler answers 503
            _check_window(request, served)
        request.spec = spec
        return request

    def _spec_of(self, request: PredictRequest) -> str:
        symbol, interval = request.symbol, request.interval
        found = [
            name
            for name, d in self._specs.items()
            if symbol in d.symbols and (interval is None or d.interval == interval)
        ]
        if len(found) == 1:
            return found[0]
        if not found:
            served = {name: list(d.symbols) for name, d in self._specs.items()}
            message = f"no served model spec trades {symbol!r}" + (f" on {interval} bars" if interval else "")
            raise field_error(("symbol",), "unknown_symbol", f"{message}; served: {served}", symbol)
        message = f"{symbol!r} is traded by model specs {found}: give spec (or interval)"
        raise field_error(("symbol",), "ambiguous_symbol", message, symbol)


def _check_window(request: PredictRequest, served: Served) -> None:
    n = len(request.bars)
    if n < served.min_bars:
        message = f"{n} bars is too short: {served.name} v{served.version} needs at least {served.min_bars}"
        raise field_error(("bars",), "window_too_short", message, n)
    low, high = min(served.levels), max(served.levels)
    if request.position is not None and not low <= request.position <= high:
        message = f"position {request.position} is outside the model's levels [{low}, {high}]"
        raise field_error(("position",), "position_out_of_levels", message, request.position)
