"""CircuitBreaker follows its state machine (property test against a reference model)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.clock import SimulatedClock
from hftkit.resilience import BreakerRegistry, CircuitBreaker, CircuitOpenError, CircuitState

# A broken limiter or scheduler would hang its waiters: fail fast instead of at the global timeout.
pytestmark = pytest.mark.timeout(20)

MS = 1_000_000


@dataclass
class Model:
    """The breaker's rules written plainly: full outcome history, recomputed each time."""

    failure_threshold: int
    rate: float
    window_ns: int
    min_calls: int
    recovery_ns: int
    max_probes: int
    success_threshold: int
    state: CircuitState = CircuitState.CLOSED
    generation: int = 0
    opened_at: int = 0
    history: list[tuple[int, bool]] = field(default_factory=list)
    probes: int = 0
    probe_successes: int = 0
    calls: int = 0
    rejections: int = 0
    changes: int = 0

    def move(self, new: CircuitState, now: int) -> None:
        if new is self.state:
            return
        self.state = new
        self.generation += 1
        self.changes += 1
        self.probes = 0
        self.probe_successes = 0
        if new is CircuitState.OPEN:
            self.opened_at = now
        if new is CircuitState.CLOSED:
            self.history = []

    def current(self, now: int) -> CircuitState:
        if self.state is CircuitState.OPEN and now - self.opened_at >= self.recovery_ns:
            self.move(CircuitState.HALF_OPEN, now)
        return self.state

    def allow(self, now: int) -> bool:
        state = self.current(now)
        if state is CircuitState.CLOSED:
            self.calls += 1
            return True
        if state is CircuitState.HALF_OPEN and self.probes < self.max_probes:
            self.probes += 1
            self.calls += 1
            return True
        self.rejections += 1
        return False

    def outcome(self, generation: int, result: str, now: int) -> None:
        if generation != self.generation:
            return
        if self.state is CircuitState.CLOSED and result != "release":
            self.history.append((now, result == "failure"))
            # The window is a ring of 10 buckets: outcomes whose bucket is among the last 10.
            bucket_ns = self.window_ns // 10
            recent = [failed for t, failed in self.history if t // bucket_ns > now // bucket_ns - 10]
            consecutive = 0
            for _, failed in reversed(self.history):
                if not failed:
                    break
                consecutive += 1
            if result == "failure" and (
                consecutive >= self.failure_threshold
                or (len(recent) >= self.min_calls and sum(recent) >= self.rate * len(recent))
            ):
                self.move(CircuitState.OPEN, now)
        elif self.state is CircuitState.HALF_OPEN:
            if result == "release":
                self.probes = max(0, self.probes - 1)
            elif result == "failure":
                self.move(CircuitState.OPEN, now)
            else:
                self.probes = max(0, self.probes - 1)
                self.probe_successes += 1
                if self.probe_successes >= self.success_threshold:
                    self.move(CircuitState.CLOSED, now)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(min_value=0, max_value=400 * MS)),
        st.tuples(st.just("call"), st.sampled_from(["success", "failure"])),
        st.tuples(st.just("start"), st.just(0)),
        st.tuples(
            st.just("finish"),
            st.integers(min_value=0, max_value=50),
            st.sampled_from(["success", "failure", "release"]),
        ),
    ),
    max_size=200,
)


