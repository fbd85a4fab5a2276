"""Replay recorded Binance BTCUSDT depth and trades (hftbacktest, 2024-08-08) as background
liquidity while a quoting account works the touch: the engine must stay sound on real data."""

from __future__ import annotations

import itertools

import orjson

from hftkit.core.clock import SimulatedClock
from hftkit.core.types import Instrument, OrderType, Side
from hftkit.datasets import DataNotFoundError, hftbacktest_file, iter_recording
from hftkit.sim.engine.accounts import Accounts, FeeSchedule
from hftkit.sim.engine.matching import MatchingEngine

SYMBOL = "BTCUSDT"
EVENTS = 5_000


def recorded_events():  # type: ignore[no-untyped-def]
    path = hftbacktest_file("spot", "btcusdt_20240808.gz")
    if not path.exists():
        raise DataNotFoundError(f"recording {path} is missing from shared/data")
    for _, body in iter_recording(path):
        message = orjson.loads(body)
        stream = message.get("stream", "")
        if "lastUpdateId" in message or stream.endswith(("@trade", "@depth@100ms")):
            yield message


def test_replayed_binance_data_keeps_the_engine_sound_and_fills_a_quoting_account() -> None:
    # depth sizes in the recording are finer than the symbol's 0.00001 LOT_SIZE: use 1e-8 lots
    instrument = Instrument("binance", SYMBOL, "BTC", "USDT", "0.01", "0.00000001", "5")
    accounts = Accounts({"USDT": 10, "BTC": 8}, fees=FeeSchedule.from_basis_points("1", "1"))
    engine = MatchingEngine(accounts, clock=SimulatedClock())
    engine.add_instrument(instrument)
    accounts.deposit("mm", "USDT", accounts.to_units("USDT", "1000000"))
    accounts.deposit("mm", "BTC", accounts.to_units("BTC", "20"))
    totals = accounts.totals()
    ticks, lots = instrument.price_to_ticks, instrument.quantity_to_lots

    def levels(rows: list[list[str]]) -> list[tuple[int, int]]:
        return [(ticks(price), lots(size)) for price, size in rows]

    last_update_id = None
    update_id = 0
    maker_fills = taker_fills = 0
    for index, message in enumerate(itertools.islice(recorded_events(), EVENTS)):
        results = []
        if "lastUpdateId" in message:
            last_update_id = message["lastUpdateId"]
            results.append(
                engine.replace_background(SYMBOL, levels(message["bids"]), levels(message["asks"]))
            )
        elif last_update_id is None:
            continue  # diffs before the snapshot: the snapshot already contains them
        elif message["stream"].endswith("@trade"):
            trade = message["data"]
            aggressor = Side.SELL if trade["m"] else Side.BUY
            results.append(engine.apply_market_trade(SYMBOL, ticks(trade["p"]), lots(trade["q"]), aggressor))
        elif message["data"]["u"] > last_update_id:
            diff = message["data"]
            results.append(engine.apply_depth(SYMBOL, levels(diff["b"]), levels(diff["a"])))
        if index % 25 == 0:  # re-quote at the touch, post-only with reprice
            results.extend(engine.cancel_all("mm", SYMBOL).book_updates)
            best_bid, best_ask = engine.best_bid(SYMBOL), engine.best_ask(SYMBOL)
            if best_bid and best_ask:
                for side, price in ((Side.BUY, best_bid[0]), (Side.SELL, best_ask[0])):
                    result = engine.place(
                        "mm", SYMBOL, side, OrderType.LIMIT_MAKER, 100_000, price, reprice_post_only=True
                    )
                    assert result.accepted, result.reason
                    results.append(result)
        if index % 400 == 0:
            results.append(engine.place("mm", SYMBOL, Side.BUY, OrderType.MARKET, 300_000))
        for result in results:
            update = getattr(result, "book_update", result)
            if update is not None:
                update_id += 1
                assert update.update_id == update_id
            for execution in getattr(result, "executions", []):
                if execution.is_maker:
                    maker_fills += 1
                else:
                    taker_fills += 1
        if index % 100 == 0:
            assert engine.audit() == []
            assert accounts.totals() == totals
    assert last_update_id is not None
    assert engine.audit() == []
    assert accounts.totals() == totals
    assert maker_fills > 0 and taker_fills > 0
    bid, ask = engine.best_bid(SYMBOL), engine.best_ask(SYMBOL)
    assert bid is not None and ask is not None and bid[0] < ask[0]
