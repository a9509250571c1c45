"""Offline KIS simulator: KIS paths, headers, tr_ids, envelope and limits, backed by generated data."""
