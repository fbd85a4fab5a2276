"""Line protocol per the spec, and a round trip through a real influxd (1.x) read back with /query."""

from __future__ import annotations

import asyncio
import gzip
import math

import pytest
from aiohttp import web

from hftkit.storage.influx import (
    TOP_OF_BOOK,
    InfluxHttpSink,
    InfluxTarget,
    LineProtocolError,
    LineSchema,
    encode_point,
)
from hftkit.storage.writer import BatchingWriter


def test_escaping_follows_the_spec() -> None:
    line = encode_point(
        "my measure,x",
        {"tag key": "a=b,c d", "empty": ""},
        {"field,key": 'say "hi" \\ bye', "n": 3, "x": 1.5, "ok": True, "no": False},
        1_700_000_000_123_456_789,
    )
    assert line == (
        "my\\ measure\\,x,tag\\ key=a\\=b\\,c\\ d "
        'field\\,key="say \\"hi\\" \\\\ bye",n=3i,x=1.5,ok=true,no=false'
        " 1700000000123456789\n"
    )
    assert encode_point("m", {}, {"v": 1e-7}) == "m v=1e-07\n"


@pytest.mark.parametrize(
    ("tags", "fields"),
    [
        ({"t": "a\nb"}, {"v": 1}),
        ({}, {"v": float("nan")}),
        ({}, {"v": math.inf}),
        ({}, {"v": "line\nbreak"}),
        ({}, {}),
        ({}, {"v": object()}),
    ],
)
def test_what_influxdb_cannot_store_is_refused(tags: dict, fields: dict) -> None:
    with pytest.raises(LineProtocolError):
        encode_point("m", tags, fields, 1)


def test_schema_matches_the_general_encoder() -> None:
    schema = LineSchema(
        "orders", ("venue", "symbol"), (("id", "str"), ("price", "float"), ("qty", "int"), ("live", "bool"))
    )
    got = schema.encode(("bin ance", "BTC,USDT"), ('c"1', 61000.5, 3, True), 42)
    assert got == encode_point(
        "orders",
        {"venue": "bin ance", "symbol": "BTC,USDT"},
        {"id": 'c"1', "price": 61000.5, "qty": 3, "live": True},
        42,
    )
    with pytest.raises(LineProtocolError):
        TOP_OF_BOOK.encode(("v", "s"), (1.0, float("inf"), 1.0, 1.0), 1)
    many = TOP_OF_BOOK.encode_many(
        [(("v", "s"), (1.0, 2.0, 3.0, 4.0), 7), (("v", "t"), (1.5, 2.5, 3.5, 4.5), 8)]
    )
    assert many == "top_of_book,symbol=s,venue=v bid=1.0,ask=2.0,bid_size=3.0,ask_size=4.0 7\n" + (
        "top_of_book,symbol=t,venue=v bid=1.5,ask=2.5,bid_size=3.5,ask_size=4.5 8\n"
    )


def test_targets_build_v1_and_v2_requests() -> None:
    v1 = InfluxTarget(url="http://h:8086/", database="db", username="u", password="p")
    assert v1.write_url() == "http://h:8086/write?db=db&precision=ns"
    assert v1.headers()["Authorization"] == "Basic dTpw"
    v2 = InfluxTarget(url="http://h:8086", api="v2", org="o", bucket="b", token="secret-token")
    assert v2.write_url() == "http://h:8086/api/v2/write?org=o&bucket=b&precision=ns"
    assert v2.headers()["Authorization"] == "Token secret-token"
    assert "secret-token" not in repr(v2)
    with pytest.raises(ValueError, match="org and bucket"):
        InfluxTarget(api="v2")


