"""Tests of the benchmark peers' runners, which need the peers installed (``.venv-peers``).

``make bench-peers`` runs them with ``HFTKIT_PEERS=1`` before the benchmarks; the main suite
(``make test``, whose environment has no peers) does not collect them rather than skip them.
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("HFTKIT_PEERS") == "1" else ["test_*.py"]
