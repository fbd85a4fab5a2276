"""Acceptance: Binance's official SDKs (``binance-sdk-spot``,
``binance-sdk-derivatives-trading-usds-futures``) trade against the simulator through their
own public URL options, nothing patched.

Every response goes through the SDKs' pydantic models, so a field of the wrong type or a missing
envelope fails here. The REST clients are synchronous (``requests``): they run in a worker thread
while the simulator serves in the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from binance_common.configuration import (
    ConfigurationRestAPI,
    ConfigurationWebSocketAPI,
    ConfigurationWebSocketStreams,
)
from binance_common.errors import BadRequestError
from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
    DerivativesTradingUsdsFutures,
)
from binance_sdk_spot.spot import Spot
from cryptography.hazmat.primitives import serialization

from hftkit.testing.binance_simulator import (
    API_KEY,
    API_SECRET,
    ED25519_KEY,
    ED25519_PRIVATE_KEY,
    SYMBOL,
    BinanceSimHarness,
)

TIMEOUT = 3.0


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


def spot_client(sim: BinanceSimHarness, **ws_api: Any) -> Spot:
    """A spot client with HMAC keys; ``ws_api`` replaces the WebSocket API's credentials."""
    ws = sim.urls["ws"]
    credentials = ws_api or {"api_key": API_KEY, "api_secret": API_SECRET}
    return Spot(
        config_rest_api=ConfigurationRestAPI(api_key=API_KEY, api_secret=API_SECRET, base_path=sim.base),
        config_ws_api=ConfigurationWebSocketAPI(stream_url=f"{ws}/ws-api/v3", **credentials),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=ws),
    )


def futures_client(sim: BinanceSimHarness) -> DerivativesTradingUsdsFutures:
    ws = sim.urls["ws"]
    return DerivativesTradingUsdsFutures(
        config_rest_api=ConfigurationRestAPI(api_key=API_KEY, api_secret=API_SECRET, base_path=sim.base),
        config_ws_api=ConfigurationWebSocketAPI(
            api_key=API_KEY, api_secret=API_SECRET, stream_url=f"{ws}/ws-fapi/v1"
        ),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=ws),
    )


async def rest(call: Callable[[], Any]) -> Any:
    """One SDK REST call in a worker thread; the model-validated data."""
    response = await asyncio.to_thread(call)
    return response.data()


