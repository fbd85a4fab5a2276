"""Thalex sans-I/O codec and login tokens, checked against the exchange's own spec examples."""

from __future__ import annotations

import json

import msgspec
import orjson
import pytest

from hftkit.core import ContractKind, Fill, Instrument, OrderStatus, OrderUpdate, PositionUpdate, Side
from hftkit.core.errors import HftkitError
from hftkit.datasets import shared_data_dir
from hftkit.venues.thalex import codec
from hftkit.venues.thalex.auth import (
    ThalexCredentials,
    TokenError,
    generate_key_pair,
    make_login_token,
    token_key_id,
    verify_login_token,
)


def spec_example(schema_path: str):
    examples = json.loads((shared_data_dir() / "thalex_spec" / "thalex_spec_examples.json").read_bytes())
    for entry in examples["examples"]["openapi.json"] + examples["examples"].get("ws_spec.json", []):
        if entry["path"] == schema_path:
            return entry["example"]
    raise KeyError(schema_path)


def perpetual() -> Instrument:
    return Instrument("thalex", "BTC-PERPETUAL", "BTC", "USD", "1", "0.001", "0", ContractKind.PERPETUAL)


def test_spec_order_status_example_becomes_an_order_update():
    order = msgspec.convert(spec_example("/components/schemas/OrderStatus"), codec.ThalexOrderStatus)
    (update,) = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": perpetual()}).order_events(order)
    assert isinstance(update, OrderUpdate)
    assert (update.status, update.side, update.price, update.quantity, update.filled) == (
        OrderStatus.NEW,
        Side.BUY,
        45000,
        1100,
        0,
    )
    assert update.client_order_id == "1728379719872"  # no client id: the venue id stands in


def test_fills_of_an_order_update_become_fills_with_our_client_id():
    wire = (
        b'{"order_id":"001BF14D00000003","client_order_id":100,"instrument_name":"BTC-PERPETUAL",'
        b'"direction":"sell","order_type":"limit","time_in_force":"good_till_cancelled","price":47010,'
        b'"amount":0.1,"filled_amount":0.1,"remaining_amount":0,"status":"filled","fills":[{"trade_id":'
        b'"0080000000000000169F22D05B785A2B","price":47010,"amount":0.1,"time":1795254654.66,"maker_taker":'
        b'"taker","leg_index":0}],"change_reason":"fill","delete_reason":"filled","persistent":false,'
        b'"create_time":1795254654.654124,"close_time":1795254654.66}'
    )
    order = msgspec.json.decode(wire, type=codec.ThalexOrderStatus)
    update, fill = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": perpetual()}).order_events(
        order, client_ids={100: "mm-7"}
    )
    assert update.status is OrderStatus.FILLED and update.client_order_id == "mm-7"
    assert isinstance(fill, Fill)
    assert (fill.price, fill.quantity, fill.side, fill.is_maker) == (47010, 100, Side.SELL, False)


def test_snapshot_updates_do_not_replay_old_fills():
    order = codec.ThalexOrderStatus(
        order_id="1",
        direction="buy",
        amount=1,
        filled_amount=0.5,
        remaining_amount=0.5,
        status="partially_filled",
        instrument_name="BTC-PERPETUAL",
        price=100,
        fills=[codec.ThalexFill("t", 100, 0.5)],
        change_reason="existing",
    )
    events = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": perpetual()}).order_events(order)
    assert len(events) == 1 and events[0].filled == 500


def test_post_only_cancel_is_reported_as_expired():
    order = codec.ThalexOrderStatus(
        order_id="1",
        direction="buy",
        amount=1,
        filled_amount=0,
        remaining_amount=0,
        status="cancelled",
        instrument_name="BTC-PERPETUAL",
        price=100,
        delete_reason="immediate_cancel",
    )
    (update,) = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": perpetual()}).order_events(order)
    assert update.status is OrderStatus.EXPIRED