def test_v2_write_reaches_a_v2_endpoint_gzipped() -> None:
    """The 2.x/3.x path against a loopback HTTP server speaking /api/v2/write (Debian ships 1.x only)."""
    received: list[tuple[dict, dict, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append((dict(request.query), dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/api/v2/write", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sink = InfluxHttpSink(
            InfluxTarget(url=f"http://127.0.0.1:{port}", api="v2", org="o", bucket="b", token="t")
        )
        try:
            await sink.write(["m v=1i 1\n", "m v=2i 2\n"])
        finally:
            await sink.close()
            await runner.cleanup()

    asyncio.run(scenario())
    ((query, headers, body),) = received
    assert query == {"org": "o", "bucket": "b", "precision": "ns"}
    assert headers["Authorization"] == "Token t" and headers["Content-Encoding"] == "gzip"
    # aiohttp's server decodes the body by its Content-Encoding: it arrived as valid gzip
    assert body == b"m v=1i 1\nm v=2i 2\n"
    assert int(headers["Content-Length"]) == len(gzip.compress(body, 1))


def test_round_trip_through_a_real_influxd(influxd) -> None:
    influxd.query("CREATE DATABASE hftkit_test")
    base_ns = 1_723_161_255_000_000_000
    lines = [
        TOP_OF_BOOK.encode(("binance", "BTCUSDT"), (61800.1 + i, 61800.2 + i, 1.5, 2.0), base_ns + i)
        for i in range(2500)
    ]
    lines.append(
        encode_point(
            "fills",
            {"venue": "thalex", "symbol": "BTC-PERPETUAL", "side": "buy"},
            {"client_order_id": 'a "quoted" id', "price": 61000.0, "size": 0.01},
            base_ns,
        )
    )

    async def scenario() -> BatchingWriter[str]:
        sink = InfluxHttpSink(InfluxTarget(url=influxd.url, database="hftkit_test"))
        writer: BatchingWriter[str] = BatchingWriter(
            sink, name="influx", batch_size=1000, flush_interval_s=2.0
        )
        async with writer:
            for line in lines:
                assert writer.put(line)
        assert sink.posts == 3 and sink.points == len(lines)
        return writer

    writer = asyncio.run(scenario())
    assert writer.status().written == len(lines)
    result = influxd.query(
        "SELECT count(bid), last(ask) FROM top_of_book WHERE venue='binance'", "hftkit_test"
    )
    (series,) = result["results"][0]["series"]
    assert series["values"][0][1:] == [2500, 61800.2 + 2499]
    fills = influxd.query("SELECT client_order_id, price FROM fills", "hftkit_test")["results"][0]["series"][
        0
    ]
    assert fills["values"] == [[base_ns, 'a "quoted" id', 61000.0]]


def test_unreachable_influxdb_is_counted_and_never_blocks() -> None:
    async def scenario() -> tuple[BatchingWriter[str], float]:
        sink = InfluxHttpSink(InfluxTarget(url="http://127.0.0.1:9", database="x", timeout_s=0.5))
        writer: BatchingWriter[str] = BatchingWriter(
            sink, name="influx", batch_size=10, flush_interval_s=0.05
        )
        writer.retry.base_delay = 0.001  # type: ignore[misc]
        await writer.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index in range(50):
            writer.put(f"m v={index}i {index}\n")
        put_time = loop.time() - started
        await asyncio.sleep(0.3)
        await writer.close(timeout_s=0.2)
        return writer, put_time

    writer, put_time = asyncio.run(scenario())
    status = writer.status()
    assert put_time < 0.5  # put never awaits the sink
    assert status.written == 0 and status.dropped == 50
    assert not status.healthy and status.last_error is not None


def test_column_wise_batches_match_the_row_encoder_and_leave_out_what_influxdb_cannot_store() -> None:
    schema = LineSchema(
        "orders", ("venue", "symbol"), (("id", "str"), ("price", "float"), ("qty", "int"), ("live", "bool"))
    )
    rows = [
        (("bin ance", "BTC,USDT"), ('c"1\\x', 61000.5, 3, True), 42),
        (("v", "s"), ("ok", 0.1 + 0.2, -4, False), 43),
        (("v", "bad\ntag"), ("x", 2.0, 5, True), 44),
        (("v", "s"), ("new\nline", 3.0, 6, True), 45),
        (("v", "s"), ("nan", float("nan"), 7, True), 46),
    ]
    body, rejected = schema.encode_columns(
        [series for series, _, _ in rows],
        list(zip(*(values for _, values, _ in rows), strict=True)),
        [t for *_, t in rows],
    )
    assert rejected == 3
    assert body.decode() == schema.encode_many(rows[:2])  # same text as the row-wise encoder
    sink = InfluxHttpSink(InfluxTarget())
    mixed = sink.encode(
        [
            (schema, *rows[0]),
            "m v=1i 1\n",
            (TOP_OF_BOOK, ("v", "s"), (1.5, 2.5, 3.0, 4.0), 5),
            (schema, *rows[4]),
        ]
    )
    assert mixed == (
        b"m v=1i 1\n"
        + schema.encode_many(rows[:1]).encode()
        + b"top_of_book,symbol=s,venue=v bid=1.5,ask=2.5,bid_size=3,ask_size=4 5\n"
    )
    assert sink.rejected_points == 1
