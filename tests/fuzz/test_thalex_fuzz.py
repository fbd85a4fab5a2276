"""Thalex decoders under hostile input: RPC answers and notifications (book, ticker, orders,
trades, portfolio, system) through the session and the adapter's handlers, and the codec's
conversion of book, order and trade payloads. Rules as in test_binance_fuzz.py.
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
def test_rpc_frames_and_notifications(data: st.DataObject, fuzz: Fuzz, mutations: Mutations) -> None:
    fuzz("thalex_rpc", data.draw(mutations("thalex_rpc")))


@FUZZ
@given(data=st.data())
def test_book_order_and_trade_payloads(data: st.DataObject, fuzz: Fuzz, mutations: Mutations) -> None:
    fuzz("thalex_notification", data.draw(mutations("thalex_notification")))
