"""The governed Binance REST client against the in-memory scripted Binance (``hftkit.testing``)."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftkit.core.clock import SimulatedClock
from hftkit.core.types import OrderType, Side, TimeInForce
from hftkit.testing import Fault, ScriptedBinance
from hftkit.venues.base import (
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
    RateLimitedError,
)
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import (
    BinanceAuthenticationError,
    BinanceRestClient,
    RestConfig,
    VenueUnavailableError,
)
from hftkit.venues.binance.user_data import instruments_from_exchange_info

CREDENTIALS = BinanceCredentials("test-api-key", "test-secret")


def fast_config(*urls: str, **overrides) -> RestConfig:
    settings = dict(
        base_urls=urls,
        order_timeout_s=0.3,
        query_timeout_s=1.0,
        retry_base_delay_s=0.001,
        retry_max_delay_s=0.01,
        max_rate_wait_s=0.5,
    )
    settings.update(overrides)
    return RestConfig(**settings)


def rest_client(
    venue: ScriptedBinance,
    config: RestConfig,
    credentials: BinanceCredentials = CREDENTIALS,
    market: Market = Market.SPOT,
) -> BinanceRestClient:
    """A client whose requests reach ``venue`` through its in-memory transports."""
    return BinanceRestClient(market, credentials, config, http=venue.http, order_pool=venue.order_pool)


@pytest.fixture
async def server():
    async with ScriptedBinance(CREDENTIALS) as running:
        yield running


@pytest.fixture
async def client(server):
    async with rest_client(server, fast_config(server.base_url)) as rest:
        yield rest


async def instrument_of(rest: BinanceRestClient, symbol: str = "BTCUSDT"):
    return instruments_from_exchange_info("binance", await rest.exchange_info())[symbol]


def order(
    client_order_id: str = "c1", price: int = 5_000_000, quantity: int = 100, **overrides
) -> OrderRequest:
    fields = dict(
        client_order_id=client_order_id, symbol="BTCUSDT", side=Side.BUY, quantity=quantity, price=price
    )
    fields.update(overrides)
    return OrderRequest(**fields)


async def test_signed_place_and_cancel_are_verified_by_the_server(server, client):
    instrument = await instrument_of(client)
    placed = await client.new_order(instrument, order(time_in_force=TimeInForce.IOC))
    assert placed.status == "NEW" and placed.client_order_id == "c1"
    method, path, query, body = server.log[-1]
    assert (method, path, body) == ("POST", "/api/v3/order", "")
    params = dict(parse_qsl(query))
    assert params["symbol"] == "BTCUSDT" and params["side"] == "BUY"
    assert params["price"] == "50000.00" and params["quantity"] == "0.00100"
    assert params["type"] == "LIMIT" and params["timeInForce"] == "IOC"
    assert params["newClientOrderId"] == "c1" and params["recvWindow"] == "5000"
    assert query.rsplit("&", 1)[1].startswith("signature=")  # signature last
    cancelled = await client.cancel_order(instrument, "c1")
    assert cancelled.status == "CANCELED"
    method, path, query, _ = server.log[-1]
    assert (method, path) == ("DELETE", "/api/v3/order")
    assert dict(parse_qsl(query))["origClientOrderId"] == "c1"
    assert server.signature_failures == 0


async def test_post_only_spot_is_limit_maker(server, client):
    instrument = await instrument_of(client)
    await client.new_order(instrument, order(order_type=OrderType.LIMIT_MAKER))
    params = dict(parse_qsl(server.log[-1][2]))
    assert params["type"] == "LIMIT_MAKER" and "timeInForce" not in params


async def test_a_wrong_secret_is_refused_by_signature_and_classified(server):
    wrong = BinanceCredentials(CREDENTIALS.api_key, "not-the-secret")
    async with rest_client(server, fast_config(server.base_url), wrong) as rest:
        instrument = await instrument_of(rest)
        with pytest.raises(BinanceAuthenticationError) as caught:
            await rest.open_orders("BTCUSDT")
    assert caught.value.code == -1022
    assert server.signature_failures == 1
    assert instrument.symbol == "BTCUSDT"


async def test_used_weight_header_corrects_the_limiter(server, client):
    server.used_weight = 3000
    await client.server_time()
    assert client.used_weight() >= 3001


async def test_after_a_429_nothing_is_sent_until_retry_after_so_no_418(server, client):
    instrument = await instrument_of(client)
    server.inject("GET", "/depth", Fault(429, -1003, "Too much request weight used", retry_after=30))
    sent_before = sum(server.requests.values())
    refused = 0
    for _ in range(20):
        with pytest.raises(RateLimitedError) as caught:
            await client.depth("BTCUSDT", 100)
        refused += 1
        assert caught.value.retry_after_s > 25
    results = await asyncio.gather(
        client.new_order(instrument, order("c2")), client.open_orders(), return_exceptions=True
    )
    assert all(isinstance(result, RateLimitedError) for result in results)
    assert sum(server.requests.values()) == sent_before + 1  # only the request that met the 429
    assert server.rate_limited == 1 and server.bans == 0
    assert client.stats.rate_limited == 1 and client.stats.refused_locally == refused - 1 + 2


async def test_a_418_blocks_everything_for_the_ban(server, client):
    server.inject(
        "GET", "/time", Fault(418, -1003, "Way too much request weight used; IP banned", retry_after=90)
    )
    with pytest.raises(RateLimitedError) as caught:
        await client.server_time()
    assert caught.value.retry_after_s == 90
    with pytest.raises(RateLimitedError):
        await client.exchange_info()
    assert server.count("GET", "/exchangeInfo") == 0
    assert client.stats.bans == 1


async def test_the_new_order_budget_is_what_the_windows_let_out_now(server, client):
    """What the quoting plan is given: new orders the account's windows could pay now (the
    10 s order window binds first), nothing once the weight left is the cancels' reserve."""
    instrument = await instrument_of(client)
    before = client.affordable("new_order")
    assert 0 < before <= 100  # spot's 100 orders / 10 s
    await client.new_order(instrument, order("one"))
    assert client.affordable("new_order") == before - 1
    assert client.affordable_in_s("new_order") == 0.0
    server.used_weight = 5400  # 6000 - the 10% kept for cancels
    await client.server_time()
    assert client.affordable("new_order") == 0
    assert client.affordable("cancel_order") > 0
    assert client.affordable_in_s("new_order") > 0.0