async def wait_for(found: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not found():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("expected data never came")
        await asyncio.sleep(0.02)


# REST ---------------------------------------------------------------------------------------------------


async def test_spot_rest_market_data_and_order_changes(sim):
    api = spot_client(sim).rest_api
    info = await rest(lambda: api.exchange_info(symbol=SYMBOL))
    assert info.symbols[0].symbol == SYMBOL and info.symbols[0].cancel_replace_allowed is True
    book = await rest(lambda: api.depth(symbol=SYMBOL, limit=5))
    assert book.bids[0] == ["49999.99000000", "0.50000000"] and len(book.asks) == 5
    await rest(lambda: api.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
    candles = await rest(lambda: api.klines(symbol=SYMBOL, interval="1m"))
    assert candles[-1][4] == "50000.01000000"
    rolling = await rest(lambda: api.ticker(symbol=SYMBOL, window_size="1h"))
    assert rolling.actual_instance.last_price == "50000.01000000"
    assert (await rest(lambda: api.avg_price(symbol=SYMBOL))).price == "50000.01000000"

    placed = await rest(
        lambda: api.new_order(
            symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.01, price=49000.0
        )
    )
    replaced = await rest(
        lambda: api.order_cancel_replace(
            symbol=SYMBOL,
            side="BUY",
            type="LIMIT",
            cancel_replace_mode="STOP_ON_FAILURE",
            time_in_force="GTC",
            quantity=0.02,
            price=48000.0,
            cancel_order_id=placed.order_id,
        )
    )
    assert (replaced.cancel_result, replaced.new_order_result) == ("SUCCESS", "SUCCESS")
    assert replaced.cancel_response.order_id == placed.order_id
    new_id = replaced.new_order_response.order_id
    amended = await rest(lambda: api.order_amend_keep_priority(symbol=SYMBOL, new_qty=0.01, order_id=new_id))
    assert amended.amended_order.qty == "0.01000000"
    order = await rest(lambda: api.get_order(symbol=SYMBOL, order_id=new_id))
    assert (order.status, order.orig_qty, order.price) == ("NEW", "0.01000000", "48000.00000000")
    await rest(lambda: api.delete_order(symbol=SYMBOL, order_id=new_id))
    assert await rest(lambda: api.get_open_orders(symbol=SYMBOL)) == []


async def test_spot_rest_cancel_replace_failure_is_the_venues_error(sim):
    api = spot_client(sim).rest_api
    with pytest.raises(BadRequestError) as raised:
        await rest(
            lambda: api.order_cancel_replace(
                symbol=SYMBOL,
                side="BUY",
                type="LIMIT",
                cancel_replace_mode="STOP_ON_FAILURE",
                time_in_force="GTC",
                quantity=0.01,
                price=48000.0,
                cancel_order_id=12345,
            )
        )
    assert "-2022" in str(raised.value)


async def test_futures_rest_orders_modify_and_account(sim):
    api = futures_client(sim).rest_api
    info = await rest(api.exchange_information)
    assert info.symbols[0].symbol == SYMBOL
    book = await rest(lambda: api.order_book(symbol=SYMBOL, limit=5))
    assert book.bids[0] == ["49999.9", "0.500"]
    placed = await rest(
        lambda: api.new_order(
            symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.01, price=49000.0
        )
    )
    modified = await rest(
        lambda: api.modify_order(
            symbol=SYMBOL, side="BUY", quantity=0.02, price=49100.0, order_id=placed.order_id
        )
    )
    assert (modified.order_id, modified.price, modified.orig_qty) == (placed.order_id, "49100.0", "0.020")
    with pytest.raises(BadRequestError) as raised:
        await rest(
            lambda: api.modify_order(
                symbol=SYMBOL, side="BUY", quantity=0.02, price=49100.0, order_id=placed.order_id
            )
        )
    assert "-5027" in str(raised.value)
    fetched = await rest(lambda: api.query_order(symbol=SYMBOL, order_id=placed.order_id))
    assert fetched.price == "49100.0"
    await rest(lambda: api.cancel_order(symbol=SYMBOL, order_id=placed.order_id))
    await rest(lambda: api.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
    positions = await rest(lambda: api.position_information_v3(symbol=SYMBOL))
    assert positions[0].position_amt == "0.010"
    account = await rest(api.account_information_v3)
    assert account.total_wallet_balance is not None
    assert (await rest(api.start_user_data_stream)).listen_key


# WebSocket API ------------------------------------------------------------------------------------------


async def test_futures_websocket_api_orders_including_modify(sim):
    client = futures_client(sim)
    connection = await client.websocket_api.create_connection()
    try:
        placed = (
            await connection.new_order(
                symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.01, price=49000.0
            )
        ).data()
        order_id = placed.result.order_id
        modified = (
            await connection.modify_order(
                symbol=SYMBOL, side="BUY", quantity=0.02, price=49200.0, order_id=order_id
            )
        ).data()
        assert (modified.result.price, modified.result.orig_qty) == ("49200.0", "0.020")
        status = (await connection.query_order(symbol=SYMBOL, order_id=order_id)).data()
        assert status.result.price == "49200.0"
        canceled = (await connection.cancel_order(symbol=SYMBOL, order_id=order_id)).data()
        assert canceled.result.status == "CANCELED"
        assert (await connection.account_information()).data().result.can_trade is True
        assert (await connection.account_information_v2()).data().result.total_wallet_balance is not None
        balances = (await connection.futures_account_balance()).data().result
        assert balances[0].asset == "USDT"
        positions = (await connection.position_information()).data().result
        assert [(row.symbol, row.position_amt) for row in positions] == [(SYMBOL, "0.000")]
        started = (await connection.start_user_data_stream()).data().result
        pinged = (await connection.keepalive_user_data_stream()).data().result
        assert started.listen_key == pinged.listen_key
        await connection.close_user_data_stream()
    finally:
        await client.websocket_api.close_connection()


async def test_spot_websocket_api_market_data_and_cancel_replace(sim):
    client = spot_client(sim)
    connection = await client.websocket_api.create_connection()
    try:
        await connection.order_place(symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01)
        klines = (await connection.klines(symbol=SYMBOL, interval="1m")).data().result
        assert klines[-1][4] == "50000.01000000"
        assert (await connection.ui_klines(symbol=SYMBOL, interval="1m")).data().result == klines
        assert (await connection.avg_price(symbol=SYMBOL)).data().result.price == "50000.01000000"
        aggregate = (await connection.trades_aggregate(symbol=SYMBOL)).data().result
        historical = (await connection.trades_historical(symbol=SYMBOL)).data().result
        assert aggregate[-1].p == "50000.01000000" and historical[-1].price == "50000.01000000"
        rolling = (await connection.ticker(symbol=SYMBOL, window_size="5m")).data()
        assert rolling.actual_instance.result.volume == "0.01000000"
        placed = (
            await connection.order_place(
                symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.01, price=49000.0
            )
        ).data()
        replaced = (
            await connection.order_cancel_replace(
                symbol=SYMBOL,
                side="BUY",
                type="LIMIT",
                cancel_replace_mode="ALLOW_FAILURE",
                time_in_force="GTC",
                quantity=0.01,
                price=48000.0,
                cancel_order_id=placed.result.order_id,
            )
        ).data()
        assert replaced.result.cancel_result == "SUCCESS"
        assert replaced.result.new_order_response.price == "48000.00000000"
    finally:
        await client.websocket_api.close_connection()


async def test_spot_session_logon_with_an_ed25519_key(sim):
    private_pem = ED25519_PRIVATE_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    client = spot_client(sim, api_key=ED25519_KEY, private_key=private_pem)
    connection = await client.websocket_api.create_connection()
    try:
        before = (await connection.session_status()).data().result
        assert before.api_key is None
        logon = (await connection.session_logon()).data().result
        assert logon.api_key == ED25519_KEY and logon.authorized_since is not None
        account = (await connection.account_status()).data().result
        assert {balance.asset for balance in account.balances} >= {"BTC", "USDT"}
        logout = (await connection.session_logout()).data().result
        assert logout.api_key is None
    finally:
        await client.websocket_api.close_connection()


# streams and user data ----------------------------------------------------------------------------------


async def test_futures_streams_on_public_market_and_private_endpoints(sim):
    client = futures_client(sim)
    connection = await client.websocket_streams.create_connection()
    received: dict[str, list[Any]] = {"depth": [], "aggregate": [], "user": []}
    try:
        depth = await connection.diff_book_depth_streams(symbol="btcusdt", update_speed="100ms")
        depth.on("message", received["depth"].append)
        aggregate = await connection.aggregate_trade_streams(symbol="btcusdt")
        aggregate.on("message", received["aggregate"].append)
        listen_key = (await rest(client.rest_api.start_user_data_stream)).listen_key
        user = await connection.user_data(listen_key)
        user.on("message", received["user"].append)
        await asyncio.sleep(0.2)
        await rest(lambda: client.rest_api.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
        await wait_for(lambda: all(received.values()))
    finally:
        await client.websocket_streams.close_connection()
    assert received["depth"][0].e == "depthUpdate"
    assert received["aggregate"][0].p == "50000.1"


async def test_spot_streams_and_user_data_over_the_websocket_api(sim):
    client = spot_client(sim)
    streams = await client.websocket_streams.create_connection()
    api = await client.websocket_api.create_connection()
    trades: list[Any] = []
    events: list[Any] = []
    try:
        stream = await streams.trade(symbol="btcusdt")
        stream.on("message", trades.append)
        subscribed = await api.user_data_stream_subscribe_signature()
        subscribed.stream.on("message", events.append)
        await asyncio.sleep(0.2)
        await rest(lambda: client.rest_api.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
        await wait_for(lambda: bool(trades) and len(events) >= 2)
    finally:
        await client.websocket_streams.close_connection()
        await client.websocket_api.close_connection()
    assert trades[0].p == "50000.01000000"


async def test_futures_algo_orders_rest_and_websocket_api(sim):
    client = futures_client(sim)
    api = client.rest_api
    placed = await rest(
        lambda: api.new_algo_order(
            algo_type="CONDITIONAL",
            symbol=SYMBOL,
            side="BUY",
            type="STOP_MARKET",
            quantity=0.01,
            trigger_price=51000.0,
        )
    )
    assert (placed.algo_status, placed.order_type, placed.trigger_price) == ("NEW", "STOP_MARKET", "51000.0")
    queried = await rest(lambda: api.query_algo_order(algo_id=placed.algo_id))
    assert queried.algo_status == "NEW" and queried.actual_order_id == ""
    assert [row.algo_id for row in await rest(lambda: api.current_all_algo_open_orders(symbol=SYMBOL))] == [
        placed.algo_id
    ]
    canceled = await rest(lambda: api.cancel_algo_order(algo_id=placed.algo_id))
    assert (canceled.algo_id, canceled.code) == (placed.algo_id, "200")
    connection = await client.websocket_api.create_connection()
    try:
        over_ws = (
            await connection.new_algo_order(
                algo_type="CONDITIONAL",
                symbol=SYMBOL,
                side="SELL",
                type="TAKE_PROFIT",
                quantity=0.01,
                price=51000.0,
                trigger_price=51000.0,
            )
        ).data()
        assert over_ws.result.algo_status == "NEW"
        gone = (await connection.cancel_algo_order(algo_id=over_ws.result.algo_id)).data()
        assert gone.result.algo_id == over_ws.result.algo_id
    finally:
        await client.websocket_api.close_connection()
    history = await rest(lambda: api.query_all_algo_orders(symbol=SYMBOL))
    assert [row.algo_status for row in history] == ["CANCELED", "CANCELED"]
