"""Fuzz targets: every decoder a venue or the network reaches, each a function of one input.

One definition serves two runners: the hypothesis suite (``tests/fuzz/test_*.py``, part of
``make test``) feeds mutated real frames, and atheris (``make fuzz``) runs the same targets
coverage-guided for longer::

    python tests/fuzz/atheris_targets.py TARGET -atheris_runs=N

A target may raise only ``CLASSIFIED`` errors (what every feed already catches, counts and
logs once); anything else escapes as a bug. It also asserts the invariants of what it hands
on: integer ticks and lots within 64 bits, no book level with a non-positive price or size.
The file name does not match ``test_*.py``, so pytest never collects it, and atheris is
imported only in ``main`` so that nothing else needs it installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal

import msgspec

from hftkit.book.order_book import OrderBook
from hftkit.book.sync import BINANCE_SPOT_RULES, BookSynchronizer
from hftkit.core.errors import HftkitError
from hftkit.core.types import BalanceUpdate, BookDelta, BookTicker, Fill, Instrument, OrderUpdate, Trade
from hftkit.venues.binance import codec as binance_codec
from hftkit.venues.binance import rest
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.parse import BinanceParser
from hftkit.venues.binance.streams import MarketStreamSession, _depth, _Route
from hftkit.venues.binance.user_data import UserDataParser
from hftkit.venues.thalex import codec as thalex_codec
from hftkit.venues.thalex.adapter import ThalexAdapter, ThalexConfig

CLASSIFIED: tuple[type[BaseException], ...] = (HftkitError, msgspec.DecodeError)
"""What a decoder may raise: the project's own errors, and msgspec's (each feed classifies them
with ``hftkit.codec.classify_decode_error``). ``RecursionError``, ``decimal.InvalidOperation``,
``OverflowError``, ``KeyError`` and the like are bugs."""

INT64_MAX = 2**63 - 1

BINANCE_SYMBOL = "BTCUSDT"
BINANCE_INSTRUMENT = Instrument("binance", BINANCE_SYMBOL, "BTC", "USDT", "0.01", "0.00001")
USER_INSTRUMENTS = {
    BINANCE_SYMBOL: BINANCE_INSTRUMENT,
    "BNBBTC": Instrument("binance", "BNBBTC", "BNB", "BTC", "0.00000010", "0.00000100"),  # recorded frames
}
THALEX_SYMBOL = "BTC-PERPETUAL"
THALEX_INSTRUMENT = Instrument("thalex", THALEX_SYMBOL, "BTC", "USD", "1", "0.001")


def check_steps(value: int, minimum: int, what: str) -> None:
    """Integer ticks or lots within ``[minimum, INT64_MAX]``: what a book or a venue can hold."""
    assert type(value) is int, f"{what} is {type(value).__name__}, not int ticks/lots"
    assert minimum <= value <= INT64_MAX, f"{what} {value} outside [{minimum}, 2**63-1]"


def check_levels(levels: Iterable[tuple[int, int]], *, book: bool) -> None:
    """Depth levels: price >= 1 tick; size >= 1 lot in a book, >= 0 (a delete) in a delta."""
    for price, size in levels:
        check_steps(price, 1, "price")
        check_steps(size, 1 if book else 0, "size")


def check_book(book: OrderBook) -> None:
    check_levels(book.bids(), book=True)
    check_levels(book.asks(), book=True)


def check_event(event: object) -> None:
    """What a decoder hands on is in range: the tracker and the books trust it."""
    if isinstance(event, BookDelta):
        check_levels(event.bids, book=False)
        check_levels(event.asks, book=False)
    elif isinstance(event, Trade):
        check_steps(event.price, 1, "trade price")
        check_steps(event.size, 0, "trade size")
    elif isinstance(event, BookTicker):
        for name in ("bid_price", "bid_size", "ask_price", "ask_size"):
            check_steps(getattr(event, name), 0, name)
    elif isinstance(event, Fill):
        check_steps(event.price, 1, "fill price")
        check_steps(event.quantity, 1, "fill quantity")
        assert math.isfinite(event.fee), f"fee {event.fee}"
    elif isinstance(event, OrderUpdate):
        check_steps(event.price, 0, "order price")
        check_steps(event.quantity, 0, "order quantity")
        check_steps(event.filled, 0, "filled")
        assert event.quantity == 0 or event.filled <= event.quantity, "filled more than ordered"
    elif isinstance(event, BalanceUpdate):
        for amount in (event.free, event.locked):
            assert isinstance(amount, Decimal) and amount.is_finite() and amount >= 0, f"balance {amount}"


# -- Binance -------------------------------------------------------------------------------


class _Stats:
    malformed_responses = 0


class _RestClient:
    """What ``rest._decode`` touches of a client: its venue name and malformed counter."""

    def __init__(self) -> None:
        self.venue = "binance"
        self.stats = _Stats()


@functools.cache
def _binance() -> tuple[MarketStreamSession, list[object], BinanceParser, UserDataParser]:
    events: list[object] = []
    session = MarketStreamSession(Market.SPOT, None, {BINANCE_SYMBOL: BINANCE_INSTRUMENT}, events.append)  # type: ignore[arg-type]
    session._parsers[BINANCE_SYMBOL.lower()] = BinanceParser(BINANCE_INSTRUMENT)
    user = UserDataParser("binance", USER_INSTRUMENTS)
    return session, events, BinanceParser(BINANCE_INSTRUMENT), user


def binance_stream(frame: bytes) -> None:
    """A combined-stream frame through the session's own classifier: nothing may escape."""
    session, events, _parser, _user = _binance()
    events.clear()
    session._on_frame(_Route("", 0), frame, 0)
    for event in events:
        check_event(event)


