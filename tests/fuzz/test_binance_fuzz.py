"""Binance decoders under hostile input: market data, user data, REST bodies and headers.

Each test draws mutated real frames (see conftest.py) and runs one target of
atheris_targets.py: only classified errors may leave it, what it hands on is in range, no
book holds a non-positive level, and no frame takes more than 10 ms.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=600,
    deadline=None,  # the 10 ms budget is checked per call, with retries for a noisy machine
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Fuzz = Callable[[str, bytes], None]
Mutations = Callable[[str], st.SearchStrategy[bytes]]


@FUZZ
@given(data=st.data())
def test_combined_stream_frames(data: st.DataObject, fuzz: Fuzz, mutations: Mutations) -> None:
    fuzz("binance_stream", data.draw(mutations("binance_stream")))


@FUZZ
@given(data=st.data())
def test_raw_and_typed_depth_frames_onto_a_book(
    data: st.DataObject, fuzz: Fuzz, mutations: Mutations
) -> None:
    fuzz("binance_depth", data.draw(mutations("binance_depth")))


@FUZZ
@given(data=st.data())
def test_user_data_frames(data: st.DataObject, fuzz: Fuzz, mutations: Mutations) -> None:
    fuzz("binance_user_data", data.draw(mutations("binance_user_data")))


@FUZZ
@given(data=st.data())
def test_rest_answer_bodies(data: st.DataObject, fuzz: Fuzz, mutations: Mutations) -> None:
    fuzz("binance_rest_body", data.draw(mutations("binance_rest_body")))


@settings(FUZZ, max_examples=300)
@given(
    value=st.one_of(
        st.sampled_from(["12", "1e10", "inf", "-inf", "nan", "1" * 5000, "\u0663", "1\u00b2", "-5", " 7"]),
        st.text(alphabet="0123456789.eE+-naifINF \u0663\u00b2", max_size=12),
        st.integers(0, 10**40).map(str),
    )
)
def test_rest_usage_and_retry_after_headers(value: str, fuzz: Fuzz) -> None:
    fuzz("binance_rest_headers", value.encode("utf-8").decode("latin-1").encode("latin-1"))
