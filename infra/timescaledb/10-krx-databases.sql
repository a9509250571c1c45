-- Extra databases of the compose stack, created once when the TimescaleDB volume is first initialised.
-- The market store is POSTGRES_DB (krx); MLflow and Airflow keep their metadata in their own databases
-- on the same server so that a `krx db upgrade` never meets their tables (and a restore can be per app).
-- Mounted as a single file into /docker-entrypoint-initdb.d: mounting the whole folder would hide the
-- image's own scripts that install and tune the timescaledb extension.
CREATE DATABASE mlflow;
CREATE DATABASE airflow;