async def test_cancels_use_the_reserve_that_new_orders_cannot(server, client):
    instrument = await instrument_of(client)
    await client.new_order(instrument, order("resting"))
    server.used_weight = 5400  # 6000 - the 10% kept for cancels
    await client.server_time()  # the header raises local usage to the venue's count
    with pytest.raises(RateLimitedError):
        await client.new_order(instrument, order("blocked"), max_rate_wait_s=0.0)
    assert "blocked" not in server.orders
    cancelled = await client.cancel_order(instrument, "resting")
    assert cancelled.status == "CANCELED"


async def test_timestamp_rejection_resyncs_the_clock_and_retries_once(server, client):
    instrument = await instrument_of(client)
    server.time_offset_ms = 20_000  # the venue is 20 s ahead of us: our timestamps are too old
    placed = await client.new_order(instrument, order("late"))
    assert placed.client_order_id == "late"
    assert server.count("POST", "/api/v3/order") == 2  # refused, then accepted: one order exists
    assert list(server.orders) == ["late"]
    assert client.stats.time_resyncs == 1
    assert abs(client.clock_offset.offset_ms - 20_000) < 1_000


async def test_timeout_on_post_order_is_outcome_unknown_and_never_resent(server, client):
    instrument = await instrument_of(client)
    server.inject("POST", "/order", Fault(stall_s=0.5, execute=True))
    with pytest.raises(OrderOutcomeUnknownError) as caught:
        await client.new_order(instrument, order("maybe"))
    assert caught.value.client_order_id == "maybe"
    assert server.count("POST", "/order") == 1
    found = await client.query_order(instrument, "maybe")
    assert found is not None and found.status == "NEW"


