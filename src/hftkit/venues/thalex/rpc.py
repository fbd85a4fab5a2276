"""One JSON-RPC session over one WebSocket: request ids to futures, timeouts, the message-rate gate.

Thalex answers requests in any order and interleaves subscription pushes with the answers, so
every request gets its own id and future and nothing waits behind a slow answer (no
head-of-line blocking). The session owns no socket: the adapter attaches a ``send`` callable
after each (re)connect and detaches it when the connection is lost, which fails every request
still in flight with ``SessionLostError`` (the venue may have acted on it) and every request
still waiting for rate budget with ``NotSentError`` (the venue never saw it).

A request that times out stays remembered for a while: if its answer arrives late, it is
handed to ``on_late_response`` so that a late order acknowledgement still reaches the owner
(an order whose request timed out is settled by such events, never by re-sending it).

Outbound messages pass a token bucket sized to the session's message rate (Thalex reports it
in the result of ``private/set_cancel_on_disconnect``). Waiters are served by priority, so a
cancel overtakes queued inserts. A throttle error from the venue (code 4, or 3 for too many
pending requests) pauses all sending for ``throttle_backoff_s``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from hftkit.codec.decode import DECODE_FAILURES
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError
from hftkit.metrics import Counter, LatencyHistogram, MetricsRegistry
from hftkit.resilience import Priority, TokenBucket
from hftkit.transport.deadlines import RequestDeadlines
from hftkit.venues.thalex.codec import decode_frame, encode_request, error_from_wire
from hftkit.venues.thalex.errors import ThalexErrorCode

logger = logging.getLogger(__name__)

_NS_PER_SECOND = 1_000_000_000
_THROTTLE_CODES = frozenset({ThalexErrorCode.THROTTLE_EXCEEDED, ThalexErrorCode.TOO_MANY_PENDING_REQUESTS})

NotificationHandler = Callable[[str, msgspec.Raw, int], None]
"""Called with (channel_name, raw notification payload, receive_ns) for every push."""


class RpcTimeoutError(HftkitError, TimeoutError):
    """No answer within the request's timeout; the venue may still have acted on it."""

    def __init__(self, method: str, request_id: int, timeout_s: float) -> None:
        super().__init__(f"{method} (id {request_id}) got no answer within {timeout_s:g}s")
        self.method = method
        self.request_id = request_id


class SessionLostError(HftkitError, ConnectionError):
    """The connection dropped while the request was in flight; the venue may have acted on it."""

    def __init__(self, method: str, request_id: int, reason: str) -> None:
        super().__init__(f"{method} (id {request_id}) was in flight when the session was lost: {reason}")
        self.method = method
        self.request_id = request_id


class NotSentError(HftkitError, ConnectionError):
    """The request never left this process (no connection, or lost while waiting for rate budget)."""


class RpcProtocolError(HftkitError, ValueError):
    """An answer that does not have the shape the method promises."""


@dataclass(frozen=True)
class LateResponse:
    """The answer to a request that had already timed out (or whose caller gave up)."""

    method: str
    request_id: int
    context: Any
    result: msgspec.Raw | None
    error_code: int | None
    error_message: str
    receive_ns: int


@dataclass
class RpcStats:
    """Plain counts for tests and dashboards (latency lives in the registry's histograms)."""

    requests_sent: int = 0
    responses: int = 0
    error_responses: int = 0
    timeouts: int = 0
    late_responses: int = 0
    lost_in_flight: int = 0
    not_sent: int = 0
    unmatched_responses: int = 0
    throttled: int = 0
    rate_waits: int = 0
    notifications: int = 0
    malformed: dict[str, int] = field(default_factory=dict)


class AnswerReceiver(Protocol):
    """Where one request's answer goes: an ``asyncio.Future`` (``call``) or any object with the
    same three methods (``call_now``), which is then told synchronously, inside the frame
    callback that carried the answer: no task and no loop iteration between answer and owner."""

    def done(self) -> bool: ...

    def set_result(self, result: msgspec.Raw) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...


class _Pending:
    __slots__ = ("context", "future", "method", "sent_ns", "timer")

    def __init__(self, method: str, future: AnswerReceiver, sent_ns: int, context: Any) -> None:
        self.method = method
        self.future = future
        self.sent_ns = sent_ns
        self.context = context
        self.timer: asyncio.TimerHandle | None = None


