"""``hftkit bench sim`` rows: what the simulator's market-data push costs, measured from outside.

The simulator runs as users run it, in its own process: a ``Simulator`` replaying the recorded
USD-M BTCUSDT day at ``speed: max``. One plain WebSocket client (picows, which spends far less
per frame than the server) subscribes to ``btcusdt@depth@0ms`` + ``btcusdt@trade`` on the
combined ``/public/stream`` path and only counts frames. The simulator's CPU comes from
``/proc/<pid>/stat`` (user + system ticks) over the same window, so the figure is the server's
whole cost per message sent: replay, matching-engine book, encode, framing, socket writes.

The same run samples the simulator's RSS once a second after the warm-up (a minute: books, the
replay's pass cache and the text caches filled) for ten minutes (quick: seconds), for the memory
row: flat within 10 MiB.

A last row starts the same simulator with no client and reports its CPU as a share of one core:
at speed max a driver with nobody attached waits for a client instead of spinning.

``python -m hftkit.bench.sim_stream serve [--profile FILE]`` is the child: it prints one JSON
line with the URLs, then serves until SIGTERM (with ``--profile`` it writes cProfile stats
first, for finding where the time goes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from hftkit.bench.harness import BenchOptions, BenchResult, compare

PEERS: tuple[str, ...] = ()

SYMBOL = "BTCUSDT"
STREAMS = ("btcusdt@depth@0ms", "btcusdt@trade")
MESSAGES_TARGET = 50_000.0
CPU_PER_MESSAGE_TARGET_US = 20.0
IDLE_TARGET_SHARE = 0.05  # "near zero": under 5 % of one core
MEMORY_TARGET_MIB = 10.0  # RSS flat within this over a ten-minute run at full speed
MEMORY_WINDOW_S = 600.0
MEMORY_WARMUP_S = 60.0  # books, the pass cache and the text caches are full by then
RSS_SAMPLE_S = 1.0
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_START_TIMEOUT_S = 60.0


def child_config() -> Any:
    """USD-M BTCUSDT replayed from the recording as fast as the simulator can go."""
    from hftkit.sim.config import BINANCE_USDM, config_from_mapping

    return config_from_mapping(
        {"source": "replay", "speed": "max", "loop": True, "venues": {BINANCE_USDM: {"symbols": [SYMBOL]}}},
        "<bench sim stream>",
    )


async def _serve(profile: str | None) -> None:
    """Run the simulator until SIGTERM; the first stdout line is the connection line."""
    from hftkit.sim.runner import Simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    simulator = Simulator(child_config())
    await simulator.start()
    sys.stdout.write(json.dumps({"urls": simulator.urls, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        await stop.wait()
    finally:
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        await simulator.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def _start_child(profile: str | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    command = [sys.executable, "-m", "hftkit.bench.sim_stream", "serve"]
    if profile:
        command += ["--profile", profile]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.kill()
        raise RuntimeError("simulator child exited before printing its URLs")
    return child, json.loads(line)


def _stop_child(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def _count_frames(url: str, warmup_s: float, seconds: float, pid: int) -> dict[str, float]:
    """Connect, let the stream warm up, then count frames and the child's CPU over ``seconds``."""
    import picows

    counter = {"frames": 0, "bytes": 0}

    class Counter(picows.WSListener):
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type == picows.WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())
                return
            if frame.msg_type == picows.WSMsgType.TEXT:
                counter["frames"] += 1
                counter["bytes"] += frame.payload_size

    transport, _ = await picows.ws_connect(Counter, url, max_frame_size=1 << 24)
    try:
        await asyncio.sleep(warmup_s)
        frames0, bytes0, cpu0, wall0 = counter["frames"], counter["bytes"], cpu_seconds(pid), time.monotonic()
        rss_start = rss_peak = rss_mib(pid)
        deadline = wall0 + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(RSS_SAMPLE_S, left))
            rss_peak = max(rss_peak, rss_mib(pid))
        frames1, bytes1, cpu1, wall1 = counter["frames"], counter["bytes"], cpu_seconds(pid), time.monotonic()
        rss_end = rss_mib(pid)
    finally:
        transport.disconnect()
    return {
        "frames": frames1 - frames0,
        "bytes": bytes1 - bytes0,
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "rss_start_mib": rss_start,
        "rss_peak_mib": rss_peak,
        "rss_end_mib": rss_end,
    }


