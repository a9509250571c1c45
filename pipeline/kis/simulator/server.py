"""Run the simulator: in the foreground (``krx sim``) or in a background thread (tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from pipeline.kis.simulator.app import SimState, build_state, create_app
from pipeline.kis.simulator.simconfig import SimConfig


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve(cfg: SimConfig, host: str, port: int, access_log: bool = True) -> None:
    """Serve until interrupted (the ``krx sim`` command)."""
    uvicorn.run(create_app(cfg), host=host, port=port, access_log=access_log, log_level="info")


class SimServer:
    """A simulator on a free loopback port in a daemon thread: ``with SimServer(cfg) as sim: ...``."""

    def __init__(self, cfg: SimConfig, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.cfg = cfg
        self.host = host
        self.port = port or free_port(host)
        self.state: SimState = build_state(cfg)
        config = uvicorn.Config(
            create_app(state=self.state),
            host=host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="kis-sim", daemon=True)

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimServer:
        """Start and wait until the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("KIS simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and close both books."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.state.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
