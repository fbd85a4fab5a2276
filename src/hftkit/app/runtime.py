"""Process settings a latency-sensitive Python node needs, and the figures that show their effect.

uvloop for the event loop; ``gc.freeze()`` after start-up so the long-lived objects built then
(books, instruments, codecs) are never traversed again by the collector; configurable GC
thresholds; optional CPU affinity. GC collections and pause time are recorded per generation
(``gc.callbacks``) and RSS is read from ``/proc`` at scrape time, so a pause that hurts a quote
shows up beside the latency it caused.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hftkit.metrics import Counter, LatencyHistogram, MetricsRegistry

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def install_event_loop(prefer_uvloop: bool = True) -> str:
    """Use uvloop when asked and installed; returns the loop's name for the start-up line."""
    if prefer_uvloop:
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    asyncio.set_event_loop_policy(None)
    return "asyncio"


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class GcMonitor:
    """Records every collection's pause into ``gc_pause_ns{generation}`` and counts collections."""

    metrics: MetricsRegistry
    _started: dict[int, int] = field(default_factory=dict)
    # per generation, looked up once: a registry lookup is six Python calls (key building, label
    # sorting), and the histogram's ran inside the pause it then recorded
    _recorders: dict[int, tuple[LatencyHistogram, Counter]] = field(default_factory=dict)
    installed: bool = False
    deliberate: bool = False  # a collection the node runs itself (start-up): not a pause it suffered

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._callback)
            self.installed = True
        self.metrics.gauge("process_rss_bytes", "resident set size").set_function(lambda: float(rss_bytes()))
        # set when freezing (``record_freeze``): counting frozen objects walks all of them, far
        # too slow to do at every scrape or dashboard refresh
        self.metrics.gauge("gc_frozen_objects", "objects moved out of GC by gc.freeze()")

    def record_freeze(self, frozen: int) -> None:
        self.metrics.gauge("gc_frozen_objects").set(float(frozen))

    def uninstall(self) -> None:
        if self.installed:
            gc.callbacks.remove(self._callback)
            self.installed = False

    def freeze(self, freezer: Callable[[], int]) -> int:
        """Run the node's own collect-and-freeze, timed into ``gc_startup_collect_ns`` rather than
        the pause histogram: that one shows the pauses the interpreter imposed while trading."""
        started = time.perf_counter_ns()
        self.deliberate = True
        try:
            frozen = freezer()
        finally:
            self.deliberate = False
        self.metrics.histogram(
            "gc_startup_collect_ns", "the node's own collections before and as trading starts"
        ).record(time.perf_counter_ns() - started)
        self.record_freeze(frozen)
        return frozen

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if self.deliberate:
            return
        generation = int(info.get("generation", 0))
        if phase == "start":
            self._started[generation] = time.perf_counter_ns()
            return
        started = self._started.pop(generation, None)
        if started is None:
            return
        recorders = self._recorders.get(generation)
        if recorders is None:
            recorders = self._recorders[generation] = (
                self.metrics.histogram(
                    "gc_pause_ns", "time the interpreter spent in one collection", generation=generation
                ),
                self.metrics.counter("gc_collections_total", "collections", generation=generation),
            )
        recorders[0].record(max(0, time.perf_counter_ns() - started))
        recorders[1].inc()


@dataclass(frozen=True)
class RuntimeReport:
    loop: str
    gc_thresholds: tuple[int, int, int]
    frozen: int
    cpu_affinity: tuple[int, ...] | None


def apply_settings(
    *,
    gc_thresholds: tuple[int, int, int] | None = None,
    cpu_affinity: list[int] | None = None,
) -> tuple[tuple[int, int, int], tuple[int, ...] | None]:
    """GC thresholds and CPU affinity, before the node starts; returns what is in force."""
    if gc_thresholds is not None:
        gc.set_threshold(*gc_thresholds)
    affinity: tuple[int, ...] | None = None
    if cpu_affinity:
        if not hasattr(os, "sched_setaffinity"):
            raise OSError("CPU affinity is not supported on this platform")
        os.sched_setaffinity(0, set(cpu_affinity))
        affinity = tuple(sorted(os.sched_getaffinity(0)))
    threshold = gc.get_threshold()
    return (threshold[0], threshold[1], threshold[2]), affinity


def install_stop_signals(loop: asyncio.AbstractEventLoop, request_stop: Callable[[str], None]) -> list[int]:
    """SIGINT and SIGTERM call ``request_stop(name)`` (a clean stop, never a kill mid-order);
    returns the signals installed, none where the loop cannot (not the main thread, no support)."""
    installed: list[int] = []
    for number, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
        try:
            loop.add_signal_handler(number, request_stop, name)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(number)
    return installed


def remove_stop_signals(loop: asyncio.AbstractEventLoop, installed: list[int]) -> None:
    for number in installed:
        loop.remove_signal_handler(number)


def freeze_after_start() -> int:
    """Collect once, then move every surviving object out of the collector's reach."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def freeze_started(generation: int = 1) -> int:
    """Collect the young generations only, then freeze what survives.

    For the objects made while trading starts (connections, instruments, reconciled orders):
    a full collection here stalls the first quotes for tens of milliseconds (35 ms in the
    default node), a young one for about a millisecond; what a full collection would still find
    was frozen by ``freeze_after_start`` before."""
    gc.collect(generation)
    gc.freeze()
    return gc.get_freeze_count()


__all__ = [
    "GcMonitor",
    "RuntimeReport",
    "apply_settings",
    "freeze_after_start",
    "freeze_started",
    "install_event_loop",
    "install_stop_signals",
    "remove_stop_signals",
    "rss_bytes",
]
