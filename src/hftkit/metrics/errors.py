"""Errors of the metrics layer, classified so a caller can count them by kind."""

from __future__ import annotations

from hftkit.core.errors import HftkitError


class InvalidMeasurementError(HftkitError, ValueError):
    """A value given to a histogram that is not a number of nanoseconds (NaN, infinity, text)."""


class InvalidMetricNameError(HftkitError, ValueError):
    """A metric or label name that the Prometheus data model does not accept."""


class MetricTypeConflictError(HftkitError, TypeError):
    """A name registered once as one kind of metric (say a counter) and asked for as another."""


class IncompatibleSnapshotError(HftkitError, ValueError):
    """Two snapshots that cannot be subtracted (the later one has fewer events than the earlier)."""