def binance_depth(frame: bytes) -> None:
    """A depth frame, raw (``depth_frame``) and typed (the session's decoder), onto a synced book."""
    _session, _events, parser, _user = _binance()
    for decode in (parser.depth_frame, _typed_depth(parser)):
        try:
            delta = decode(frame)
        except CLASSIFIED:
            continue
        check_event(delta)
        sync = BookSynchronizer(OrderBook(BINANCE_SYMBOL), BINANCE_SPOT_RULES)
        sync.on_snapshot(delta.first_update_id - 1, [(100, 5), (99, 1)], [(101, 5), (102, 1)])
        with contextlib.suppress(*CLASSIFIED):
            sync.on_depth(
                delta.first_update_id, delta.last_update_id, delta.previous_update_id, delta.bids, delta.asks
            )
        check_book(sync.book)


def _typed_depth(parser: BinanceParser) -> Callable[[bytes], BookDelta]:
    envelope = msgspec.json.Decoder(binance_codec.CombinedStreamMessage[msgspec.Raw])

    def decode(frame: bytes) -> BookDelta:
        try:
            return parser.depth_update(_depth.decode(envelope.decode(frame).data))
        except RecursionError as error:  # the session classifies this; see test_nesting_depth
            raise msgspec.DecodeError(str(error)) from error

    return decode


def binance_user_data(frame: bytes) -> None:
    """A user-data frame: a counted CodecError or in-range events, never anything else."""
    _session, _events, _parser, user = _binance()
    try:
        events = user.parse(frame)
    except HftkitError:  # CodecError is the contract; other HftkitErrors would be unclassified
        return
    for event in events:
        check_event(event)


_REST_DECODERS = (
    rest._order_decoder,
    rest._orders_decoder,
    rest._time_decoder,
    rest._info_decoder,
    rest._depth_decoder,
    rest._account_decoder,
    rest._futures_balances_decoder,
    rest._positions_decoder,
    rest._listen_key_decoder,
)


def binance_rest_body(body: bytes) -> None:
    """A REST answer body through every decoder the client uses, and the error-body reader."""
    client = _RestClient()
    rest._decode_error(body)
    _session, _events, parser, _user = _binance()
    for decoder in _REST_DECODERS:
        try:
            value = rest._decode(decoder, body, client)  # type: ignore[arg-type]
        except CLASSIFIED:
            continue
        if isinstance(value, binance_codec.DepthSnapshot):
            with contextlib.suppress(*CLASSIFIED):
                check_event(parser.depth_snapshot(value))


@functools.cache
def _rest_client() -> rest.BinanceRestClient:
    return rest.BinanceRestClient(Market.SPOT, None)