def rss_mib(pid: int) -> float:
    """Resident set size of a process (``/proc/<pid>/status`` VmRSS), MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure_push(seconds: float, warmup_s: float, profile: str | None = None) -> dict[str, float]:
    child, line = _start_child(profile)
    try:
        url = f"{line['urls']['binance_usdm_ws'].removesuffix('/ws')}/stream?streams={'/'.join(STREAMS)}"
        return asyncio.run(_count_frames(url, warmup_s, seconds, int(line["pid"])))
    finally:
        _stop_child(child)


def measure_idle(seconds: float, warmup_s: float) -> dict[str, float]:
    child, line = _start_child()
    try:
        pid = int(line["pid"])
        time.sleep(warmup_s)
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = cpu_seconds(pid), time.monotonic()
    finally:
        _stop_child(child)
    return {"cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0}


def run(options: BenchOptions) -> list[BenchResult]:
    """Push, CPU and memory from one run (ten minutes after a minute's warm-up; quick: 3 s), idle apart."""
    seconds, warmup_s = (2.0, 1.0) if options.quick else (MEMORY_WINDOW_S, MEMORY_WARMUP_S)
    push = measure_push(seconds, warmup_s)
    idle = measure_idle(5.0 if options.quick else 10.0, 1.0 if options.quick else 3.0)
    rate = push["frames"] / push["wall_s"]
    cpu_us = push["cpu_s"] * 1e6 / max(1.0, push["frames"])
    share = idle["cpu_s"] / idle["wall_s"]
    growth = push["rss_peak_mib"] - push["rss_start_mib"]
    return [
        compare(
            "simulator stream push: messages/s received (depth@0ms + trade, speed max)",
            round(rate),
            "msg/s",
            target=f">= {MESSAGES_TARGET:,.0f} msg/s",
            met=rate >= MESSAGES_TARGET,
            seconds=round(push["wall_s"], 2),
            frames=int(push["frames"]),
            mean_frame_bytes=round(push["bytes"] / max(1.0, push["frames"])),
            simulator_cpu_share=round(push["cpu_s"] / push["wall_s"], 2),
        ),
        compare(
            "simulator stream push: simulator CPU per message sent",
            round(cpu_us, 1),
            "us/msg",
            target=f"<= {CPU_PER_MESSAGE_TARGET_US:g} us/msg",
            met=cpu_us <= CPU_PER_MESSAGE_TARGET_US,
            cpu_s=round(push["cpu_s"], 2),
        ),
        compare(
            "simulator memory at full speed: RSS growth after warm-up (one subscriber)",
            round(growth, 1),
            "MiB",
            target=f"<= {MEMORY_TARGET_MIB:g} MiB over {MEMORY_WINDOW_S / 60:g} minutes",
            met=growth <= MEMORY_TARGET_MIB and push["wall_s"] >= MEMORY_WINDOW_S * 0.99,
            window_s=round(push["wall_s"]),
            warmup_s=warmup_s,
            rss_start_mib=round(push["rss_start_mib"], 1),
            rss_peak_mib=round(push["rss_peak_mib"], 1),
            rss_end_mib=round(push["rss_end_mib"], 1),
        ),
        compare(
            "simulator idle CPU (no client, speed max)",
            round(100 * share, 1),
            "% of one core",
            target=f"near zero (< {100 * IDLE_TARGET_SHARE:g} %)",
            met=share < IDLE_TARGET_SHARE,
            seconds=round(idle["wall_s"], 2),
        ),
    ]


def main(argv: list[str]) -> int:
    """Child mode (``serve``), or ``push [seconds]`` to print the push figures as JSON."""
    if argv[:1] == ["serve"]:
        profile = argv[argv.index("--profile") + 1] if "--profile" in argv else None
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(profile))
        return 0
    if argv[:1] == ["push"]:
        seconds = float(argv[1]) if len(argv) > 1 and not argv[1].startswith("--") else 10.0
        profile = argv[argv.index("--profile") + 1] if "--profile" in argv else None
        warmup_s = float(argv[argv.index("--warmup") + 1]) if "--warmup" in argv else 3.0
        figures = measure_push(seconds, warmup_s, profile)
        figures["msg_per_s"] = figures["frames"] / figures["wall_s"]
        figures["cpu_us_per_msg"] = figures["cpu_s"] * 1e6 / max(1.0, figures["frames"])
        print(json.dumps(figures))
        return 0
    if argv[:1] == ["idle"]:
        print(json.dumps(measure_idle(float(argv[1]) if len(argv) > 1 else 5.0, 3.0)))
        return 0
    print(
        "usage: python -m hftkit.bench.sim_stream serve [--profile F] | push [S] [--warmup W] | idle [S]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