def test_spec_trade_and_portfolio_examples():
    thalex = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": perpetual()})
    trade = msgspec.convert(spec_example("/components/schemas/Trade"), codec.ThalexTrade)
    fill = thalex.trade_fill(trade)
    assert fill is not None and (fill.price, fill.quantity, fill.fee) == (47280, 100, 1.18)
    entry = msgspec.convert(spec_example("/components/schemas/PortfolioEntry"), codec.ThalexPortfolioEntry)
    position = thalex.position(entry)
    assert isinstance(position, PositionUpdate) and position.quantity == 1000


def test_spec_book_notification_becomes_a_delta_with_trades():
    notification = spec_example(
        "/components/schemas/book.<instrument>.<grouping>.<nlevels>.<delay>_payload/properties/notification"
    )
    book = msgspec.convert(notification, codec.ThalexBookNotification)
    instrument = Instrument("thalex", "BTC-PERPETUAL", "BTC", "USD", "0.5", "1", "0", ContractKind.PERPETUAL)
    thalex = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": instrument})
    delta = thalex.book_delta("BTC-PERPETUAL", book, is_snapshot=True)
    assert delta is not None and delta.bids == [(18241, 0), (18242, 54)] and delta.is_snapshot
    trades = thalex.book_trades("BTC-PERPETUAL", book)
    assert [(trade.price, trade.size, trade.aggressor) for trade in trades] == [
        (18241, 15, Side.BUY),
        (18242, 30, Side.BUY),
    ]


def test_spec_instrument_example_builds_an_instrument():
    wire = codec.ThalexInstrument(
        instrument_name="BTC-PERPETUAL",
        tick_size=1,
        volume_tick_size=0.001,
        min_order_amount=0.001,
        type="perpetual",
        product="FBTCUSD",
        underlying="BTCUSD",
    )
    instrument = codec.instrument_from_wire("thalex", wire)
    assert instrument is not None
    assert (instrument.base, instrument.kind, instrument.min_quantity) == ("BTC", ContractKind.PERPETUAL, 1)
    assert instrument.price_to_ticks("47000") == 47000
    assert codec.instrument_from_wire("thalex", msgspec.structs.replace(wire, type="combination")) is None


def test_frames_are_routed_by_shape():
    response = codec.decode_frame(b'{"id":5,"result":null}')
    assert response.id == 5 and response.result is not msgspec.UNSET and not response.is_notification
    error = codec.decode_frame(b'{"id":6,"error":{"code":4,"message":"throttled"}}')
    assert error.error == codec.RpcError(4, "throttled") and error.result is msgspec.UNSET
    push = codec.decode_frame(b'{"channel_name":"session.orders","notification":[]}')
    assert push.is_notification and bytes(push.notification) == b"[]"
    with pytest.raises(msgspec.DecodeError):
        codec.decode_frame(b'{"id":')


def test_error_codes_map_to_classified_exceptions():
    assert isinstance(codec.error_from_wire(1, "order not found"), codec.ThalexOrderNotFoundError)
    throttled = codec.error_from_wire(4, "throttle", request_id=9)
    assert (
        isinstance(throttled, codec.ThalexThrottledError)
        and throttled.retryable
        and throttled.request_id == 9
    )
    assert isinstance(codec.error_from_wire(19, "auth"), codec.ThalexAuthenticationError)
    rejected = codec.error_from_wire(15, "price not aligned")
    assert isinstance(rejected, codec.ThalexRejectedError) and not rejected.retryable
    assert codec.error_from_wire(20, "temporary").retryable


def test_requests_drop_null_params_and_keep_exact_numbers():
    wire = codec.encode_request(
        "private/insert",
        {
            "direction": "buy",
            "price": codec.wire_number("47000.5"),
            "amount": codec.wire_number("0.001"),
            "label": None,
        },
        7,
    )
    assert orjson.loads(wire) == {
        "method": "private/insert",
        "params": {"direction": "buy", "price": 47000.5, "amount": 0.001},
        "id": 7,
    }
    assert b'"price":47000.5' in wire
    assert b'"id"' not in codec.encode_request("public/instruments", None, None)


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair()


def test_login_token_verifies_with_the_matching_public_key(key_pair):
    private_pem, public_pem = key_pair
    token = make_login_token(ThalexCredentials("K123", private_pem), issued_at=1_000.5)
    assert token_key_id(token) == "K123"
    assert verify_login_token(token, public_pem, now=1_010.0) == 1_000.5