@pytest.mark.parametrize("fault", [Fault(503, -1000, "busy"), Fault(disconnect=True, execute=True)])
async def test_5xx_or_disconnect_on_post_order_is_outcome_unknown(server, client, fault):
    instrument = await instrument_of(client)
    server.inject("POST", "/order", fault)
    with pytest.raises(OrderOutcomeUnknownError):
        await client.new_order(instrument, order("x"))
    assert server.count("POST", "/order") == 1


async def test_5xx_on_an_idempotent_query_is_retried(server, client):
    server.inject("GET", "/depth", Fault(503, -1001, "Internal error"), Fault(502, -1001, "Internal error"))
    snapshot = await client.depth("BTCUSDT", 10)
    assert snapshot.last_update_id == server.books["BTCUSDT"].update_id
    assert server.count("GET", "/depth") == 3


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (-2010, "Account has insufficient balance for requested action."),
        (-1013, "Filter failure: LOT_SIZE"),
        (-1111, "Parameter 'quantity' has too much precision."),
        (-4164, "Order's notional must be no smaller than 100"),
        (-5022, "Due to the order could not be executed as maker, the Post Only order will be rejected."),
    ],
)
async def test_order_rejects_are_definitive(server, client, code, message):
    instrument = await instrument_of(client)
    server.inject("POST", "/order", Fault(400, code, message))
    with pytest.raises(OrderRejectedError) as caught:
        await client.new_order(instrument, order("r"))
    assert caught.value.code == code
    assert server.count("POST", "/order") == 1


async def test_unknown_orders_map_to_not_found(server, client):
    instrument = await instrument_of(client)
    with pytest.raises(OrderNotFoundError) as caught:
        await client.cancel_order(instrument, "never-placed")
    assert caught.value.code == -2011
    assert await client.query_order(instrument, "never-placed") is None


async def test_duplicate_client_order_id_is_rejected(server, client):
    instrument = await instrument_of(client)
    await client.new_order(instrument, order("dup"))
    with pytest.raises(OrderRejectedError) as caught:
        await client.new_order(instrument, order("dup"))
    assert caught.value.code == -2010


def dead_url() -> str:
    return "http://nothing-listens.test"  # not the venue's origin: connections are refused


async def test_connect_failure_fails_over_to_the_next_base_url(server):
    async with rest_client(server, fast_config(dead_url(), server.base_url)) as rest:
        instrument = await instrument_of(rest)
        await rest.new_order(instrument, order("failover"))
        assert rest.selector.current() == server.base_url
    assert server.count("POST", "/order") == 1 and "failover" in server.orders


async def test_every_base_url_refusing_means_not_sent(server):
    async with rest_client(server, fast_config(dead_url())) as rest:
        with pytest.raises(VenueUnavailableError):
            await rest.server_time()


async def test_order_breaker_opens_after_failures_but_market_data_and_cancels_go_on(server):
    config = fast_config(server.base_url, breaker_failure_threshold=3, breaker_recovery_s=30)
    async with rest_client(server, config) as rest:
        instrument = await instrument_of(rest)
        await rest.new_order(instrument, order("resting"))
        server.inject("POST", "/order", *[Fault(503, -1000, "busy")] * 3)
        for index in range(3):
            with pytest.raises(OrderOutcomeUnknownError):
                await rest.new_order(instrument, order(f"b{index}"))
        with pytest.raises(VenueUnavailableError):
            await rest.new_order(instrument, order("b-open"))
        assert server.count("POST", "/order") == 4
        assert (await rest.depth("BTCUSDT", 5)).last_update_id >= 0
        # cancels are never held back by a breaker: removing risk is always attempted
        assert (await rest.cancel_order(instrument, "resting")).status == "CANCELED"


