"""Model lifecycle: model specs as data, MLflow tracking, the self-contained pyfunc, the promotion gate."""

import os

# MLflow reads these when it is first imported, so they are set before any module here imports it.
# An explicit value in the environment wins; offline machines must not try to send telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars on the console
