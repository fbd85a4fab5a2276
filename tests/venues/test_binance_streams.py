"""Market streams from the in-memory scripted Binance: sync, reconnect, gaps, malformed frames."""

from __future__ import annotations

import asyncio
import json

import pytest

from hftkit.core.types import BookDelta, BookTicker, ConnectionEvent, Side, Trade
from hftkit.testing import ScriptedBinance, SymbolSpec
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import BinanceRestClient, RestConfig
from hftkit.venues.binance.streams import MarketStreamSession, StreamConfig
from hftkit.venues.binance.user_data import instruments_from_exchange_info

CREDENTIALS = BinanceCredentials("test-api-key", "test-secret")
SEED_BIDS = [("49999.00", "1.00000"), ("49998.50", "2.00000"), ("49990.00", "0.50000")]
SEED_ASKS = [("50001.00", "1.50000"), ("50002.00", "0.25000"), ("50010.00", "3.00000")]


async def wait_until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


class Harness:
    def __init__(self, server: ScriptedBinance, market: Market, **stream_overrides) -> None:
        self.server = server
        self.market = market
        self.events: list = []
        self.stream_overrides = stream_overrides
        self.rest: BinanceRestClient | None = None
        self.session: MarketStreamSession | None = None

    async def __aenter__(self) -> Harness:
        rest_config = RestConfig(base_urls=[self.server.base_url], retry_base_delay_s=0.001)
        server = self.server
        self.rest = BinanceRestClient(
            self.market, CREDENTIALS, rest_config, http=server.http, order_pool=server.order_pool
        )
        await self.rest.__aenter__()
        self.instruments = instruments_from_exchange_info("binance", await self.rest.exchange_info())
        config = StreamConfig(
            base_urls=[self.server.ws_url],
            reconnect_base_delay_s=0.005,
            reconnect_max_delay_s=0.02,
            resync_base_delay_s=0.001,
            resync_max_delay_s=0.01,
            **self.stream_overrides,
        )
        self.session = MarketStreamSession(
            self.market, self.rest, self.instruments, self.events.append, config, connect=server.connect
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.session is not None and self.rest is not None
        await self.session.close()
        await self.rest.close()

    def of(self, kind: type, **fields) -> list:
        return [
            event
            for event in self.events
            if isinstance(event, kind) and all(getattr(event, key) == value for key, value in fields.items())
        ]

    def book_matches_server(self, symbol: str = "BTCUSDT") -> bool:
        assert self.session is not None
        instrument = self.instruments[symbol]
        bids, asks = self.server.book_levels(symbol)
        book = self.session.book(symbol)
        assert book is not None
        expected_bids = [(instrument.ticks.to_steps(p), instrument.lots.to_steps(q)) for p, q in bids]
        expected_asks = [(instrument.ticks.to_steps(p), instrument.lots.to_steps(q)) for p, q in asks]
        return book.bids() == expected_bids and book.asks() == expected_asks


@pytest.fixture
async def server():
    async with ScriptedBinance(CREDENTIALS) as running:
        await running.publish_depth("BTCUSDT", SEED_BIDS, SEED_ASKS, send=False)
        yield running


async def start(harness: Harness, connections: int = 1) -> None:
    assert harness.session is not None
    await harness.session.subscribe(["BTCUSDT"])
    await wait_until(lambda: len(harness.server.market_sockets) == connections)


async def publish_until_synced(harness: Harness, bids=(), asks=()) -> None:
    """One diff starts the snapshot; a snapshot taken after it needs the next diff to bridge."""
    session, server = harness.session, harness.server
    sync = session.synchronizer("BTCUSDT")
    snapshots = sync.counters.snapshots
    await server.publish_depth("BTCUSDT", list(bids), list(asks))
    await wait_until(lambda: sync.counters.snapshots > snapshots)
    await server.publish_depth("BTCUSDT", [("49000.00", "0.00100")])
    await wait_until(lambda: session.is_synced("BTCUSDT"))


async def test_books_sync_from_snapshot_then_follow_diffs(server):
    async with Harness(server, Market.SPOT) as harness:
        await start(harness)
        await publish_until_synced(harness, [("49999.50", "0.70000")], [("50001.00", "0")])
        assert harness.of(ConnectionEvent, state="synced", stream="btcusdt@depth")
        assert harness.book_matches_server()
        snapshots = [event for event in harness.of(BookDelta) if event.is_snapshot]
        assert len(snapshots) == 1 and snapshots[0].last_update_id == server.books["BTCUSDT"].update_id
        await server.publish_depth("BTCUSDT", [("49999.00", "0")], [("50000.50", "0.10000")])
        await server.publish_trade("BTCUSDT", "50000.50", "0.01000", buyer_is_maker=False)
        await server.publish_book_ticker("BTCUSDT")
        await wait_until(lambda: harness.of(BookTicker))
        assert harness.book_matches_server()
        diffs = [event for event in harness.of(BookDelta) if not event.is_snapshot]
        assert [diff.asks for diff in diffs] == [[(5_000_050, 10_000)]]
        (trade,) = harness.of(Trade)
        assert (trade.price, trade.size, trade.aggressor) == (5_000_050, 1_000, Side.BUY)
        (ticker,) = harness.of(BookTicker)
        assert (ticker.bid_price, ticker.ask_price) == (4_999_950, 5_000_050)
        assert harness.session.urls() == [
            f"{server.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker/btcusdt@trade"
        ]


async def test_disconnect_reconnect_resync_loses_no_diff(server):
    async with Harness(server, Market.SPOT) as harness:
        await start(harness)
        await publish_until_synced(harness, [("49999.50", "0.70000")])
        await server.drop_market_connections()
        # changes while we are away never reach us as diffs
        await server.publish_depth("BTCUSDT", [("49998.50", "0")], [("50001.00", "9.00000")])
        await server.publish_depth("BTCUSDT", [("49997.00", "4.00000")])
        await wait_until(lambda: len(server.market_sockets) == 1 and server.market_connections == 2)
        await publish_until_synced(harness, [("49999.50", "0.80000")], [("50003.00", "1.00000")])
        assert len(harness.of(ConnectionEvent, state="synced", stream="btcusdt@depth")) == 2
        for index in range(5):
            await server.publish_depth("BTCUSDT", [(f"4999{index}.25", "0.01000")])
        await wait_until(harness.book_matches_server)
        states = [event.state for event in harness.of(ConnectionEvent)]
        assert (
            states.index("disconnected")
            < states.index("resyncing")
            < len(states) - 1 - states[::-1].index("synced")
        )
        assert harness.session.synchronizer("BTCUSDT").counters.snapshots == 2
        # diffs reach listeners only while the book is synced
        synced = False
        for event in harness.events:
            if isinstance(event, ConnectionEvent) and event.stream == "btcusdt@depth":
                synced = event.state == "synced"
            elif isinstance(event, BookDelta) and not event.is_snapshot:
                assert synced


async def test_an_injected_gap_triggers_a_resync(server):
    async with Harness(server, Market.SPOT) as harness:
        await start(harness)
        await publish_until_synced(harness, [("49999.50", "0.70000")])
        await server.publish_depth("BTCUSDT", [("49990.00", "0")], send=False)  # a lost diff
        await server.publish_depth("BTCUSDT", [("49980.00", "1.00000")])
        await wait_until(lambda: harness.of(ConnectionEvent, state="resyncing"))
        sync = harness.session.synchronizer("BTCUSDT")
        await wait_until(lambda: sync.counters.snapshots == 2)
        await server.publish_depth("BTCUSDT", [("49981.00", "1.00000")])
        await wait_until(lambda: harness.session.is_synced("BTCUSDT"))
        await wait_until(harness.book_matches_server)
        counters = harness.session.synchronizer("BTCUSDT").counters
        assert counters.gaps == 1 and counters.snapshots == 2
        resync = harness.of(ConnectionEvent, state="resyncing")[0]
        assert resync.reason.startswith("gap")


async def test_malformed_frames_are_counted_and_the_feed_goes_on(server):
    async with Harness(server, Market.SPOT) as harness:
        await start(harness)
        await publish_until_synced(harness, [("49999.50", "0.70000")])
        await server.send_raw("not json at all")
        await server.send_raw('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"}}')
        await server.send_raw('{"stream":"ethusdt@trade","data":{}}')
        await server.send_raw('{"stream":"btcusdt@kline_1m","data":{}}')
        await server.send_raw('{"result":null,"id":1}')
        await server.publish_depth("BTCUSDT", [("49999.50", "0")])
        await wait_until(harness.book_matches_server)
        malformed = harness.session.stats.malformed
        assert malformed["syntax"] == 1 and malformed["schema"] == 2
        assert malformed["unknown_symbol"] == 1 and malformed["unknown_stream"] == 1
        assert harness.session.is_synced("BTCUSDT")


async def test_usdm_routed_streams_and_previous_id_continuity():
    async with ScriptedBinance(CREDENTIALS, Market.USDM) as server:
        await server.publish_depth("BTCUSDT", SEED_BIDS, SEED_ASKS, send=False)
        async with Harness(server, Market.USDM, depth_speed="0ms") as harness:
            await start(harness, connections=2)
            assert sorted(harness.session.urls()) == [
                f"{server.ws_url}/market/stream?streams=btcusdt@aggTrade",
                f"{server.ws_url}/public/stream?streams=btcusdt@depth@0ms/btcusdt@bookTicker",
            ]
            await publish_until_synced(harness, [("49999.50", "0.70000")], [("50001.00", "0")])
            await server.publish_depth("BTCUSDT", [("49999.00", "0"), ("49998.00", "1.00000")])
            await server.publish_trade("BTCUSDT", "50001.00", "0.00100", buyer_is_maker=True)
            await wait_until(lambda: harness.of(Trade))
            await wait_until(harness.book_matches_server)
            assert harness.of(Trade)[0].aggressor is Side.SELL
            await server.publish_depth("BTCUSDT", [("49990.00", "0")], send=False)
            await server.publish_depth("BTCUSDT", [("49980.00", "1.00000")])
            sync = harness.session.synchronizer("BTCUSDT")
            await wait_until(lambda: sync.counters.gaps == 1 and sync.counters.snapshots == 2)
            await server.publish_depth("BTCUSDT", [("49981.00", "1.00000")])
            await wait_until(lambda: harness.session.is_synced("BTCUSDT"))
            await wait_until(harness.book_matches_server)


async def test_streams_are_split_over_connections_and_every_book_syncs():
    symbols = (SymbolSpec(), SymbolSpec("ETHUSDT", "ETH", "USDT", "0.01", "0.0001"))
    async with ScriptedBinance(CREDENTIALS, symbols=symbols) as server:
        await server.publish_depth("BTCUSDT", SEED_BIDS, SEED_ASKS, send=False)
        await server.publish_depth("ETHUSDT", [("3000.00", "1.0000")], [("3001.00", "2.0000")], send=False)
        async with Harness(server, Market.SPOT, max_streams_per_connection=2) as harness:
            await harness.session.subscribe(["BTCUSDT", "ETHUSDT"])
            await wait_until(lambda: len(server.market_sockets) == 3)
            assert sorted(stream for _, streams in server.market_sockets for stream in streams) == [
                "btcusdt@bookTicker",
                "btcusdt@depth@100ms",
                "btcusdt@trade",
                "ethusdt@bookTicker",
                "ethusdt@depth@100ms",
                "ethusdt@trade",
            ]
            for symbol, price in (("BTCUSDT", "49000.00"), ("ETHUSDT", "2999.00")):
                await server.publish_depth(symbol, [(price, "0.5000")])
                await wait_until(
                    lambda symbol=symbol: harness.session.synchronizer(symbol).counters.snapshots
                )
                await server.publish_depth(symbol, [(price, "0.7000")])
                await wait_until(lambda symbol=symbol: harness.session.is_synced(symbol))
                assert harness.book_matches_server(symbol)


async def test_an_inflated_update_id_never_freezes_a_synced_book(server):
    """Issue 17 item 7: one depth event with an inflated ``u`` used to make every real one stale."""
    async with Harness(server, Market.SPOT) as harness:
        await start(harness)
        await publish_until_synced(harness, [("49999.50", "0.70000")])
        sync = harness.session.synchronizer("BTCUSDT")
        stale_before = sync.counters.stale_dropped
        next_id = server.books["BTCUSDT"].update_id + 1
        forged = {"e": "depthUpdate", "E": server.server_ms(), "s": "BTCUSDT", "U": next_id}
        forged |= {"u": next_id + 10**15, "b": [["49999.75", "9.00000"]], "a": []}
        await server.send_raw(json.dumps({"stream": "btcusdt@depth@100ms", "data": forged}))
        for index in range(20):
            await server.publish_depth("BTCUSDT", [(f"4998{index % 10}.00", f"{index + 1}.00000")])
        await wait_until(lambda: sync.counters.id_jumps == 1)
        await wait_until(harness.book_matches_server)
        assert harness.session.is_synced("BTCUSDT") and sync.counters.stale_dropped == stale_before
        assert sync.counters.resyncs == 0  # rejected, not applied: nothing to recover from


async def test_a_book_ticker_disagreeing_with_the_book_resyncs_it(server):
    async with Harness(server, Market.SPOT) as harness:
        await start(harness)
        await publish_until_synced(harness, [("49999.50", "0.70000")])
        sync = harness.session.synchronizer("BTCUSDT")
        # a diff whose ids chain but whose content the venue never had (a tampered frame)
        next_id = server.books["BTCUSDT"].update_id + 1
        tampered = {"e": "depthUpdate", "E": server.server_ms(), "s": "BTCUSDT", "U": next_id}
        tampered |= {"u": next_id, "b": [["49999.75", "9.00000"]], "a": []}
        await server.send_raw(json.dumps({"stream": "btcusdt@depth@100ms", "data": tampered}))
        await server.publish_depth("BTCUSDT", [("49990.00", "0")], send=False)  # the real id next_id
        await wait_until(lambda: sync.last_update_id == next_id)
        await server.publish_book_ticker("BTCUSDT")
        await wait_until(lambda: sync.counters.ticker_mismatches == 1)
        resync = harness.of(ConnectionEvent, state="resyncing")
        assert resync and resync[0].reason.startswith("ticker mismatch")
        await wait_until(lambda: sync.counters.snapshots == 2)
        await server.publish_depth("BTCUSDT", [("49981.00", "1.00000")])
        await wait_until(lambda: harness.session.is_synced("BTCUSDT"))
        await wait_until(harness.book_matches_server)
