"""Fixtures of the behavioural suite: a simulator per test, and a harness around the venue's adapter.

The suite's modules (``suite.py``, ``cases.py``) sit beside the tests; pytest runs with
``--import-mode=importlib``, so this folder is put on ``sys.path`` for the test modules to
import them.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import VenueCase
from suite import Harness, simulator_for

from hftkit.sim.runner import Simulator


@pytest.fixture
async def sim(case: VenueCase) -> AsyncIterator[Simulator]:
    async with simulator_for(case) as running:
        yield running


@pytest.fixture
async def harness(case: VenueCase, sim: Simulator) -> AsyncIterator[Harness]:
    subject = Harness(case, sim)
    try:
        yield subject
    finally:
        await subject.close()
