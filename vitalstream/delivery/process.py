"""The station service in a child process, like ``WorkerProcess`` for the worker: the
tests, the benchmark and the demo run the real `vitalstream station` command."""

from __future__ import annotations

import os

import orjson

from vitalstream.process import ServiceProcess


class StationProcess(ServiceProcess):
    """`vitalstream station` with the given wall-board tokens ({token: wards}) and, to sign
    in as people, a user file, on a free port; it signs with this run's station key.

        with StationProcess(bootstrap, {"a-long-station-token": ["4B"]}, users_file=path) as station:
            station.url   # http://127.0.0.1:PORT
    """

    name = "station"

    def __init__(self, bootstrap: str, tokens: dict[str, object], port: int = 0,
                 env: dict[str, str] | None = None, log_path: str | os.PathLike[str] | None = None,
                 export: bool = False, users_file: str | os.PathLike[str] | None = None) -> None:
        super().__init__(bootstrap, port, env, log_path, ["--export"] if export else [])
        self.tokens = tokens
        self.export = export
        self.users_file = users_file

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.users_file:
            env["VITALSTREAM_STATION_USERS_FILE"] = str(self.users_file)
        env["VITALSTREAM_STATION_TOKENS"] = orjson.dumps(self.tokens).decode()
        env["VITALSTREAM_STATION_PORT"] = str(self.port)
        env.pop("VITALSTREAM_STATION_TOKENS_FILE", None)
        return env

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)
