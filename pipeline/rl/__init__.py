"""Reinforcement-learning core: vectorised trading env, LSTM actor-critic and asynchronous A3C training."""