@given(
    operations=operations,
    failure_threshold=st.integers(min_value=1, max_value=6),
    rate=st.sampled_from([0.3, 0.5, 1.0]),
    min_calls=st.integers(min_value=1, max_value=8),
    max_probes=st.integers(min_value=1, max_value=3),
    success_threshold=st.integers(min_value=1, max_value=3),
)
@settings(max_examples=250, deadline=None)
def test_breaker_matches_reference_model(
    operations: list[tuple],
    failure_threshold: int,
    rate: float,
    min_calls: int,
    max_probes: int,
    success_threshold: int,
) -> None:
    clock = SimulatedClock()
    config = dict(
        failure_threshold=failure_threshold,
        rate=rate,
        window_ns=1000 * MS,
        min_calls=min_calls,
        recovery_ns=500 * MS,
        max_probes=max_probes,
        success_threshold=success_threshold,
    )
    model = Model(**config)  # type: ignore[arg-type]
    breaker = CircuitBreaker(
        "venue",
        failure_threshold=failure_threshold,
        error_rate_threshold=rate,
        window_seconds=1.0,
        min_calls=min_calls,
        recovery_timeout=0.5,
        half_open_max_probes=max_probes,
        success_threshold=success_threshold,
        clock=clock,
    )
    held: list[tuple[int, int]] = []  # (breaker generation, model generation)
    for operation in operations:
        now = clock.monotonic_ns()
        if operation[0] == "advance":
            clock.advance(operation[1])
        elif operation[0] == "call":
            allowed = breaker.allow()
            assert allowed is model.allow(now)
            if allowed:
                generation = breaker.generation
                model_generation = model.generation
                if operation[1] == "success":
                    breaker.record_success(generation)
                else:
                    breaker.record_failure(generation)
                model.outcome(model_generation, operation[1], now)
        elif operation[0] == "start":
            allowed = breaker.allow()
            assert allowed is model.allow(now)
            if allowed:
                held.append((breaker.generation, model.generation))
        elif held:
            generation, model_generation = held.pop(operation[1] % len(held))
            {
                "success": breaker.record_success,
                "failure": breaker.record_failure,
                "release": breaker.release,
            }[operation[2]](generation)
            model.outcome(model_generation, operation[2], now)
        assert breaker.state is model.current(clock.monotonic_ns())
        assert breaker.generation == model.generation
        assert (breaker.calls, breaker.rejections, breaker.state_changes) == (
            model.calls,
            model.rejections,
            model.changes,
        )


def test_opens_on_consecutive_failures_and_recovers_through_half_open() -> None:
    clock = SimulatedClock()
    changes: list[tuple[CircuitState, CircuitState]] = []
    breaker = CircuitBreaker(
        "rest",
        failure_threshold=3,
        error_rate_threshold=None,
        recovery_timeout=1.0,
        success_threshold=2,
        half_open_max_probes=2,
        clock=clock,
        on_state_change=lambda b, old, new: changes.append((old, new)),
    )
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == pytest.approx(1.0)
    clock.advance_seconds(1.0)
    assert breaker.allow() and breaker.allow()
    assert not breaker.allow()  # only two probes at once
    breaker.record_success()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert changes == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert (breaker.failures, breaker.rejections, breaker.state_changes) == (3, 2, 3)


def test_opens_on_error_rate_over_the_window_once_min_calls_reached() -> None:
    clock = SimulatedClock()
    breaker = CircuitBreaker(
        "db", failure_threshold=None, error_rate_threshold=0.5, window_seconds=10, min_calls=4, clock=clock
    )
    for failed in [True, False, True]:
        breaker.allow()
        breaker.record_failure() if failed else breaker.record_success()
    assert breaker.state is CircuitState.CLOSED  # 3 calls < min_calls
    breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert breaker.error_rate() == pytest.approx(0.75)


def test_old_failures_leave_the_window() -> None:
    clock = SimulatedClock()
    breaker = CircuitBreaker(
        "db", failure_threshold=None, error_rate_threshold=0.5, window_seconds=1, min_calls=2, clock=clock
    )
    breaker.record_failure()
    clock.advance_seconds(1.5)
    breaker.record_success()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED  # 1 of 3 recent calls failed


def test_a_failing_listener_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker("x", failure_threshold=1, clock=SimulatedClock(), on_state_change=broken)
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert "listener" in caplog.text


