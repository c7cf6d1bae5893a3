"""A real Prometheus for integration tests, on a free loopback port, scraping one target every second."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DEADLINE_S = 90.0  # for Prometheus to start, scrape and answer; only ever waited on, never asserted


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(found, os.X_OK):
        message = ("the prometheus server is not installed (Debian package `prometheus`, binary "
                   "/usr/bin/prometheus); .ci/run installs it")
        if os.environ.get("CI") == "true":
            pytest.fail(message + ", yet it is missing under CI")  # CI must not skip this silently
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """A real Prometheus on a loopback port, scraping one target every second, storing under ``tmp``."""

    def __init__(self, binary: str, tmp: Path, target: str) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: riskmon\n    static_configs:\n"
            f"      - targets: ['{target}']\n")
        self.log_path = tmp / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    def value(self, expr: str) -> float | None:
        """The single sample ``expr`` evaluates to now, or None (not scraped yet, or not up)."""
        try:
            answer = self.query(expr)
        except OSError:
            return None  # not listening yet
        result = answer["data"]["result"]
        if len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def wait_until(prometheus: PrometheusServer, what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if prometheus.process.poll() is not None:
            pytest.fail(f"prometheus exited with {prometheus.process.returncode}:\n{prometheus.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"prometheus never showed {what} within {DEADLINE_S} s; log:\n{prometheus.log()}")
        time.sleep(0.2)
