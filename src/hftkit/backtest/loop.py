"""An asyncio event loop on a simulated clock, driven step by step by the backtest.

Why a loop of our own: the trading engine is an asyncio shell (order sends are tasks, strategy
timers are ``loop.call_later``, the gateway bounds every request with ``asyncio.timeout``). A
backtest must run that very code, with simulated time, and must be deterministic and fast. This
loop keeps the ready queue and a timer heap like any loop, but:

* ``time()`` is the ``SimulatedClock``: nothing ever sleeps; the driver moves the clock to the
  next data event or the next timer, whichever comes first (``advance_to``);
* timers with the same due time fire in the order they were set (a sequence number breaks
  ties), so a run is a pure function of its inputs;
* there is no selector: sockets, subprocesses, signals and executors are refused
  (``NotImplementedError``), so a backtest cannot reach the network by accident.

The driver runs everything due at a time with ``advance_to(ns)``; ``run_until_complete`` runs a
coroutine to its end in simulated time (start and stop of the engine).

Speed: ``schedule_ns`` is the simulated venue's way to defer a call (a delivery after a latency).
It shares the sequence numbers with ``call_at_ns`` (due calls of both kinds run in one (due,
sequence) order, so the order of everything is the same), but keeps the callback and its
arguments in a heap entry of its own: no ``asyncio.TimerHandle``, no context copy, nothing to
cancel, and a heap of a few entries (deliveries in flight) rather than the timer heap, which
holds every request's cancelled timeout until it is compacted. The venue defers a few calls per
market event, so this is most of what a backtest schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, TypeVarTuple

from hftkit.core.clock import SimulatedClock

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from _typeshed import FileDescriptorLike

__all__ = ["SimulatedLoop", "SimulationStalledError"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")
_NS = 1_000_000_000
_TimerEntry = tuple[int, int, asyncio.TimerHandle]  # (due ns, sequence, handle)
_ScheduledEntry = tuple[int, int, "Callable[..., object]", tuple[Any, ...]]  # (due, sequence, call, args)


class _Handle(asyncio.Handle):
    """``asyncio.Handle`` as a loop out of debug mode builds it, without asking the loop for
    its debug flag on every call (the loop already knows it is off)."""

    __slots__ = ()

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None,
    ) -> None:
        self._context = context if context is not None else contextvars.copy_context()
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None


class _TimerHandle(asyncio.TimerHandle):
    """``asyncio.TimerHandle`` built the same lean way (see ``_Handle``)."""

    __slots__ = ()

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None,
    ) -> None:
        self._context = context if context is not None else contextvars.copy_context()
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None
        self._when = when
        self._scheduled = False


class SimulationStalledError(RuntimeError):
    """The simulation cannot go on: ``run_until_complete`` waits on something nothing can finish,
    or callbacks keep running at one instant without simulated time ever moving."""


class SimulatedLoop(asyncio.AbstractEventLoop):
    """See the module docstring. ``clock.monotonic_ns()`` is the loop's time, in nanoseconds."""

    def __init__(
        self, clock: SimulatedClock | None = None, *, max_callbacks_per_instant: int = 500_000
    ) -> None:
        self.clock = clock if clock is not None else SimulatedClock()
        #: the loop's time in nanoseconds: the clock's own reading, bound once (read by every
        #: delivery and every venue call, so one Python call each, not two)
        self.now_ns: Callable[[], int] = self.clock.monotonic_ns
        self._ready: deque[asyncio.Handle] = deque()
        self._timers: list[_TimerEntry] = []  # ``call_at_ns``: cancellable handles
        self._scheduled: list[_ScheduledEntry] = []  # ``schedule_ns``: calls never cancelled
        self._sequence = itertools.count()
        self._cancelled_timers = 0
        self._closed = False
        self._running = False
        self._debug = False
        self._exception_handler: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None
        self._task_factory: Any = None
        self.errors: list[dict[str, Any]] = []  # unhandled exceptions reported to the loop
        #: callbacks one instant of simulated time may run before the run is declared stuck
        self.max_callbacks_per_instant = max_callbacks_per_instant
        self._instant_ns = -1
        self._instant_callbacks = 0
        self._active = False  # the thread's running loop for a whole run (see ``active``)

    # time ------------------------------------------------------------------------------------
    def time(self) -> float:
        return self.clock.monotonic_ns() / _NS

    # scheduling ------------------------------------------------------------------------------
    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = (asyncio.Handle if self._debug else _Handle)(callback, args, self, context)
        self._ready.append(handle)
        return handle

    call_soon_threadsafe = call_soon  # one thread: a backtest has no other

    def call_later(
        self,
        delay: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        due = self.clock.monotonic_ns() + max(0, round(delay * _NS))
        return self.call_at_ns(due, callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at_ns(round(when * _NS), callback, *args, context=context)

    def call_at_ns(
        self,
        when_ns: int,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """A timer due at ``when_ns`` simulated nanoseconds (never before now)."""
        now = self.clock.monotonic_ns()
        if when_ns < now:
            when_ns = now
        handle = (asyncio.TimerHandle if self._debug else _TimerHandle)(
            when_ns / _NS, callback, args, self, context
        )
        heapq.heappush(self._timers, (when_ns, next(self._sequence), handle))
        return handle

    def schedule_ns(self, when_ns: int, callback: Callable[[*_Ts], object], *args: *_Ts) -> None:
        """``callback(*args)`` at ``when_ns`` (never before now), in the same order as
        ``call_at_ns`` timers, in the driver's context; nothing to cancel (see the module
        docstring). An exception it raises goes to the loop's exception handler, as a handle's."""
        now = self.clock.monotonic_ns()
        heapq.heappush(
            self._scheduled, (when_ns if when_ns > now else now, next(self._sequence), callback, args)
        )

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._cancelled_timers += 1
        if self._cancelled_timers > 256 and self._cancelled_timers * 2 > len(self._timers):
            # in place: a running ``advance_to`` holds this very list
            self._timers[:] = [entry for entry in self._timers if not entry[2].cancelled()]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    def next_timer_ns(self) -> int | None:
        """When the earliest live timer is due (None: no timer)."""
        timers = self._timers
        while timers and timers[0][2].cancelled():
            heapq.heappop(timers)
            self._cancelled_timers = max(0, self._cancelled_timers - 1)
        scheduled = self._scheduled
        if not timers:
            return scheduled[0][0] if scheduled else None
        return min(timers[0][0], scheduled[0][0]) if scheduled else timers[0][0]

    # driving ---------------------------------------------------------------------------------
    def run_ready(self) -> None:
        """Run ready callbacks until none is left (callbacks may add more at the same time)."""
        ready = self._ready
        if not ready:
            return
        previous = self if self._active else asyncio.events._get_running_loop()
        if previous is not self:
            asyncio.events._set_running_loop(self)
        now = self.clock.monotonic_ns()
        if now != self._instant_ns:
            self._instant_ns = now
            self._instant_callbacks = 0
        count = 0
        try:
            while ready:
                handle = ready.popleft()
                if not handle.cancelled():
                    handle._run()
                count += 1
                if not count & 0xFFFF:
                    self._check_instant(count)
                    count = 0
        finally:
            if previous is not self:
                asyncio.events._set_running_loop(previous)
        if count:
            self._check_instant(count)

    @contextlib.contextmanager
    def active(self) -> Iterator[SimulatedLoop]:
        """This loop is the thread's running loop for the block (a run's driver: saves switching
        it on and off around every batch of callbacks); the previous one is restored after."""
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        self._active = True
        try:
            yield self
        finally:
            self._active = False
            asyncio.events._set_running_loop(previous)

    def _check_instant(self, count: int) -> None:
        self._instant_callbacks += count
        if self._instant_callbacks > self.max_callbacks_per_instant:
            raise SimulationStalledError(
                f"{self._instant_callbacks} callbacks ran at one instant of simulated time "
                f"({self._instant_ns} ns) without the clock moving: a feedback loop (a strategy "
                "re-quoting on its own orders with zero latency?); configure latency"
            )

    def advance_to(self, until_ns: int) -> None:
        """Run everything due up to ``until_ns`` in time order, then leave the clock there."""
        clock = self.clock
        if self._ready:
            self.run_ready()
        timers, scheduled = self._timers, self._scheduled
        if (not timers or timers[0][0] > until_ns) and (not scheduled or scheduled[0][0] > until_ns):
            if until_ns > clock.monotonic_ns():
                clock.set(until_ns)
            return
        previous = self if self._active else asyncio.events._get_running_loop()
        if previous is not self:
            asyncio.events._set_running_loop(self)
        try:
            self._run_due(until_ns)
        finally:
            if previous is not self:
                asyncio.events._set_running_loop(previous)
        if until_ns > clock.monotonic_ns():
            clock.set(until_ns)

    def _run_due(self, until_ns: int) -> None:
        """The timers and scheduled calls due by ``until_ns``, merged in (due, sequence) order,
        each followed by the ready callbacks it made (the loop is the running one here)."""
        clock = self.clock
        timers, scheduled = self._timers, self._scheduled
        ready = self._ready
        pop = heapq.heappop
        while True:
            # the earlier head of the two heaps, by (due, sequence): sequence numbers are unique
            if scheduled and (
                not timers
                or scheduled[0][0] < timers[0][0]
                or (scheduled[0][0] == timers[0][0] and scheduled[0][1] < timers[0][1])
            ):
                if scheduled[0][0] > until_ns:
                    return
                when, _, callback, args = pop(scheduled)
            elif timers:
                if timers[0][0] > until_ns:
                    return
                when, _, handle = pop(timers)
                if handle._cancelled:
                    self._cancelled_timers = max(0, self._cancelled_timers - 1)
                    continue
                if when > clock.monotonic_ns():
                    clock.set(when)
                ready.append(handle)
                self.run_ready()
                continue
            else:
                return
            now = clock.monotonic_ns()
            if when > now:
                clock.set(when)
                now = when
            if now != self._instant_ns:
                self._instant_ns = now
                self._instant_callbacks = 0
            try:
                callback(*args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as error:
                self.call_exception_handler(
                    {"message": f"Exception in callback {callback!r}", "exception": error}
                )
            self._instant_callbacks += 1
            if self._instant_callbacks > self.max_callbacks_per_instant:
                self._check_instant(0)
            if ready:
                self.run_ready()

    def run_until_complete(self, future: Coroutine[Any, Any, _T] | asyncio.Future[_T]) -> _T:  # type: ignore[override]
        """Run ``future`` to its end, advancing simulated time to each timer it waits for."""
        if self._closed:
            raise RuntimeError("the loop is closed")
        task = asyncio.ensure_future(future, loop=self)
        self._running = True
        try:
            while not task.done():
                self.run_ready()
                if task.done():
                    break
                due = self.next_timer_ns()
                if due is None:
                    task.cancel()
                    self.run_ready()
                    raise SimulationStalledError("nothing left to run: the awaited work can never finish")
                self.advance_to(due)
        finally:
            self._running = False
        return task.result()

    # futures and tasks ---------------------------------------------------------------------------
    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        if self._task_factory is not None:
            return self._task_factory(self, coro)
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def set_task_factory(self, factory: Any) -> None:
        self._task_factory = factory

    def get_task_factory(self) -> Any:
        return self._task_factory

    # state ---------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()
        self._timers.clear()
        self._scheduled.clear()

    async def shutdown_asyncgens(self) -> None:
        return None

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        return None

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled

    # errors ----------------------------------------------------------------------------------------
    def set_exception_handler(self, handler: Any) -> None:
        self._exception_handler = handler

    def get_exception_handler(self) -> Any:
        return self._exception_handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.errors.append(context)
        _log.error(
            "backtest loop: %s", context.get("message", "unhandled error"), exc_info=context.get("exception")
        )

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exception_handler is None:
            self.default_exception_handler(context)
        else:
            self._exception_handler(self, context)

    # what a backtest must never do -------------------------------------------------------------------
    def _refused(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("a backtest has no sockets, subprocesses, signals or threads")

    # the generic ones spelled out, so their signatures are the standard library's
    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*_Ts], _T], *args: *_Ts
    ) -> asyncio.Future[_T]:
        self._refused()

    def add_reader(self, fd: FileDescriptorLike, callback: Callable[[*_Ts], Any], *args: *_Ts) -> None:
        self._refused()

    def add_writer(self, fd: FileDescriptorLike, callback: Callable[[*_Ts], Any], *args: *_Ts) -> None:
        self._refused()

    def add_signal_handler(self, sig: int, callback: Callable[[*_Ts], object], *args: *_Ts) -> None:
        self._refused()

    run_forever = _refused
    stop = _refused
    set_default_executor = _refused
    getaddrinfo = _refused
    getnameinfo = _refused
    create_connection = _refused
    create_server = _refused
    create_datagram_endpoint = _refused
    create_unix_connection = _refused
    create_unix_server = _refused
    connect_accepted_socket = _refused
    sendfile = _refused
    start_tls = _refused
    remove_reader = _refused
    remove_writer = _refused
    sock_recv = _refused
    sock_recv_into = _refused
    sock_sendall = _refused
    sock_connect = _refused
    sock_accept = _refused
    sock_recvfrom = _refused
    sock_recvfrom_into = _refused
    sock_sendto = _refused
    sock_sendfile = _refused
    subprocess_exec = _refused
    subprocess_shell = _refused
    remove_signal_handler = _refused
    connect_read_pipe = _refused
    connect_write_pipe = _refused
