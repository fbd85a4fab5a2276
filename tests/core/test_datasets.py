"""The recording readers understand every format in shared/data."""

from __future__ import annotations

import gzip

import pytest

from hftkit.datasets import DataNotFoundError, hftbacktest_file, iter_recording, shared_data_dir


def test_hftbacktest_recording_yields_timestamps_and_json():
    lines = iter_recording(hftbacktest_file("spot", "btcusdt_20240808.gz"))
    timestamp, body = next(lines)
    assert timestamp == 1723161253937085768
    assert body.startswith(b'{"stream":"btcusdt@depth@100ms"')


def test_cryptofeed_recording_skips_the_connect_line():
    path = shared_data_dir() / "cryptofeed" / "BINANCE.ws.1.0"
    timestamp, body = next(iter_recording(path))
    assert timestamp > 1_600_000_000 * 10**9
    assert body.startswith(b"{")


def test_plain_json_lines_and_blank_lines(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b'{"a":1}\n\n[1,2]\nnot json at all\n')
    assert list(iter_recording(path)) == [(0, b'{"a":1}'), (0, b"[1,2]")]


def test_missing_data_directory_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HFTKIT_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="HFTKIT_SHARED_DATA"):
        shared_data_dir()
