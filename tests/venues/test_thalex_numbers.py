"""Thalex JSON numbers that no venue sends (found by tests/fuzz): classified, never OverflowError."""

from __future__ import annotations

import msgspec
import pytest

from hftkit.core.errors import OutOfRangeError
from hftkit.core.types import Instrument
from hftkit.venues.thalex import codec

INSTRUMENT = Instrument("thalex", "BTC-PERPETUAL", "BTC", "USD", "1", "0.001")
TRADE = (
    b'{"order_id":"a","trade_id":"b","instrument_name":"BTC-PERPETUAL","direction":"buy",'
    b'"price":47280,"amount":0.1,"time":%s}'
)


@pytest.mark.parametrize("time", [b"1e308", b"1e19", b"-1"])  # msgspec itself refuses 1e400
def test_trade_times_beyond_any_clock_are_out_of_range(time: bytes) -> None:
    trade = msgspec.json.decode(TRADE % time, type=codec.ThalexTrade)
    with pytest.raises(OutOfRangeError):
        codec.ThalexCodec("thalex", {"BTC-PERPETUAL": INSTRUMENT}).trade_fill(trade)


def test_a_real_trade_time_still_converts_to_milliseconds() -> None:
    trade = msgspec.json.decode(TRADE % b"1630059868.4145653", type=codec.ThalexTrade)
    fill = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": INSTRUMENT}).trade_fill(trade)
    assert fill is not None and fill.event_time_ms == 1630059868414


@pytest.mark.parametrize(
    ("field", "value"), [(b'"price":47280', b'"price":1e-400'), (b'"amount":0.1', b'"amount":0')]
)
def test_a_fill_at_no_price_or_no_amount_is_malformed_not_a_zero_fill(field: bytes, value: bytes) -> None:
    trade = msgspec.json.decode((TRADE % b"1630059868.4").replace(field, value), type=codec.ThalexTrade)
    with pytest.raises(OutOfRangeError, match="is not a positive number of steps"):
        codec.ThalexCodec("thalex", {"BTC-PERPETUAL": INSTRUMENT}).trade_fill(trade)