async def test_usdm_order_wire_format(server):
    async with ScriptedBinance(CREDENTIALS, Market.USDM) as futures:
        async with rest_client(futures, fast_config(futures.base_url), market=Market.USDM) as rest:
            instrument = await instrument_of(rest)
            await rest.new_order(instrument, order("f1", order_type=OrderType.LIMIT_MAKER, reduce_only=True))
            method, path, query, _ = futures.log[-1]
            params = dict(parse_qsl(query))
            assert (method, path) == ("POST", "/fapi/v1/order")
            assert params["timeInForce"] == "GTX" and params["reduceOnly"] == "true"
            assert futures.signature_failures == 0
            assert await rest.create_listen_key() == futures.listen_key


async def test_a_second_timestamp_rejection_is_a_definitive_order_reject(server, client):
    instrument = await instrument_of(client)
    stale = Fault(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    server.inject("POST", "/order", stale, stale)
    with pytest.raises(OrderRejectedError) as caught:
        await client.new_order(instrument, order("twice"))
    assert caught.value.code == -1021
    assert server.count("POST", "/order") == 2 and client.stats.time_resyncs == 1


CLIENT_ORDER_IDS = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-", min_size=1, max_size=36
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    client_order_id=CLIENT_ORDER_IDS,
    side=st.sampled_from(Side),
    price=st.integers(min_value=1, max_value=100_000_000),
    quantity=st.integers(min_value=1, max_value=900_000_000),
    order_type=st.sampled_from([OrderType.LIMIT, OrderType.LIMIT_MAKER, OrderType.MARKET]),
)
def test_any_order_reaches_the_venue_signed_and_intact(client_order_id, side, price, quantity, order_type):
    """Whatever the id and the grid values, the venue verifies the signature and reads them back."""

    async def round_trip() -> None:
        async with ScriptedBinance(CREDENTIALS) as venue:
            async with rest_client(venue, fast_config(venue.base_url)) as rest:
                instrument = await instrument_of(rest)
                request = order(client_order_id, price, quantity, side=side, order_type=order_type)
                placed = await rest.new_order(instrument, request)
                assert venue.signature_failures == 0
                assert placed.client_order_id == client_order_id
                stored = venue.orders[client_order_id]
                assert stored["side"] == side.name
                assert instrument.lots.to_steps(stored["origQty"]) == quantity
                if order_type is not OrderType.MARKET:
                    assert instrument.ticks.to_steps(stored["price"]) == price
                found = await rest.query_order(instrument, client_order_id)
                assert found is not None and found.order_id == placed.order_id

    asyncio.run(round_trip())


async def test_a_burst_of_timestamp_rejections_costs_one_time_sync(server, client):
    instrument = await instrument_of(client)
    server.time_offset_ms = 20_000
    placed = await asyncio.gather(*(client.new_order(instrument, order(f"burst{i}")) for i in range(5)))
    assert len(placed) == 5 and len(server.orders) == 5
    assert client.stats.time_resyncs == 1 and server.count("GET", "/time") == 1


def test_rate_windows_roll_on_the_venue_clock_not_the_local_one():
    minute_start_s = 1_699_999_980  # a multiple of 60
    clock = SimulatedClock(wall_offset_ns=minute_start_s * 1_000_000_000)
    rest = BinanceRestClient(Market.SPOT, CREDENTIALS, RestConfig(reset_guard_ms=0), clock=clock)
    rest.clock_offset.offset_ms = 30_000  # the venue's clock is 30 s ahead: its minute ends first
    window = "x-mbx-used-weight-1m"
    assert rest.limiter.try_acquire({window: 5400})
    assert not rest.limiter.try_acquire({window: 1})
    clock.advance_seconds(29.9)
    assert not rest.limiter.try_acquire({window: 1})
    clock.advance_seconds(0.2)  # local minute still running, the venue's has rolled over
    assert rest.limiter.try_acquire({window: 1})
    assert rest.used_weight() == 1