async def test_async_call_rejects_when_open_and_classifies_errors() -> None:
    clock = SimulatedClock()
    breaker = CircuitBreaker(
        "venue",
        failure_threshold=2,
        error_rate_threshold=None,
        recovery_timeout=3.0,
        is_failure=lambda error: isinstance(error, ConnectionError),
        clock=clock,
    )

    async def rejected_order() -> None:
        raise ValueError("insufficient balance")  # the venue answered: not a health failure

    async def unreachable() -> None:
        raise ConnectionError("reset")

    async def fine() -> str:
        return "ok"

    for _ in range(3):
        with pytest.raises(ValueError):
            await breaker.call(rejected_order)
    assert breaker.state is CircuitState.CLOSED
    assert await breaker.call(fine) == "ok"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(unreachable)
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(fine)
    assert caught.value.retry_after == pytest.approx(3.0)
    assert "venue" in str(caught.value)


async def test_cancelled_probe_frees_its_slot() -> None:
    clock = SimulatedClock()
    breaker = CircuitBreaker("venue", failure_threshold=1, recovery_timeout=0.0, clock=clock)
    breaker.record_failure()
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    probe = asyncio.ensure_future(breaker.call(hang))
    await started.wait()
    assert not breaker.allow()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.allow()


async def test_guard_context_manager_sync_and_async() -> None:
    breaker = CircuitBreaker("x", failure_threshold=2, error_rate_threshold=None, clock=SimulatedClock())
    with breaker.guard():
        pass
    with pytest.raises(OSError), breaker.guard():
        raise OSError
    with pytest.raises(OSError):
        async with breaker.guard():
            raise OSError
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        with breaker.guard():
            pass


def test_stale_outcomes_from_before_a_state_change_are_ignored() -> None:
    breaker = CircuitBreaker("x", failure_threshold=1, recovery_timeout=0.0, clock=SimulatedClock())
    assert breaker.allow()
    old_generation = breaker.generation
    breaker.force_open()
    assert breaker.allow()  # half-open probe
    breaker.record_success(old_generation)  # a slow call from before must not close it
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.stale_outcomes == 1


def test_call_sync_and_registry() -> None:
    registry = BreakerRegistry(failure_threshold=1, clock=SimulatedClock())
    binance = registry.get("binance")
    assert registry["binance"] is binance
    assert binance.call_sync(lambda x: x + 1, 1) == 2
    with pytest.raises(ZeroDivisionError):
        binance.call_sync(lambda: 1 / 0)
    assert registry.states() == {"binance": CircuitState.OPEN}
    assert registry.get("thalex").state is CircuitState.CLOSED
    assert len(registry) == 2 and "thalex" in registry
    with pytest.raises(ValueError):
        BreakerRegistry(lambda name: CircuitBreaker(name), failure_threshold=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": None, "error_rate_threshold": None},
        {"failure_threshold": 0},
        {"error_rate_threshold": 1.5},
        {"min_calls": 0},
        {"half_open_max_probes": 0},
    ],
)
def test_invalid_breakers_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", **kwargs)  # type: ignore[arg-type]


def test_call_sync_feeds_the_error_rate_window() -> None:
    clock = SimulatedClock()
    breaker = CircuitBreaker(
        "rest", failure_threshold=None, error_rate_threshold=0.5, window_seconds=5, min_calls=4, clock=clock
    )

    def fail() -> None:
        raise TimeoutError

    for _ in range(2):
        assert breaker.call_sync(lambda: 1) == 1
    with pytest.raises(TimeoutError):
        breaker.call_sync(fail)
    assert breaker.state is CircuitState.CLOSED
    with pytest.raises(TimeoutError):
        breaker.call_sync(fail)
    assert breaker.state is CircuitState.OPEN
    assert (breaker.successes, breaker.failures) == (2, 2)
    clock.advance_seconds(60)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.call_sync(lambda: 2) == 2
    assert breaker.state is CircuitState.CLOSED
    assert breaker.error_rate() == 0.0
