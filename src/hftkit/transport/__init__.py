"""Transport: sockets and the queues behind them (feed queue, micro-batcher, recording replay)."""

from hftkit.transport.feed import (
    NULL_RECORDER,
    DropReason,
    FeedQueue,
    LatencyRecorder,
    MicroBatcher,
    NullRecorder,
    OverflowPolicy,
    QueueClosedError,
    QueueEmptyError,
    QueueFullError,
)
from hftkit.transport.replay import RecordingReplay, ReplayRecord

__all__ = [
    "NULL_RECORDER",
    "DropReason",
    "FeedQueue",
    "LatencyRecorder",
    "MicroBatcher",
    "NullRecorder",
    "OverflowPolicy",
    "QueueClosedError",
    "QueueEmptyError",
    "QueueFullError",
    "RecordingReplay",
    "ReplayRecord",
]