def test_login_token_is_refused_when_stale_tampered_or_signed_by_another_key(key_pair):
    private_pem, public_pem = key_pair
    token = make_login_token(ThalexCredentials("K123", private_pem), issued_at=1_000)
    with pytest.raises(TokenError, match="iat"):
        verify_login_token(token, public_pem, now=2_000)
    header, _payload, signature = token.split(".")
    forged = make_login_token(ThalexCredentials("K123", private_pem), issued_at=5).split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        verify_login_token(f"{header}.{forged}.{signature}", public_pem, now=1_000)
    _other_private, other_public = generate_key_pair()
    with pytest.raises(TokenError, match="signature"):
        verify_login_token(token, other_public, now=1_000)
    for garbage in ("", "a.b", "!!.??.**"):
        with pytest.raises(TokenError):
            verify_login_token(garbage, public_pem, now=1_000)
    with pytest.raises(TokenError):
        token_key_id("not-a-token")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    ("bids", "kind"),
    [
        ([[18241.2, 1, 0]], "off_grid"),  # tick 0.5: rounding would merge it into 18241.0
        ([[18241.5, 1.25, 0]], "off_grid"),  # lot 1
        ([[0.0, 1, 0]], "non_positive_price"),
        ([[-50.0, 1, 0]], "non_positive_price"),
        ([[18241.5, -3, 0]], "negative_size"),
    ],
)
def test_book_levels_off_grid_or_non_positive_are_malformed_never_rounded(monkeypatch, native, bids, kind):
    """Issue 17 item 8: a rounded level merges two venue levels, and a later delete removes the wrong one."""
    if not native:
        monkeypatch.setattr(codec, "NATIVE", None)
    elif codec.NATIVE is None:
        pytest.skip("hftkit._native is not built")
    instrument = Instrument("thalex", "BTC-PERPETUAL", "BTC", "USD", "0.5", "1", "0", ContractKind.PERPETUAL)
    thalex = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": instrument})
    good = codec.ThalexBookNotification(bid_changes=[(18241.5, 2.0, 0.0)], ask_changes=[(18242.0, 0.0, 0.0)])
    delta = thalex.book_delta("BTC-PERPETUAL", good, is_snapshot=False)
    assert delta is not None and delta.bids == [(36483, 2)] and delta.asks == [(36484, 0)]
    bad = msgspec.convert({"bid_changes": bids}, codec.ThalexBookNotification)
    with pytest.raises(codec.ThalexBookLevelError) as raised:
        thalex.book_delta("BTC-PERPETUAL", bad, is_snapshot=False)
    assert raised.value.kind == kind


def test_the_insert_prefix_is_byte_for_byte_what_the_generic_encoder_makes():
    params = {
        "direction": "sell",
        "instrument_name": "BTC-PERPETUAL",
        "amount": codec.wire_number("0.25"),
        "price": codec.wire_number("61234.5"),
        "order_type": "limit",
        "time_in_force": "good_till_cancelled",
        "post_only": True,
        "reject_post_only": True,
        "reduce_only": True,
        "client_order_id": 18446744073709551615,
        "label": 'quote "A"',
    }
    prefix = codec.insert_prefix(
        direction="sell",
        instrument_name="BTC-PERPETUAL",
        amount="0.25",
        price="61234.5",
        order_type="limit",
        time_in_force="good_till_cancelled",
        post_only=True,
        reject_post_only=True,
        reduce_only=True,
        client_order_id=18446744073709551615,
        label='quote "A"',
    )
    assert prefix + b"77}" == codec.encode_request("private/insert", params, 77)
    market = codec.insert_prefix(
        direction="buy",
        instrument_name="ETH-PERPETUAL",
        amount="3",
        price=None,
        order_type="market",
        time_in_force="immediate_or_cancel",
        client_order_id=5,
    )
    assert orjson.loads(market + b"1}")["params"] == {
        "direction": "buy",
        "instrument_name": "ETH-PERPETUAL",
        "amount": 3,
        "order_type": "market",
        "time_in_force": "immediate_or_cancel",
        "client_order_id": 5,
    }


