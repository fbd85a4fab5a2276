"""Binance user-data events -> normalized OrderUpdate, Fill, BalanceUpdate, PositionUpdate.

Accepts the spot WebSocket-API push (``{"subscriptionId":..,"event":{..}}``), bare events
(listenKey streams) and combined-stream envelopes. Unknown event types are counted and
skipped; malformed frames raise the codec's classified error for the caller to count.

Every failure leaves ``parse`` as one counted ``CodecError``: bad JSON and nesting too deep
(``RecursionError`` inside msgspec) by their kind, values the schema's decimal pattern refuses
(NaN, Infinity, Unicode digits, negative balances) as ``schema`` at their JSON path, and
events that contradict themselves (a fill of no quantity, more filled than ordered) as
``schema`` too, so the tracker never sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

import msgspec

from hftkit.codec.classify import classify_decode_error
from hftkit.codec.decode import DECODE_FAILURES
from hftkit.codec.errors import (
    DEFAULT_COUNTERS,
    CodecError,
    CodecErrorCounters,
    CodecErrorKind,
    CodecOperation,
    raise_counted,
)
from hftkit.core.bounded import BoundedCounter
from hftkit.core.errors import HftkitError
from hftkit.core.types import (
    BalanceUpdate,
    ContractKind,
    Fill,
    Instrument,
    OrderStatus,
    OrderUpdate,
    PositionUpdate,
    Side,
)
from hftkit.venues.binance import codec
from hftkit.venues.binance.parse import BinanceParser

STATUSES: dict[str, OrderStatus] = {
    "NEW": OrderStatus.NEW,
    "PENDING_NEW": OrderStatus.PENDING_NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.PENDING_CANCEL,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}
SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}

UserEvent = OrderUpdate | Fill | BalanceUpdate | PositionUpdate

# One pass per frame: the event type picks the schema inside msgspec (a union tagged on "e").
_push = msgspec.json.Decoder(codec.UserDataPush)
_combined = msgspec.json.Decoder(codec.CombinedStreamMessage[codec.UserEvent])
_bare = msgspec.json.Decoder(codec.UserEvent)
# Only on the failure path: tell an event type we do not model from a malformed frame.
_probe = msgspec.json.Decoder(codec.EventTypeProbe)
_envelope = msgspec.json.Decoder(codec.UserDataEnvelope)
_combined_raw = msgspec.json.Decoder(codec.CombinedStreamMessage[msgspec.Raw])


MAX_UNKNOWN_EVENT_TYPES = 32


class UserDataParser:
    """Turns user-data frames into normalized events for one venue name and its instruments."""

    def __init__(
        self,
        venue: str,
        instruments: Mapping[str, Instrument],
        counters: CodecErrorCounters | None = None,
    ) -> None:
        self.venue = venue
        self._instruments = instruments
        self.counters = DEFAULT_COUNTERS if counters is None else counters
        # keyed by the venue's event type: bounded, the rest fold into "<other>"
        self.unknown_events: BoundedCounter[str] = BoundedCounter(MAX_UNKNOWN_EVENT_TYPES)
        self.unknown_symbols = 0
        self._parsers: dict[str, BinanceParser] = {}
        self._handlers: dict[type, Callable[[object, int], list[UserEvent]]] = {
            codec.ExecutionReport: self._execution_report,  # type: ignore[dict-item]
            codec.OutboundAccountPosition: self._account_position,  # type: ignore[dict-item]
            codec.BalanceUpdate: lambda event, receive_ns: [],
            codec.OrderTradeUpdate: self._futures_order,  # type: ignore[dict-item]
            codec.AccountUpdate: self._futures_account,  # type: ignore[dict-item]
            codec.ListenKeyExpired: lambda event, receive_ns: [],
        }

    def parse(self, frame: bytes, receive_ns: int = 0) -> list[UserEvent]:
        """Events in one frame; [] for control frames and unknown event types.

        Raises a counted ``CodecError`` for anything malformed, and nothing else.
        """
        try:
            event = self.decode_event(frame)
        except DECODE_FAILURES as error:
            return raise_counted(classify_decode_error(error, frame, "UserEvent"), self.counters, error)
        if event is None:
            return []
        try:
            return self._handlers[type(event)](event, receive_ns)
        except CodecError:
            raise
        except HftkitError as error:  # a value off its grid or beyond the 64-bit range
            return self._malformed(str(error), type(event).__name__, error)

    def _malformed(self, detail: str, target: str, cause: BaseException | None = None) -> list[UserEvent]:
        error = CodecError(CodecErrorKind.SCHEMA, CodecOperation.DECODE, detail, target=target)
        return raise_counted(error, self.counters, cause)

    def decode_event(self, frame: bytes) -> codec.UserEvent | None:
        """The typed wire event of a frame, or None (counted) for an event type not modelled."""
        head = frame[:24]
        try:
            if b'"subscriptionId"' in head:
                return _push.decode(frame).event
            if b'"stream"' in head:
                return _combined.decode(frame).data
            return _bare.decode(frame)
        except msgspec.ValidationError:
            event_type = self._event_type(frame)
            if event_type in codec.USER_EVENT_KINDS:
                raise  # a known event that does not fit its schema: malformed, let it be counted
            self.unknown_events.add(event_type)
            return None

    @staticmethod
    def _event_type(frame: bytes) -> str:
        head = frame[:24]
        if b'"subscriptionId"' in head:
            payload: bytes | msgspec.Raw = _envelope.decode(frame).event
        elif b'"stream"' in head:
            payload = _combined_raw.decode(frame).data
        else:
            payload = frame
        return _probe.decode(payload).event_type

    def _instrument(self, symbol: str) -> Instrument | None:
        instrument = self._instruments.get(symbol)
        if instrument is None:
            self.unknown_symbols += 1
        return instrument

    def _parser(self, symbol: str) -> BinanceParser | None:
        parser = self._parsers.get(symbol)
        if parser is None:
            instrument = self._instrument(symbol)
            if instrument is None:
                return None
            parser = self.parser(instrument)
        return parser

    def parser(self, instrument: Instrument) -> BinanceParser:
        """The instrument's converter of wire texts (C grids where built, small caches behind
        them), made once: the account's reports and the adapter's order answers share it."""
        parser = self._parsers.get(instrument.symbol)
        if parser is None:
            parser = self._parsers[instrument.symbol] = BinanceParser(instrument, cache_capacity=4096)
        return parser

    def _execution_report(self, report: codec.ExecutionReport, receive_ns: int) -> list[UserEvent]:
        # A cancel's report carries the cancel request's id in c and the order's in C.
        return self._order_events(
            report,
            report.original_client_order_id or report.client_order_id,
            report.reject_reason,
            report.event_time,
            report.transaction_time,
            receive_ns,
        )

    def _account_position(self, event: codec.OutboundAccountPosition, receive_ns: int) -> list[UserEvent]:
        return [
            BalanceUpdate(
                venue=self.venue,
                asset=balance.asset,
                free=Decimal(balance.free),
                locked=Decimal(balance.locked),
                event_time_ms=event.event_time,
            )
            for balance in event.balances
        ]

    def _futures_order(self, event: codec.OrderTradeUpdate, receive_ns: int) -> list[UserEvent]:
        order = event.order
        return self._order_events(
            order, order.client_order_id, "NONE", event.event_time, order.trade_time, receive_ns
        )

    def _order_events(
        self,
        order: codec.ExecutionReport | codec.FuturesOrderUpdate,
        client_order_id: str,
        reject_reason: str,
        event_time_ms: int,
        trade_time_ms: int,
        receive_ns: int,
    ) -> list[UserEvent]:
        """OrderUpdate, plus a Fill when the event is a trade: one shape for spot and USD-M."""
        parser = self._parser(order.symbol)
        if parser is None:
            return []
        # C grids; text off their fast path goes to the parser's bounded caches
        price, size = parser.price_steps, parser.size_steps
        side = SIDES[order.side]
        venue_order_id = str(order.order_id)
        quantity = size(order.quantity)
        filled = size(order.cumulative_quantity)
        if filled > quantity and (quantity > 0 or order.order_type != "MARKET"):
            # a quote-quantity market order may report q=0; any other order never overfills
            self._malformed(f"filled {order.cumulative_quantity} exceeds quantity {order.quantity}", "order")
        events: list[UserEvent] = [
            OrderUpdate(
                venue=self.venue,
                symbol=order.symbol,
                client_order_id=client_order_id,
                venue_order_id=venue_order_id,
                status=STATUSES.get(order.status, OrderStatus.UNKNOWN),
                side=side,
                price=price(order.price) if order.order_type != "MARKET" else 0,
                quantity=quantity,
                filled=filled,
                reason="" if reject_reason == "NONE" else reject_reason,
                event_time_ms=event_time_ms,
                receive_ns=receive_ns,
            )
        ]
        if order.execution_type == "TRADE":
            fill_quantity = size(order.last_quantity)
            if fill_quantity <= 0:
                self._malformed(f"a trade of quantity {order.last_quantity}", "fill")
            events.append(
                Fill(
                    venue=self.venue,
                    symbol=order.symbol,
                    client_order_id=client_order_id,
                    venue_order_id=venue_order_id,
                    trade_id=str(order.trade_id),
                    side=side,
                    price=price(order.last_price),
                    quantity=fill_quantity,
                    fee=float(order.commission),
                    fee_asset=order.commission_asset or "",
                    is_maker=order.is_maker,
                    event_time_ms=trade_time_ms,
                    receive_ns=receive_ns,
                )
            )
        return events

    def _futures_account(self, event: codec.AccountUpdate, receive_ns: int) -> list[UserEvent]:
        for balance in event.data.balances:
            if Decimal(balance.cross_wallet_balance) > Decimal(balance.wallet_balance):
                self._malformed(f"{balance.asset}: cross wallet balance above the wallet balance", "balance")
        events: list[UserEvent] = [
            BalanceUpdate(
                venue=self.venue,
                asset=balance.asset,
                free=Decimal(balance.cross_wallet_balance),
                locked=Decimal(balance.wallet_balance) - Decimal(balance.cross_wallet_balance),
                event_time_ms=event.event_time,
            )
            for balance in event.data.balances
        ]
        for position in event.data.positions:
            instrument = self._instrument(position.symbol)
            if instrument is None:
                continue
            events.append(
                PositionUpdate(
                    venue=self.venue,
                    symbol=position.symbol,
                    quantity=instrument.lots.to_steps(position.position_amount),
                    entry_price=Decimal(position.entry_price),
                    event_time_ms=event.event_time,
                )
            )
        return events


def instruments_from_exchange_info(venue: str, info: codec.ExchangeInfo) -> dict[str, Instrument]:
    """Instruments with tick/lot/min-notional from exchangeInfo filters (trading symbols only)."""
    instruments: dict[str, Instrument] = {}
    for symbol in info.symbols:
        if symbol.status != "TRADING":
            continue
        filters = {entry.filter_type: entry for entry in symbol.filters}
        price_filter = filters.get("PRICE_FILTER")
        lot_filter = filters.get("LOT_SIZE")
        if (
            price_filter is None
            or lot_filter is None
            or not price_filter.tick_size
            or not lot_filter.step_size
        ):
            continue
        notional_filter = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL")
        min_notional = "0"
        if notional_filter is not None:
            min_notional = notional_filter.min_notional or notional_filter.notional or "0"
        kind = ContractKind.SPOT
        if symbol.contract_type == "PERPETUAL":
            kind = ContractKind.PERPETUAL
        elif symbol.contract_type:
            kind = ContractKind.FUTURE
        if Decimal(price_filter.tick_size) <= 0 or Decimal(lot_filter.step_size) <= 0:
            continue
        instruments[symbol.symbol] = Instrument(
            venue,
            symbol.symbol,
            symbol.base_asset,
            symbol.quote_asset,
            price_filter.tick_size,
            lot_filter.step_size,
            min_notional,
            kind,
            min_quantity=lot_filter.min_qty
            if lot_filter.min_qty and Decimal(lot_filter.min_qty) > 0
            else None,
            max_quantity=lot_filter.max_qty
            if lot_filter.max_qty and Decimal(lot_filter.max_qty) > 0
            else None,
        )
    return instruments
