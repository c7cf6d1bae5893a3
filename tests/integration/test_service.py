"""The live service end to end, on real components: `riskmon run` in its own process, a feed over TCP, the
operator commands as a user types them, an OrderGate in this process, a real Prometheus, the audit trail.

`riskmon run` attaches to this session's Ray (`--address`), so this process can hold an OrderGate on the
service's supervisor. Every operator command is a subprocess of the installed CLI with only PATH and HOME
set, as from a second terminal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import ray
import yaml

from driver.gate import OrderGate
from riskcore.config import parse_config
from riskcore.events import Fill
from riskcore.framing import send_frame
from riskcore.gate import Order, Reason
from riskcore.wire import encode_fills, encode_ticks
from supervisor.deploy import get_supervisor
from tests.integration.prometheus_server import PrometheusServer, free_port, prometheus_binary, wait_until

pytestmark = pytest.mark.ray

NS = 1_000_000_000
T0 = 1_704_898_800 * NS  # 2024-01-10T15:00:00Z
START_TIMEOUT_S = 120.0  # waited on, never asserted

CONFIG: dict[str, Any] = {
    "symbols": {"EURUSD": {"multiplier": 1}},
    "portfolios": {"desk": {"account_limits": {"drawdown_warning": 0.1, "max_daily_drawdown": 0.2}}},
    "firm": {"limits": {"recovery_cooldown_seconds": 6}},  # an operator's global halt may be reset after 6 s
    "accounts": [
        {"id": "a1", "portfolio": "desk", "balance": 1_000_000,
         "positions": {"EURUSD": {"qty": 1_000_000, "avg_price": 1.25}}},
        {"id": "b1", "portfolio": "desk", "balance": 1_000_000,
         "positions": {"EURUSD": {"qty": 2_000_000, "avg_price": 1.25}}},
    ],
    "gate": {"max_staleness_ms": 2000, "poll_interval_ms": 200},
}


def riskmon(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the CLI as an operator does from a second terminal: the installed ``riskmon`` command, with a
    clean environment (only ``PATH`` and ``HOME``: nothing of this session's Ray settings); the caller checks
    its exit status."""
    command = shutil.which("riskmon") or str(Path(sys.executable).with_name("riskmon"))
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}
    return subprocess.run([command, *args], capture_output=True, text=True, env=clean, cwd=Path.home(),
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def test_service_when_run_takes_a_tcp_feed_shows_status_obeys_operators_and_is_scraped(
        ray_session: None, tmp_path: Path) -> None:
    config_path = tmp_path / "service.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    address = ray.get_runtime_context().gcs_address
    name = f"svc-{int(time.time())}"
    trail = tmp_path / "audit.jsonl"
    metrics_port = free_port()
    # Operator commands find the service through the address it records in its state directory.
    attach = ("--state-dir", str(tmp_path / "state"), "--name", name)
    service = subprocess.Popen(
        [sys.executable, "-m", "riskmon.cli", "run", "--config", str(config_path), "--address", address,
         "--name", name, "--state-dir", str(tmp_path / "state"), "--listen", "127.0.0.1:0",
         "--metrics", f"127.0.0.1:{metrics_port}", "--audit", str(trail)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    prometheus = None
    gate = None
    try:
        line = service.stdout.readline() if service.stdout else ""  # the service says where it listens
        match = re.search(r"feeds on 127\.0\.0\.1:(\d+)", line)
        assert match, (line, service.stderr.read() if service.poll() is not None and service.stderr else "")
        prometheus = PrometheusServer(prometheus_binary(), tmp_path, f"127.0.0.1:{metrics_port}")

        # A feed connects over TCP: quotes (one crossed, one of an unknown symbol), then a fill.
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=30) as feed:
            ticks = send_frame(feed, encode_ticks(
                "feed-1", ["EURUSD", "GBPUSD"], [0, 0, 1, 0], [1.25, 1.26, 1.3, 1.125],
                [1.2578125, 1.25, 1.31, 1.1328125], [T0, T0 + NS, T0 + NS, T0 + 2 * NS], [0, 1, 2, 3]))
            sale = Fill("a1", "EURUSD", -500_000.0, 1.125, T0 + 3 * NS, fill_id="f1")
            fills = send_frame(feed, encode_fills([sale]))
            junk = send_frame(feed, msgpack.packb({"v": 1, "type": "ticks", "stream": 7}))
        assert ticks["ok"]
        assert ticks["accepted"] == 2
        assert sorted(r["code"] for r in ticks["refused"]) == ["crossed_quote", "unknown_symbol"]
        assert fills == {"ok": True, "accepted": 1, "refused": [], "error": None}
        assert not junk["ok"]
        assert junk["error"].startswith("bad_frame")

        # `riskmon status` shows what the feed brought: b1's drawdown engaged its breaker, a1 sold half.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            shown = riskmon("status", *attach, "--json")
            assert shown.returncode == 0, shown.stderr
            status = json.loads(shown.stdout)
            arrived = status["accounts"]["b1"]["breaker"] == "ENGAGED" and status["feeds"]
            if arrived or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["accounts"]["b1"]["breaker"] == "ENGAGED"
        assert status["accounts"]["a1"]["breaker"] == "SAFE"
        assert status["refused"] == {"crossed_quote": 1, "unknown_symbol": 1, "bad_frame": 1}
        assert next(iter(status["feeds"].values()))["frames"] == 3
        table = riskmon("status", *attach)
        assert table.returncode == 0, table.stderr
        assert "b1" in table.stdout, table.stdout
        assert "ENGAGED" in table.stdout, table.stdout

        # The global breaker, engaged from the command line, denies at an OrderGate here; reset releases it.
        gate = OrderGate(get_supervisor(name), parse_config(CONFIG).gate)
        order = Order("a1", "EURUSD", 1_000.0, 1.125)
        assert gate.wait_for(lambda g: g.check(order).allowed, 60.0), gate.check(order)
        engaged = riskmon("engage", *attach, "--global", "--operator", "ops", "--reason", "test halt")
        assert engaged.returncode == 0, engaged.stderr
        halted = (Reason.GLOBAL_HALT, Reason.REDUCE_ONLY)
        assert gate.wait_for(lambda g: g.check(order).reason in halted, 30.0)
        early = riskmon("reset", *attach, "--global", "--operator", "ops", "--reason", "too soon")
        assert early.returncode == 1, early.stdout + early.stderr
        assert "cooldown" in early.stderr, early.stderr
        # Once the 6 s cooldown has passed (a time bound of the config, not an event), reset releases it.
        cooldown = re.search(r"([0-9.]+) s of 6 s left", early.stderr)
        assert cooldown, early.stderr
        time.sleep(float(cooldown.group(1)) + 0.2)
        released = riskmon("reset", *attach, "--global", "--operator", "ops", "--reason", "all clear")
        assert released.returncode == 0, released.stderr
        assert gate.wait_for(lambda g: g.check(order).allowed, 30.0), gate.check(order)

        # A real Prometheus scrapes the service's endpoint.
        wait_until(prometheus, "b1's breaker engaged",
                   lambda: prometheus.value('riskmon_account_breaker_engaged{account="b1"}') == 1.0)
        wait_until(prometheus, "the feed's refusals",
                   lambda: prometheus.value('sum(riskmon_rejected_inputs_total)') == 3.0)

        # SIGTERM: the service stops cleanly.
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=120)
        assert service.returncode == 0, err[-3000:]
        assert "stopped" in out
    finally:
        if gate is not None:
            gate.close()
        if prometheus is not None:
            prometheus.stop()
        if service.poll() is None:
            service.kill()
            service.wait(timeout=60)

    # The audit trail verifies untouched, names the operator's actions, and fails once touched.
    verified = riskmon("audit", "verify", str(trail))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK"), verified.stdout
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    actions = [(r["kind"], r.get("action"), r.get("operator"), r.get("reason"))
               for r in records if r.get("action")]
    assert actions == [("breaker", "engage", "ops", "test halt"), ("command", "reset", "ops", "too soon"),
                       ("breaker", "reset", "ops", "all clear")]
    assert {r["kind"] for r in records} >= {"config_load", "alert", "breaker", "rejected_input"}
    data = bytearray(trail.read_bytes())
    data[len(data) // 3] ^= 0x20
    trail.write_bytes(bytes(data))
    touched = riskmon("audit", "verify", str(trail))
    assert touched.returncode == 1, touched.stdout + touched.stderr
    assert touched.stdout.startswith("BROKEN"), touched.stdout


def test_operator_command_when_no_ray_answers_at_the_address_says_so_at_once() -> None:
    port = free_port()  # nothing listens there
    shown = riskmon("status", "--address", f"127.0.0.1:{port}", timeout=60)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in shown.stderr, shown.stderr
    assert "Traceback" not in shown.stderr, shown.stderr