class RpcSession:
    """Requests and answers of one logical JSON-RPC session, across reconnects."""

    def __init__(
        self,
        *,
        on_notification: NotificationHandler,
        on_late_response: Callable[[LateResponse], None] | None = None,
        venue: str = "thalex",
        metrics: MetricsRegistry | None = None,
        clock: Clock = REAL_CLOCK,
        default_timeout_s: float = 5.0,
        message_rate: float = 50.0,
        throttle_backoff_s: float = 1.0,
        late_memory: int = 4096,
    ) -> None:
        if default_timeout_s <= 0:
            raise ValueError(f"default_timeout_s must be positive, got {default_timeout_s!r}")
        if throttle_backoff_s < 0:
            raise ValueError(f"throttle_backoff_s must not be negative, got {throttle_backoff_s!r}")
        self.venue = venue
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        self.stats = RpcStats()
        self.default_timeout_s = default_timeout_s
        self.default_message_rate = message_rate
        self.throttle_backoff_s = throttle_backoff_s
        self._clock = clock
        self._on_notification = on_notification
        self._on_late_response = on_late_response
        self._send: Callable[[bytes], None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._late: OrderedDict[int, _Pending] = OrderedDict()
        self._late_memory = late_memory
        self._bucket = message_bucket(message_rate, clock, used=0)
        self._sent_this_connection = 0
        self._blocked_until_ns = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_sequence = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self._round_trips: dict[str, LatencyHistogram] = {}
        self._malformed_counters: dict[str, Counter] = {}
        self._timeouts = self.metrics.counter("thalex_rpc_timeouts_total", venue=venue)
        self._deadlines = RequestDeadlines(
            default_timeout_s, lambda request_id: self._expire(request_id, default_timeout_s)
        )
        self._throttles = self.metrics.counter("thalex_throttled_total", venue=venue)

    # -- connection ----------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return self._send is not None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def pending_contexts(self, method: str) -> list[Any]:
        """The contexts of this connection's ``method`` requests still waiting for an answer."""
        return [entry.context for entry in self._pending.values() if entry.method == method]

    @property
    def message_rate(self) -> float:
        return self._bucket.rate_per_second

    def attach(self, send: Callable[[bytes], None]) -> None:
        """A new connection: requests go out through ``send`` at the default rate until told otherwise."""
        self._send = send
        self._sent_this_connection = 0
        self._blocked_until_ns = 0
        self._bucket = message_bucket(self.default_message_rate, self._clock, used=0)

    def detach(self, reason: str) -> None:
        """The connection is gone: fail everything in flight or queued, with the right certainty."""
        self._send = None
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        for request_id, entry in pending.items():
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.future.done():
                self.stats.lost_in_flight += 1
                entry.future.set_exception(SessionLostError(entry.method, request_id, reason))
        waiters, self._waiters = self._waiters, []
        for _priority, _sequence, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(NotSentError(f"session lost before the request was sent: {reason}"))
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    @property
    def bucket(self) -> TokenBucket:
        """The message-rate bucket of this connection (read-only use: dashboards)."""
        return self._bucket

    def set_message_rate(self, rate: float) -> None:
        """Size the bucket to the session's own rate, charging what this connection already sent."""
        if rate <= 0:
            raise ValueError(f"message rate must be positive, got {rate!r}")
        self._bucket = message_bucket(rate, self._clock, used=self._sent_this_connection)

    # -- requests ------------------------------------------------------------------------
    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | bytes | None = None,
        *,
        timeout_s: float | None = None,
        priority: int = Priority.NORMAL,
        context: Any = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> msgspec.Raw:
        """Send one request and wait for its answer (raw ``result`` JSON). ``params`` as bytes is
        a frame already built up to its id (``...,"id":``), completed with the request id.

        ``on_sent`` is called with ``time.monotonic_ns()`` right after the frame was handed to the
        socket (picows writes synchronously), before waiting for the answer.

        Raises a ThalexError subclass for an error answer, RpcTimeoutError, SessionLostError,
        NotSentError. ``context`` comes back in a LateResponse if the answer arrives too late.
        """
        if self._send is None:
            self.stats.not_sent += 1
            raise NotSentError(f"{method}: not connected")
        await self._admit(priority)
        future: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
        request_id = self._write(method, params, future, timeout_s, context, on_sent)
        try:
            return await future
        except asyncio.CancelledError:
            # The caller gave up; the answer may still matter (an order ack), so keep it as late.
            abandoned = self._pending.pop(request_id, None)
            if abandoned is not None:
                if abandoned.timer is not None:
                    abandoned.timer.cancel()
                self._remember_late(request_id, abandoned)
            raise

    def call_now(
        self,
        method: str,
        params: Mapping[str, Any] | bytes | None,
        receiver: AnswerReceiver,
        *,
        timeout_s: float | None = None,
        priority: int = Priority.NORMAL,
        context: Any = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> bool:
        """Write one request before returning, its answer (or failure) told to ``receiver``.

        False, with nothing sent, when the request would have to wait for rate budget (the
        caller then uses ``call``, which queues by priority). NotSentError when not connected.
        The request's timeout bounds the wait: the receiver always hears exactly once.
        """
        if self._send is None:
            self.stats.not_sent += 1
            raise NotSentError(f"{method}: not connected")
        if not self._admit_now():
            return False
        self._write(method, params, receiver, timeout_s, context, on_sent)
        return True

    def _write(
        self,
        method: str,
        params: Mapping[str, Any] | bytes | None,
        receiver: AnswerReceiver,
        timeout_s: float | None,
        context: Any,
        on_sent: Callable[[int], None] | None,
    ) -> int:
        send = self._send
        if send is None:
            self.stats.not_sent += 1
            raise NotSentError(f"{method}: connection lost before sending")
        request_id = next(self._ids)
        if isinstance(params, bytes):
            payload = b"%b%d}" % (params, request_id)
        else:
            payload = encode_request(method, params, request_id)
        entry = _Pending(method, receiver, self._clock.monotonic_ns(), context)
        self._pending[request_id] = entry
        try:
            send(payload)
        except Exception as error:
            del self._pending[request_id]
            self.stats.not_sent += 1
            raise NotSentError(f"{method}: send failed: {error}") from error
        if on_sent is not None:
            on_sent(time.monotonic_ns())
        self._sent_this_connection += 1
        self.stats.requests_sent += 1
        if timeout_s is None or timeout_s == self.default_timeout_s:
            self._deadlines.add(request_id)  # one timer for every request of the default timeout
        else:
            entry.timer = asyncio.get_running_loop().call_later(
                timeout_s, self._expire, request_id, timeout_s
            )
        return request_id

    def _expire(self, request_id: int, timeout_s: float) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        self.stats.timeouts += 1
        self._timeouts.inc()
        self._remember_late(request_id, entry)
        if not entry.future.done():
            entry.future.set_exception(RpcTimeoutError(entry.method, request_id, timeout_s))

    def _remember_late(self, request_id: int, entry: _Pending) -> None:
        self._late[request_id] = entry
        while len(self._late) > self._late_memory:
            self._late.popitem(last=False)

    # -- rate gate -----------------------------------------------------------------------
    def _admit_now(self) -> bool:
        """Take a token now if no one waits before us and no throttle pause holds."""
        return (
            not self._waiters
            and self._clock.monotonic_ns() >= self._blocked_until_ns
            and self._bucket.try_acquire()
        )

    def budget_now(self) -> int:
        """Messages that could go out now without waiting: 0 while a throttle pause holds or
        requests already wait for a token."""
        if self._waiters or self._clock.monotonic_ns() < self._blocked_until_ns:
            return 0
        return max(0, int(self._bucket.tokens))

    def budget_wait_s(self) -> float:
        """Seconds until one more message could go out (after those already waiting)."""
        queued = min(len(self._waiters) + 1, self._bucket.capacity)
        wait_ns = max(
            self._blocked_until_ns - self._clock.monotonic_ns(), self._bucket.time_until_available_ns(queued)
        )
        return max(0, wait_ns) / _NS_PER_SECOND

    async def _admit(self, priority: int) -> None:
        if self._admit_now():
            return
        self.stats.rate_waits += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-int(priority), next(self._waiter_sequence), waiter))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._serve_waiters(), name="thalex-rate")
        await waiter

    async def _serve_waiters(self) -> None:
        """Hand out tokens to waiters, highest priority first, as the bucket refills."""
        waiters = self._waiters
        while waiters:
            while waiters and waiters[0][2].done():
                heapq.heappop(waiters)  # cancelled callers take no token
            if not waiters:
                return
            now = self._clock.monotonic_ns()
            wait_ns = max(self._blocked_until_ns - now, self._bucket.time_until_available_ns())
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / _NS_PER_SECOND)
                continue
            if self._bucket.try_acquire():
                _priority, _sequence, waiter = heapq.heappop(waiters)
                waiter.set_result(None)

    # -- incoming ------------------------------------------------------------------------
    def on_message(self, payload: bytes, receive_ns: int) -> None:
        """Route one text frame: a push to the notification handler, an answer to its future."""
        try:
            frame = decode_frame(payload)
        except DECODE_FAILURES:  # RecursionError too: nesting no venue frame has
            self.count_malformed("frame")
            return
        if frame.channel_name is not None:
            if frame.notification is msgspec.UNSET:
                self.count_malformed("notification")
                return
            self.stats.notifications += 1
            self._on_notification(frame.channel_name, frame.notification, receive_ns)
            return
        request_id = frame.id
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            if frame.error is not None:
                self.count_malformed("error_without_id")
                logger.warning("%s: error without a request id: %s", self.venue, frame.error)
            else:
                self.count_malformed("response_id")
            return
        error = frame.error
        if error is None and frame.result is msgspec.UNSET:
            self.count_malformed("response_shape")
        entry = self._pending.pop(request_id, None)
        if entry is None:
            self._on_unmatched(request_id, frame, receive_ns)
            return
        if entry.timer is not None:
            entry.timer.cancel()
        # the session's own clock on both ends (receive_ns may come from another clock)
        self._round_trip(entry.method).record(self._clock.monotonic_ns() - entry.sent_ns)
        self.stats.responses += 1
        future = entry.future
        if error is not None:
            self.stats.error_responses += 1
            if error.code in _THROTTLE_CODES:
                self._throttled()
            if not future.done():
                future.set_exception(error_from_wire(error.code, error.message, request_id))
        elif frame.result is msgspec.UNSET:
            if not future.done():
                future.set_exception(RpcProtocolError(f"{entry.method}: answer has neither result nor error"))
        elif not future.done():
            future.set_result(frame.result)

    def _on_unmatched(self, request_id: int, frame: Any, receive_ns: int) -> None:
        late = self._late.pop(request_id, None)
        if late is None:
            self.stats.unmatched_responses += 1
            return
        self.stats.late_responses += 1
        if frame.error is not None and frame.error.code in _THROTTLE_CODES:
            self._throttled()
        if self._on_late_response is None:
            return
        self._on_late_response(
            LateResponse(
                method=late.method,
                request_id=request_id,
                context=late.context,
                result=None if frame.result is msgspec.UNSET else frame.result,
                error_code=None if frame.error is None else frame.error.code,
                error_message="" if frame.error is None else frame.error.message,
                receive_ns=receive_ns,
            )
        )

    def _throttled(self) -> None:
        self.stats.throttled += 1
        self._throttles.inc()
        until = self._clock.monotonic_ns() + int(self.throttle_backoff_s * _NS_PER_SECOND)
        self._blocked_until_ns = max(self._blocked_until_ns, until)

    # -- metrics -------------------------------------------------------------------------
    def count_malformed(self, kind: str) -> None:
        """Count one malformed input by kind (frame, notification payload per channel, result ...)."""
        malformed = self.stats.malformed
        if kind not in malformed:
            logger.warning("%s: malformed %s input (logged once per kind)", self.venue, kind)
        malformed[kind] = malformed.get(kind, 0) + 1
        counter = self._malformed_counters.get(kind)
        if counter is None:
            counter = self.metrics.counter("thalex_malformed_frames_total", venue=self.venue, kind=kind)
            self._malformed_counters[kind] = counter
        counter.inc()

    def _round_trip(self, method: str) -> LatencyHistogram:
        histogram = self._round_trips.get(method)
        if histogram is None:
            histogram = self.metrics.histogram("thalex_rpc_round_trip_ns", venue=self.venue, method=method)
            self._round_trips[method] = histogram
        return histogram


def message_bucket(rate: float, clock: Clock, *, used: int) -> TokenBucket:
    """A bucket of one second's burst at ``rate``, minus what this connection already sent."""
    capacity = max(1, int(rate))
    return TokenBucket(rate, capacity, clock, initial_tokens=max(0, capacity - used))
