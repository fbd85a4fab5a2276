"""``hftkit bench soak``: the node's memory over a long run against the simulator in another process.

Three processes, so that each RSS is its own: ``hftkit sim`` (replaying the recorded USD-M
BTCUSDT market as Binance USD-M and Thalex BTC-PERPETUAL), ``hftkit run`` (the built-in node:
the market maker on Thalex hedged on Binance USD-M, risk gate, tracker) configured as a remote
venue at the simulator's URLs, and this one, which reads both RSS figures from
``/proc/<pid>/status`` once a second. Growth is judged after a warm-up (connections, books,
histograms and caches allocated): the target is flat within 5 MiB over ten minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from hftkit.bench.harness import BenchOptions, BenchResult, compare

SOAK_SECONDS = 600.0
SOAK_WARMUP_S = 60.0
QUICK_SECONDS = 20.0
QUICK_WARMUP_S = 8.0
TARGET_GROWTH_MIB = 5.0
SAMPLE_INTERVAL_S = 1.0
TEMPLATE = Path(__file__).resolve().parent.parent / "app" / "templates" / "default.yaml"
_START_TIMEOUT_S = 60.0
PEERS: tuple[str, ...] = ()


# processes and samples -------------------------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    """Resident set size of a process in MiB (``VmRSS``), or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_v = sum(v for _, v in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return 0.0
    return 60.0 * sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread


def _first_json_line(stream: IO[str], what: str) -> dict[str, Any]:
    """The first line of a child's stdout that is a JSON object (the child bounds its own start)."""
    for line in stream:
        line = line.strip()
        if line.startswith("{"):
            value: dict[str, Any] = json.loads(line)
            return value
    raise RuntimeError(f"{what} ended without a JSON line")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def node_config(connection: dict[str, Any]) -> dict[str, Any]:
    """The built-in node's config with its two venues aimed at a simulator in another process.

    They are ``testnet`` venues with every URL overridden: the node wires them as remote venues,
    exactly as it would a real testnet. The keys come from the environment (``${VAR}``).
    """
    config: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    config.pop("simulator", None)
    urls, credentials = connection["urls"], connection["credentials"]
    rest = urls["binance_rest"]
    config["venues"] = {
        "binance_usdm": {
            "kind": "binance",
            "market": "usdm",
            "environment": "testnet",
            "api_key": "${HFTKIT_SOAK_API_KEY}",
            "api_secret": "${HFTKIT_SOAK_API_SECRET}",
            "rest_url": rest,
            "stream_url": "ws" + rest.removeprefix("http"),
            "websocket_api_url": urls["binance_usdm_ws_api"],
        },
        "thalex": {
            "kind": "thalex",
            "environment": "testnet",
            "key_id": credentials["thalex_key_id"],
            "private_key_file": credentials["thalex_private_key_file"],
            "url": urls["thalex_ws"],
        },
    }
    config["metrics"] = {"enabled": False}
    return config


def soak(seconds: float, warmup_s: float) -> dict[str, Any]:
    """Simulator and node as two processes; the node trades ``seconds``; both RSS sampled each second."""
    python = sys.executable
    sim = subprocess.Popen(
        [
            *(python, "-m", "hftkit.app.cli", "sim", "--venues", "binance-usdm,thalex"),
            *("--symbols", "BTCUSDT,BTC-PERPETUAL", "--replay", "--seed", "7", "--port", "0"),
            *("--thalex-port", "0", "--control-port", "0", "--log-level", "WARNING"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    node: subprocess.Popen[str] | None = None
    try:
        assert sim.stdout is not None
        connection = _first_json_line(sim.stdout, "hftkit sim")
        with tempfile.TemporaryDirectory(prefix="hftkit-soak-") as directory:
            config_file = Path(directory) / "node.yaml"
            config_file.write_text(yaml.safe_dump(node_config(connection)))
            credentials = connection["credentials"]
            environment = dict(
                os.environ,
                HFTKIT_SOAK_API_KEY=credentials["binance_api_key"],
                HFTKIT_SOAK_API_SECRET=credentials["binance_secret_key"],
            )
            node = subprocess.Popen(
                [
                    *(python, "-m", "hftkit.app.cli", "run", "--config", str(config_file)),
                    *("--seconds", f"{seconds:g}", "--json"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=environment,
                text=True,
            )
            node_samples, sim_samples = _sample(node, sim, seconds + _START_TIMEOUT_S)
            assert node.stdout is not None
            summary = _first_json_line(node.stdout, "hftkit run")
            returncode = node.wait(30)
    finally:
        if node is not None:
            _stop(node)
        _stop(sim)
    verdict = summary.get("verdict") or {}
    return {
        "summary": {
            "exit_code": returncode,
            "passed": bool(verdict.get("passed")),
            "problems": list(verdict.get("problems") or [])[:5],
            "stopped_by": summary.get("stopped_by"),
            "orders_sent": sum(item.get("orders_sent", 0) for item in summary.get("instruments", [])),
            "fills": sum(item.get("fills", 0) for item in summary.get("instruments", [])),
        },
        "node": _figures(node_samples, warmup_s),
        "sim": _figures(sim_samples, warmup_s),
    }


def _sample(
    node: subprocess.Popen[str], sim: subprocess.Popen[str], limit_s: float
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(seconds since the node started, MiB) of both processes, once a second, until the node exits."""
    begin = time.monotonic()
    node_samples: list[tuple[float, float]] = []
    sim_samples: list[tuple[float, float]] = []
    tick = 0
    while node.poll() is None and (elapsed := time.monotonic() - begin) < limit_s:
        node_rss, sim_rss = rss_mib(node.pid), rss_mib(sim.pid)
        if node_rss is not None:
            node_samples.append((elapsed, node_rss))
        if sim_rss is not None:
            sim_samples.append((elapsed, sim_rss))
        tick += 1
        time.sleep(max(0.0, begin + tick * SAMPLE_INTERVAL_S - time.monotonic()))
    return node_samples, sim_samples


def _figures(samples: Sequence[tuple[float, float]], warmup_s: float) -> dict[str, float]:
    after = [sample for sample in samples if sample[0] >= warmup_s]
    if not after:
        raise RuntimeError(f"no RSS sample after the {warmup_s:g}s warm-up")
    warm, final = after[0][1], after[-1][1]
    return {
        "start_mib": samples[0][1],
        "warm_mib": warm,
        "final_mib": final,
        "peak_mib": max(value for _, value in after),
        "growth_mib": final - warm,
        "slope_mib_per_min": slope_per_minute(after),
        "samples": float(len(samples)),
        "seconds": samples[-1][0],
    }


def run(options: BenchOptions) -> list[BenchResult]:
    seconds, warmup = (QUICK_SECONDS, QUICK_WARMUP_S) if options.quick else (SOAK_SECONDS, SOAK_WARMUP_S)
    measured = soak(seconds, warmup)
    node, sim, summary = measured["node"], measured["sim"], measured["summary"]
    minutes = (node["seconds"] - warmup) / 60
    flat = node["growth_mib"] <= TARGET_GROWTH_MIB and summary["passed"]
    return [
        compare("soak: node RSS after warm-up", node["warm_mib"], "MiB", summary=summary, node=node, sim=sim),
        compare("soak: node RSS at the end", node["final_mib"], "MiB"),
        compare(
            f"soak: node RSS growth after warm-up ({minutes:.1f} min)",
            node["growth_mib"],
            "MiB",
            target=f"<= {TARGET_GROWTH_MIB:g} MiB after a {warmup:g}s warm-up, verdict passed",
            met=flat,
        ),
        compare("soak: node RSS slope after warm-up", node["slope_mib_per_min"], "MiB/min"),
        compare("soak: simulator RSS growth after warm-up (its own process)", sim["growth_mib"], "MiB"),
        compare("soak: simulator RSS slope after warm-up", sim["slope_mib_per_min"], "MiB/min"),
        compare("soak: orders sent by the node", float(summary["orders_sent"]), "orders"),
        # the table must say whether the node's own verdict held: growth alone is half the target
        compare(
            "soak: node exit code (0: verdict passed)",
            float(summary["exit_code"]),
            "",
            target="0",
            met=summary["exit_code"] == 0 and summary["passed"],
        ),
    ]
