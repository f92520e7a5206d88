"""The station service in a child process, like ``WorkerProcess`` for the worker: the
tests, the benchmark and the demo run the real `vitalstream station` command."""

from __future__ import annotations

import os

import orjson

from vitalstream.process import ServiceProcess


class StationProcess(ServiceProcess):
    """`vitalstream station` with the given stations ({token: wards}) on a free port.

        with StationProcess(bootstrap, {"a-long-station-token": ["4B"]}) as station:
            station.url   # http://127.0.0.1:PORT
    """

    name = "station"

    def __init__(self, bootstrap: str, tokens: dict[str, object], port: int = 0,
                 env: dict[str, str] | None = None, log_path: str | os.PathLike[str] | None = None,
                 export: bool = False) -> None:
        super().__init__(bootstrap, port, env, log_path, ["--export"] if export else [])
        self.tokens = tokens
        self.export = export

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["VITALSTREAM_STATION_TOKENS"] = orjson.dumps(self.tokens).decode()
        env["VITALSTREAM_STATION_PORT"] = str(self.port)
        env.pop("VITALSTREAM_STATION_TOKENS_FILE", None)
        return env

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)
