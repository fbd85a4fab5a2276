"""Where the recorded market data lives and how to read it.

The recordings (``../shared/data`` beside the repository) are real Binance traffic in two
line formats: hftbacktest's ``<local_ts_ns> <json>`` (gzip) and cryptofeed's
``<unix_ts>: <json>``. Readers yield raw JSON bytes so the caller decodes with whatever
codec it is measuring or using.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

ENVIRONMENT_VARIABLE = "HFTKIT_SHARED_DATA"


class DataNotFoundError(FileNotFoundError):
    """The shared recordings are not where hftkit looked; says where it looked."""


def shared_data_dir() -> Path:
    """Locate ``shared/data``: $HFTKIT_SHARED_DATA, else a ``shared/data`` beside a parent folder."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        path = Path(configured)
        if path.is_dir():
            return path
        raise DataNotFoundError(f"${ENVIRONMENT_VARIABLE}={configured} is not a directory")
    searched = []
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in [start, *start.parents]:
            candidate = parent / "shared" / "data"
            searched.append(str(candidate))
            if candidate.is_dir():
                return candidate
    raise DataNotFoundError(
        f"no shared/data found; set ${ENVIRONMENT_VARIABLE}. Looked in: {', '.join(searched[:6])} ..."
    )


#: The slice of real data shipped inside the package (see ``hftkit/data/README.md``).
BUNDLED_DATA = Path(__file__).resolve().parent / "data"


def hftbacktest_path(relative: str | Path) -> Path:
    """An hftbacktest recording by its path under ``hftbacktest/`` (``"usdm/btcusdt_20240808.gz"``).

    The full shared set wins when present; otherwise the bundled slice, so the main job runs on a
    machine that has only this repository. Missing from both: ``DataNotFoundError`` saying where.
    """
    try:
        shared = shared_data_dir() / "hftbacktest" / relative
    except DataNotFoundError as error:
        bundled = BUNDLED_DATA / "hftbacktest" / relative
        if bundled.is_file():
            return bundled
        raise DataNotFoundError(f"{relative} is not bundled with hftkit, and {error}") from None
    if shared.is_file():
        return shared
    bundled = BUNDLED_DATA / "hftbacktest" / relative
    if bundled.is_file():
        return bundled
    raise DataNotFoundError(f"no recording {relative} in {shared.parent} nor bundled with hftkit")


def hftbacktest_file(market: str, name: str) -> Path:
    """Path of an hftbacktest recording, e.g. ``hftbacktest_file("spot", "btcusdt_20240808.gz")``."""
    return hftbacktest_path(Path(market) / name)


def describe_source(path: Path) -> str:
    """Which data ran, for summaries: ``bundled slice`` or the shared folder it came from."""
    try:
        path.resolve().relative_to(BUNDLED_DATA)
    except ValueError:
        return f"shared data ({path})"
    return f"bundled slice ({path.name}; see hftkit/data/README.md)"


def _open_text(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        # lines split by a C buffer over the decompressor: ``GzipFile``'s own line iteration is
        # a Python call per line (a quarter of reading a recording's bytes)
        return io.BufferedReader(gzip.open(path, "rb"), buffer_size=1 << 20)
    return open(path, "rb")


def iter_recording(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(timestamp_ns, json_bytes)`` for each line of a recording.

    Understands ``<ts_ns> <json>`` (hftbacktest), ``<unix_ts>: <json>`` (cryptofeed; its
    first line, the connect URL, is skipped) and plain JSON lines (timestamp 0). A ``.parquet``
    file or a folder is a Parquet frame recording (``hftkit.recording_files``): its frames in
    receive order.
    """
    path = Path(path)
    if path.suffix == ".parquet" or path.is_dir():
        from hftkit.recording_files import iter_frames

        for frame in iter_frames([path]):
            yield frame.timestamp_ns, frame.payload
        return
    with _open_text(path) as handle:
        for raw_line in handle:
            line = raw_line.strip()
            if not line:
                continue
            if line[:1] in (b"{", b"["):
                yield 0, line
                continue
            head, separator, body = line.partition(b" ")
            if not separator or body[:1] not in (b"{", b"["):
                continue  # a header line such as cryptofeed's connect URL
            head = head.rstrip(b":")
            try:
                if b"." in head:
                    timestamp_ns = int(float(head) * 1e9)
                else:
                    timestamp_ns = int(head)
            except ValueError:
                continue
            yield timestamp_ns, body
