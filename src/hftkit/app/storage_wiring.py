"""From the node config's ``recorder:`` and ``influx:`` sections to the storage layer's options.

One place turns config (text sizes, paths relative to the config file, secrets) into the typed
options ``hftkit.storage`` takes, so ``hftkit record`` and the node build the same recorder.
"""

from __future__ import annotations

from pathlib import Path

from hftkit.app.config import LoadedConfig
from hftkit.storage.influx import InfluxTarget
from hftkit.storage.influx_publisher import InfluxOptions
from hftkit.storage.recorder import RecorderOptions


def recorder_directory(loaded: LoadedConfig, override: str | None = None) -> Path:
    path = Path(override or loaded.node.recorder.directory).expanduser()
    return path if path.is_absolute() else loaded.directory / path


def recorder_options(loaded: LoadedConfig, directory: str | None = None) -> RecorderOptions:
    section = loaded.node.recorder
    return RecorderOptions(
        directory=recorder_directory(loaded, directory),
        raw=section.raw,
        normalized=section.normalized,
        rotate_bytes=section.rotate_mb * 1024 * 1024,
        flush_interval_s=section.flush_interval_s,
        capacity=section.buffer_rows,
        batch_size=min(4096, section.buffer_rows),
        overflow=section.overflow,
        writer=section.writer,
        normalized_depth=section.normalized_depth,
    )


def influx_options(loaded: LoadedConfig) -> InfluxOptions:
    section = loaded.node.influx
    target = InfluxTarget(
        url=section.url,
        api=section.api,
        database=section.database,
        username=section.username,
        password=None if section.password is None else section.password.reveal(),
        org=section.org,
        bucket=section.bucket,
        token=None if section.token is None else section.token.reveal(),
        gzip=section.gzip,
        timeout_s=section.timeout_s,
    )
    return InfluxOptions(
        target=target,
        measurements=frozenset(section.measurements),
        batch_size=section.batch_size,
        flush_interval_s=section.flush_interval_s,
        capacity=section.buffer_points,
        top_of_book_interval_ms=section.top_of_book_interval_ms,
        snapshot_interval_s=section.snapshot_interval_s,
    )


__all__ = ["influx_options", "recorder_directory", "recorder_options"]