@pytest.mark.parametrize("label", [None, 'quote "A"'])
@pytest.mark.parametrize("reject_post_only", [False, True])
def test_the_insert_encoder_writes_what_insert_prefix_writes(label, reject_post_only):
    """Every order shape, amount and price the cached encoder joins, byte for byte, through a
    cache smaller than the orders (so its clearing is crossed too)."""
    instrument = Instrument(
        "thalex", "BTC-PERPETUAL", "BTC", "USD", "0.5", "0.001", "0", ContractKind.PERPETUAL
    )
    encoder = codec.InsertEncoder(label, reject_post_only, capacity=3)
    checked = 0
    for quantity in (1, 10, 250, 1000, 1):  # 0.001, 0.01, 0.25, 1, and a repeat from the cache
        for price in (None, 2, 122_469, 122_468, 2):  # market, 1, 61234.5, 61234, a repeat
            for side in (Side.BUY, Side.SELL):
                for ioc in (False, True):
                    for post_only in (False, True):
                        for reduce_only in (False, True):
                            made = encoder.prefix(
                                instrument, side, quantity, price, ioc, post_only, reduce_only, 77
                            )
                            market = price is None
                            expected = codec.insert_prefix(
                                direction="buy" if side is Side.BUY else "sell",
                                instrument_name="BTC-PERPETUAL",
                                amount=codec.canonical_number_text(instrument.lots_to_quantity(quantity)),
                                price=None
                                if market
                                else codec.canonical_number_text(instrument.ticks_to_price(price)),
                                order_type="market" if market else "limit",
                                time_in_force="immediate_or_cancel"
                                if market or ioc
                                else "good_till_cancelled",
                                post_only=post_only,
                                reject_post_only=post_only and reject_post_only,
                                reduce_only=reduce_only,
                                client_order_id=77,
                                label=label,
                            )
                            assert made == expected
                            orjson.loads(made + b"1}")  # a whole JSON frame
                            checked += 1
    assert checked == 400
    assert b'"amount":0.25,"price":61234.5,' in encoder.prefix(
        instrument, Side.SELL, 250, 122_469, False, False, False, 1
    )


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    ("price", "amount", "filled"),
    [
        (18241.5, 2.0, 0.0),  # on the grids
        (18241.3, 2.4, 1.6),  # off them: rounded to the nearest step, as number_to_steps does
        (0.0, 0.0, 0.0),
        (1e-300, 1e300, 0.0),
        (-18241.5, -1.0, 0.0),
    ],
)
def test_order_update_steps_are_number_to_steps_on_both_paths(monkeypatch, native, price, amount, filled):
    if not native:
        monkeypatch.setattr(codec, "NATIVE", None)
    elif codec.NATIVE is None:
        pytest.skip("hftkit._native is not built")
    instrument = Instrument("thalex", "BTC-PERPETUAL", "BTC", "USD", "0.5", "1", "0", ContractKind.PERPETUAL)
    order = msgspec.convert(
        {
            "order_id": "001",
            "instrument_name": "BTC-PERPETUAL",
            "direction": "buy",
            "price": price,
            "amount": amount,
            "filled_amount": filled,
            "remaining_amount": 0.0,
            "status": "open",
            "order_type": "limit",
            "time_in_force": "good_till_cancelled",
            "change_reason": "insert",
            "create_time": 1.0,
        },
        codec.ThalexOrderStatus,
    )
    try:
        expected: object = (
            codec.number_to_steps(instrument, price, price=True),
            codec.number_to_steps(instrument, amount, price=False),
            codec.number_to_steps(instrument, filled, price=False),
        )
    except HftkitError as error:  # 1e300: an exponent no venue sends
        expected = type(error)
    try:
        (update,) = codec.ThalexCodec("thalex", {"BTC-PERPETUAL": instrument}).order_events(order)
        outcome: object = (update.price, update.quantity, update.filled)
    except HftkitError as error:
        outcome = type(error)
    assert outcome == expected
