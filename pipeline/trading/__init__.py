"""Trading: decisions from the served model, risk limits, exactly-once broker orders, reconciliation, the
kill switch and the end-of-day report. Imports neither Airflow nor BentoML: the DAGs and the CLI call in."""
