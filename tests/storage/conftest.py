"""A real influxd (Debian's ``influxdb`` package, 1.x) on a spare loopback port with a temp data dir."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class InfluxServer:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, text: str, database: str | None = None) -> dict:
        parameters = {"q": text, "epoch": "ns"}
        if database:
            parameters["db"] = database
        request = urllib.request.Request(
            f"{self.url}/query", data=urllib.parse.urlencode(parameters).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            import json

            return json.loads(response.read())


@pytest.fixture(scope="session")
def influxd(
    debian_binary: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InfluxServer]:
    binary = debian_binary("influxd", "influxdb")
    root: Path = tmp_path_factory.mktemp("influxd")
    http_port, rpc_port = _free_port(), _free_port()
    config = root / "influxdb.conf"
    config.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""
    )
    log = (root / "influxd.log").open("wb")
    process = subprocess.Popen([binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    server = InfluxServer(f"http://127.0.0.1:{http_port}")
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=1):
                break
        except (urllib.error.URLError, ConnectionError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                message = f"influxd did not start: {(root / 'influxd.log').read_text()[-500:]}"
                if in_ci():
                    pytest.fail(message, pytrace=False)
                pytest.skip(message)
            time.sleep(0.1)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
