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


def test_the_bundled_slice_serves_when_the_shared_set_is_absent(tmp_path, monkeypatch):
    from hftkit.datasets import BUNDLED_DATA, DataNotFoundError, describe_source, hftbacktest_path

    monkeypatch.setenv("HFTKIT_SHARED_DATA", str(tmp_path))  # a shared folder without the file
    path = hftbacktest_path("usdm/btcusdt_20240808.gz")
    assert path.is_relative_to(BUNDLED_DATA) and path.stat().st_size > 3_000_000
    assert describe_source(path).startswith("bundled slice")
    with pytest.raises(DataNotFoundError, match=r"spot/ethusdt_20240809\.gz"):
        hftbacktest_path("spot/ethusdt_20240809.gz")
    (tmp_path / "hftbacktest" / "usdm").mkdir(parents=True)
    shared = tmp_path / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    shared.write_bytes(path.read_bytes())
    assert hftbacktest_path("usdm/btcusdt_20240808.gz") == shared
    assert describe_source(shared).startswith("shared data")


def test_the_bundled_recording_is_the_attributed_upstream_file():
    import subprocess

    from hftkit.datasets import BUNDLED_DATA

    path = BUNDLED_DATA / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    blob = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    readme = (BUNDLED_DATA / "README.md").read_text(encoding="utf-8")
    assert blob.stdout.strip() in readme
    assert "Copyright (c) 2022 nkaz001" in (BUNDLED_DATA / "LICENSE-hftbacktest").read_text(encoding="utf-8")
