"""Integration fixtures: the shared two-venue node assembly (``two_venue_node.py``) sits beside the
tests; pytest runs with ``--import-mode=importlib``, so this folder is put on ``sys.path``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hftkit.datasets import shared_data_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _recordings() -> None:
    shared_data_dir()  # the recordings are required: a missing shared/data fails with where it looked
