"""krx-rl-trader: the library behind the DAGs, the model server and the ``krx`` CLI."""

__version__ = "0.1.0"