def binance_rest_headers(data: bytes) -> None:
    """Usage-weight and Retry-After headers as the HTTP layer hands them over (latin-1 text)."""
    value = data.decode("latin-1")
    client = _rest_client()
    client._observe_usage({name: value for name in client._window_headers})
    retry_after = rest._retry_after({"Retry-After": value})
    assert retry_after is None or (math.isfinite(retry_after) and retry_after >= 0), retry_after


# -- Thalex --------------------------------------------------------------------------------


@functools.cache
def _thalex() -> tuple[ThalexAdapter, thalex_codec.ThalexCodec, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()

    async def build() -> ThalexAdapter:
        adapter = ThalexAdapter(ThalexConfig(url="ws://127.0.0.1:9/ws/api/v2"))
        adapter._register_private_handlers()
        return adapter

    adapter = loop.run_until_complete(build())
    return adapter, thalex_codec.ThalexCodec("thalex", {THALEX_SYMBOL: THALEX_INSTRUMENT}), loop


def thalex_rpc(frame: bytes) -> None:
    """A frame through the RPC session and the adapter's notification handlers: nothing escapes."""
    adapter, _codec, _loop = _thalex()
    adapter._rpc.on_message(frame, 0)


_BOOK = msgspec.json.Decoder(thalex_codec.ThalexBookNotification)
_ORDERS = msgspec.json.Decoder(list[thalex_codec.ThalexOrderStatus])
_TRADES = msgspec.json.Decoder(list[thalex_codec.ThalexTrade])


THALEX_HANDLED: tuple[type[BaseException], ...] = (
    *CLASSIFIED,
    ValueError,
    KeyError,
    TypeError,
    RecursionError,
)
"""What the Thalex adapter's notification dispatcher catches and counts per channel (see
``ThalexAdapter._on_notification``): the codec may raise these, nothing else."""


def thalex_notification(payload: bytes) -> None:
    """A book, order or trade payload through the codec: handled errors or in-range events."""
    _adapter, codec, _loop = _thalex()
    for convert in (_thalex_book, _thalex_orders, _thalex_trades):
        try:
            convert(codec, payload)
        except THALEX_HANDLED:
            continue


def _thalex_book(codec: thalex_codec.ThalexCodec, payload: bytes) -> None:
    notification = _BOOK.decode(payload)
    delta = codec.book_delta(THALEX_SYMBOL, notification, is_snapshot=True)
    if delta is None:
        return
    check_event(delta)
    book = OrderBook(THALEX_SYMBOL)
    book.apply_snapshot(delta.bids, delta.asks)
    check_book(book)
    for trade in codec.book_trades(THALEX_SYMBOL, notification):
        check_event(trade)


def _thalex_orders(codec: thalex_codec.ThalexCodec, payload: bytes) -> None:
    for order in _ORDERS.decode(payload):
        for event in codec.order_events(order):
            check_event(event)


def _thalex_trades(codec: thalex_codec.ThalexCodec, payload: bytes) -> None:
    for trade in _TRADES.decode(payload):
        fill = codec.trade_fill(trade)
        if fill is not None:
            check_event(fill)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "binance_stream": binance_stream,
    "binance_depth": binance_depth,
    "binance_user_data": binance_user_data,
    "binance_rest_body": binance_rest_body,
    "binance_rest_headers": binance_rest_headers,
    "thalex_rpc": thalex_rpc,
    "thalex_notification": thalex_notification,
}


def run_classified(target: Callable[[bytes], None], data: bytes) -> None:
    """Run ``target``; a classified error is an accepted outcome, anything else propagates."""
    with contextlib.suppress(*CLASSIFIED):
        target(data)


def main(argv: list[str]) -> None:
    """``atheris_targets.py TARGET [libFuzzer options]``: coverage-guided run of one target."""
    import atheris  # only here: pytest and the hypothesis suite never need it

    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [-atheris_runs=N ...]")
    target = TARGETS[argv[1]]
    atheris.instrument_all()  # coverage of hftkit, already imported above

    def one_input(data: bytes) -> None:
        run_classified(target, data)

    atheris.Setup([argv[0], *argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
