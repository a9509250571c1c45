"""Backtests of policies on the trading env, baselines, performance metrics and walk-forward evaluation."""
