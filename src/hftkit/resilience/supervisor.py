"""Named, grouped, supervised tasks: no task dies silently.

Every exception a supervised task raises is logged with its traceback and counted in the
task's status; a restart policy decides whether it runs again (with jittered exponential
backoff and a cap on restarts). Groups (``"market-data"``, ``"orders"``) can be cancelled as
one. Used as an async context manager, the supervisor cancels everything still running on exit.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.resilience.errors import DuplicateTaskError

log = logging.getLogger(__name__)

_NS_PER_SECOND = 1_000_000_000


class RestartMode(Enum):
    NEVER = "never"
    ON_FAILURE = "on_failure"
    ALWAYS = "always"
    """Also restart after a normal return (a loop that must never end, such as a feed)."""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to run a task again and how long to wait before each restart."""

    mode: RestartMode = RestartMode.NEVER
    max_restarts: int | None = 10
    """None = unlimited."""
    base_delay: float = 0.1
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts is not None and self.max_restarts < 0:
            raise ValueError("max_restarts must be >= 0 or None")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("restart delays must not be negative")

    @classmethod
    def never(cls) -> RestartPolicy:
        return cls(RestartMode.NEVER)

    @classmethod
    def on_failure(
        cls, max_restarts: int | None = 10, base_delay: float = 0.1, max_delay: float = 30.0
    ) -> RestartPolicy:
        return cls(RestartMode.ON_FAILURE, max_restarts, base_delay, max_delay)

    @classmethod
    def always(
        cls, max_restarts: int | None = None, base_delay: float = 0.1, max_delay: float = 30.0
    ) -> RestartPolicy:
        return cls(RestartMode.ALWAYS, max_restarts, base_delay, max_delay)

    def delay(self, restart: int, uniform: Callable[[float, float], float]) -> float:
        """Full-jitter delay before restart number ``restart`` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(restart, 64))
        return uniform(0.0, ceiling)


class TaskState(Enum):
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class TaskStatus:
    """What a supervised task is doing and has done."""

    name: str
    group: str
    state: TaskState
    runs: int = 0
    failures: int = 0
    restarts: int = 0
    last_error: BaseException | None = None
    last_error_at_ns: int | None = None

    @property
    def active(self) -> bool:
        return self.state in (TaskState.RUNNING, TaskState.BACKING_OFF)


CoroutineFactory = Callable[[], Coroutine[Any, Any, Any]]


class _Supervised:
    __slots__ = ("factory", "policy", "status", "task")

    def __init__(self, status: TaskStatus, factory: CoroutineFactory, policy: RestartPolicy) -> None:
        self.status = status
        self.factory = factory
        self.policy = policy
        self.task: asyncio.Task[None] | None = None


class TaskSupervisor:
    """Start, watch, restart and cancel named tasks in groups."""

    def __init__(
        self,
        name: str = "supervisor",
        *,
        clock: Clock = REAL_CLOCK,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        uniform: Callable[[float, float], float] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self._now = clock.monotonic_ns
        self._sleep = sleep
        self._uniform = uniform if uniform is not None else random.Random().uniform
        self._log = logger or log
        self._tasks: dict[str, _Supervised] = {}
        self.started = 0
        self.failures = 0
        self.restarts = 0
        self._closed = False

    def start(
        self,
        name: str,
        factory: CoroutineFactory,
        *,
        group: str = "default",
        restart: RestartPolicy | None = None,
    ) -> asyncio.Task[None]:
        """Run ``factory()`` under supervision. A name may be reused once its task has ended."""
        if self._closed:
            raise RuntimeError(f"supervisor {self.name!r} is closed")
        if not callable(factory) or asyncio.iscoroutine(factory):
            raise TypeError(
                "start() takes a coroutine *factory* (so the task can be restarted), not a coroutine"
            )
        existing = self._tasks.get(name)
        if existing is not None and existing.status.active:
            raise DuplicateTaskError(f"task {name!r} is already running in group {existing.status.group!r}")
        entry = _Supervised(
            TaskStatus(name, group, TaskState.RUNNING), factory, restart or RestartPolicy.never()
        )
        self._tasks[name] = entry
        entry.task = asyncio.get_running_loop().create_task(self._run(entry), name=f"{self.name}:{name}")
        self.started += 1
        return entry.task

    async def _run(self, entry: _Supervised) -> None:
        status = entry.status
        policy = entry.policy
        while True:
            status.state = TaskState.RUNNING
            status.runs += 1
            try:
                await entry.factory()
            except asyncio.CancelledError:
                status.state = TaskState.CANCELLED
                raise
            except Exception as error:
                status.failures += 1
                status.last_error = error
                status.last_error_at_ns = self._now()
                self.failures += 1
                self._log.error(
                    "task %s (group %s) failed (failure %d, run %d)",
                    status.name,
                    status.group,
                    status.failures,
                    status.runs,
                    exc_info=error,
                )
                if policy.mode is RestartMode.NEVER or not self._may_restart(status, policy):
                    status.state = TaskState.FAILED
                    return
            else:
                if policy.mode is not RestartMode.ALWAYS or not self._may_restart(status, policy):
                    status.state = TaskState.FINISHED
                    return
                self._log.warning(
                    "task %s (group %s) returned; restarting (policy: always)", status.name, status.group
                )
            status.state = TaskState.BACKING_OFF
            try:
                await self._sleep(policy.delay(status.restarts, self._uniform))
            except asyncio.CancelledError:
                status.state = TaskState.CANCELLED
                raise
            status.restarts += 1
            self.restarts += 1

    def _may_restart(self, status: TaskStatus, policy: RestartPolicy) -> bool:
        if policy.max_restarts is not None and status.restarts >= policy.max_restarts:
            self._log.error(
                "task %s (group %s) reached its %d restarts; giving up",
                status.name,
                status.group,
                policy.max_restarts,
            )
            return False
        return True

    # -- status -----------------------------------------------------------------------------

    def status(self, name: str) -> TaskStatus:
        entry = self._tasks.get(name)
        if entry is None:
            raise KeyError(f"no supervised task named {name!r}")
        return entry.status

    def statuses(self, group: str | None = None) -> list[TaskStatus]:
        return [
            entry.status for entry in self._tasks.values() if group is None or entry.status.group == group
        ]

    def counts(self, group: str | None = None) -> dict[str, int]:
        """How many tasks are in each state (keys are ``TaskState`` values)."""
        counts = {state.value: 0 for state in TaskState}
        for status in self.statuses(group):
            counts[status.state.value] += 1
        return counts

    @property
    def groups(self) -> set[str]:
        return {entry.status.group for entry in self._tasks.values()}

    # -- control ----------------------------------------------------------------------------

    async def wait(self, name: str) -> TaskStatus:
        """Wait for a task to end for good (after its restarts) and return its status."""
        entry = self._tasks[name]
        if entry.task is not None:
            await asyncio.gather(entry.task, return_exceptions=True)
        return entry.status

    async def cancel(self, name: str) -> None:
        entry = self._tasks.get(name)
        if entry is None:
            raise KeyError(f"no supervised task named {name!r}")
        await self._cancel_entries([entry])

    async def cancel_group(self, group: str) -> int:
        """Cancel every task of ``group`` and wait for them; return how many were active."""
        entries = [entry for entry in self._tasks.values() if entry.status.group == group]
        return await self._cancel_entries(entries)

    async def cancel_all(self) -> int:
        return await self._cancel_entries(list(self._tasks.values()))

    async def _cancel_entries(self, entries: list[_Supervised]) -> int:
        tasks = [entry.task for entry in entries if entry.task is not None and not entry.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for entry in entries:
            if entry.status.active:  # cancelled before its first step ran
                entry.status.state = TaskState.CANCELLED
        return len(tasks)

    async def __aenter__(self) -> TaskSupervisor:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._closed = True
        cancelled = await self.cancel_all()
        if cancelled:
            self._log.info("supervisor %s: cancelled %d task(s) on exit", self.name, cancelled)
