"""The JSON-RPC session core: ids to futures, timeouts, session loss, the rate gate, bad frames."""

from __future__ import annotations

import asyncio
import random

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.metrics import MetricsRegistry
from hftkit.resilience import Priority
from hftkit.venues.thalex.codec import (
    ThalexOrderNotFoundError,
    ThalexRejectedError,
    ThalexThrottledError,
)
from hftkit.venues.thalex.rpc import (
    LateResponse,
    NotSentError,
    RpcProtocolError,
    RpcSession,
    RpcTimeoutError,
    SessionLostError,
)


class Wire:
    """The far side of the session: records what was sent, answers by hand."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.notifications: list[tuple[str, bytes]] = []
        self.late: list[LateResponse] = []
        self.fail_sends = False
        self.session = RpcSession(
            on_notification=lambda channel, payload, _ns: self.notifications.append(
                (channel, bytes(payload))
            ),
            on_late_response=self.late.append,
            metrics=MetricsRegistry(),
            default_timeout_s=2.0,
            message_rate=1000,
            throttle_backoff_s=0.05,
        )
        self.session.attach(self.send)

    def send(self, payload: bytes) -> None:
        if self.fail_sends:
            raise ConnectionError("socket gone")
        self.sent.append(orjson.loads(payload))

    def answer(self, request_id: int, result: object) -> None:
        self.session.on_message(orjson.dumps({"id": request_id, "result": result}), 0)

    def error(self, request_id: int, code: int, message: str = "no") -> None:
        self.session.on_message(
            orjson.dumps({"id": request_id, "error": {"code": code, "message": message}}), 0
        )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_many_requests_answered_out_of_order_resolve_their_own_futures():
    wire = Wire()
    calls = [asyncio.ensure_future(wire.session.call("public/ticker", {"n": n})) for n in range(50)]
    await settle()
    assert len(wire.sent) == 50 and wire.session.in_flight == 50
    answers = list(wire.sent)
    random.Random(7).shuffle(answers)
    for request in answers:
        wire.answer(request["id"], {"echo": request["params"]["n"]})
    results = [msgspec.json.decode(await call) for call in calls]
    assert results == [{"echo": n} for n in range(50)]
    assert len({request["id"] for request in wire.sent}) == 50
    histogram = wire.session.metrics.histogram(
        "thalex_rpc_round_trip_ns", venue="thalex", method="public/ticker"
    )
    assert histogram.count == 50


async def test_request_wire_shape_drops_none_params_and_carries_an_integer_id():
    wire = Wire()
    call = asyncio.ensure_future(
        wire.session.call("private/cancel", {"client_order_id": 5, "order_id": None})
    )
    await settle()
    assert wire.sent == [
        {"method": "private/cancel", "params": {"client_order_id": 5}, "id": wire.sent[0]["id"]}
    ]
    assert isinstance(wire.sent[0]["id"], int)
    wire.answer(wire.sent[0]["id"], None)
    assert bytes(await call) == b"null"


async def test_timeout_raises_and_a_late_answer_reaches_the_late_handler_with_its_context():
    wire = Wire()
    with pytest.raises(RpcTimeoutError):
        await wire.session.call("private/insert", {}, timeout_s=0.02, context="order-1")
    assert wire.session.stats.timeouts == 1 and wire.session.in_flight == 0
    wire.answer(wire.sent[0]["id"], {"order_id": "X"})
    (late,) = wire.late
    assert (late.method, late.context, msgspec.json.decode(late.result)) == (
        "private/insert",
        "order-1",
        {"order_id": "X"},
    )
    wire.answer(999, {})  # never asked: counted, ignored
    assert wire.session.stats.unmatched_responses == 1


async def test_a_late_error_answer_is_also_handed_over():
    wire = Wire()
    with pytest.raises(RpcTimeoutError):
        await wire.session.call("private/insert", {}, timeout_s=0.01, context="c")
    wire.error(wire.sent[0]["id"], 24, "insufficient margin")
    assert (wire.late[0].result, wire.late[0].error_code) == (None, 24)


async def test_session_loss_fails_in_flight_requests_and_refuses_new_ones():
    wire = Wire()
    call = asyncio.ensure_future(wire.session.call("private/insert", {}))
    await settle()
    wire.session.detach("peer_closed")
    with pytest.raises(SessionLostError):
        await call
    with pytest.raises(NotSentError):
        await wire.session.call("private/insert", {})
    assert wire.session.stats.lost_in_flight == 1


async def test_a_failing_send_is_not_sent_and_leaves_nothing_in_flight():
    wire = Wire()
    wire.fail_sends = True
    with pytest.raises(NotSentError):
        await wire.session.call("public/instruments")
    assert wire.session.in_flight == 0


async def test_error_answers_raise_the_classified_thalex_error():
    wire = Wire()
    for code, error_class in (
        (1, ThalexOrderNotFoundError),
        (24, ThalexRejectedError),
        (4, ThalexThrottledError),
    ):
        call = asyncio.ensure_future(wire.session.call("private/cancel", {}))
        await settle()
        wire.error(wire.sent[-1]["id"], code)
        with pytest.raises(error_class) as caught:
            await call
        assert caught.value.code == code
    assert wire.session.stats.throttled == 1


async def test_throttle_error_pauses_sending_for_the_backoff():
    wire = Wire()
    first = asyncio.ensure_future(wire.session.call("private/insert", {}))
    await settle()
    wire.error(wire.sent[0]["id"], 4, "throttled")
    with pytest.raises(ThalexThrottledError):
        await first
    second = asyncio.ensure_future(wire.session.call("private/insert", {}))
    await settle()
    assert len(wire.sent) == 1  # held back while the venue's throttle backoff runs
    while len(wire.sent) < 2:
        await asyncio.sleep(0.01)
    wire.answer(wire.sent[1]["id"], None)
    await second
    assert wire.session.stats.rate_waits == 1
    assert wire.session.metrics.counter("thalex_throttled_total", venue="thalex").value == 1


async def test_cancels_overtake_queued_inserts_when_the_budget_is_short():
    wire = Wire()
    wire.session.default_message_rate = 20
    wire.session.attach(wire.send)  # a fresh bucket of 20 tokens at 20/s
    budget = [asyncio.ensure_future(wire.session.call("public/ticker")) for _ in range(20)]
    await settle()
    inserts = [
        asyncio.ensure_future(wire.session.call("private/insert", priority=Priority.NORMAL)) for _ in range(3)
    ]
    await settle()
    cancel = asyncio.ensure_future(wire.session.call("private/cancel", priority=Priority.HIGH))
    while len(wire.sent) < 24:
        await asyncio.sleep(0.01)
    assert [request["method"] for request in wire.sent[20:]] == [
        "private/cancel",
        "private/insert",
        "private/insert",
        "private/insert",
    ]
    wire.session.detach("test over")
    for call in (*budget, *inserts, cancel):
        with pytest.raises(SessionLostError):
            await call


async def test_the_budget_now_is_the_bucket_and_nothing_while_requests_wait_or_a_throttle_holds():
    wire = Wire()
    wire.session.default_message_rate = 5
    wire.session.attach(wire.send)  # a fresh bucket of 5 tokens at 5/s
    assert wire.session.budget_now() == 5 and wire.session.budget_wait_s() == 0.0
    calls = [asyncio.ensure_future(wire.session.call("public/ticker")) for _ in range(6)]
    await settle()
    assert len(wire.sent) == 5
    assert wire.session.budget_now() == 0  # one request waits for a token already
    assert 0.2 < wire.session.budget_wait_s() <= 0.4  # after the one waiting: two tokens at 5/s
    while len(wire.sent) < 6:
        await asyncio.sleep(0.01)
    assert wire.session.budget_now() == 0 and 0.0 < wire.session.budget_wait_s() <= 0.2
    await asyncio.sleep(0.25)
    assert wire.session.budget_now() == 1
    for request in wire.sent:
        wire.answer(request["id"], None)
    await asyncio.gather(*calls)
    throttled = asyncio.ensure_future(wire.session.call("private/insert", {}))
    await settle()
    wire.error(wire.sent[-1]["id"], 4, "throttled")
    with pytest.raises(ThalexThrottledError):
        await throttled
    assert wire.session.budget_now() == 0  # the venue's throttle backoff holds
    assert wire.session.budget_wait_s() > 0.0


async def test_waiters_still_queued_at_session_loss_are_not_sent():
    wire = Wire()
    wire.session.default_message_rate = 1
    wire.session.attach(wire.send)
    first = asyncio.ensure_future(wire.session.call("public/ticker"))
    queued = asyncio.ensure_future(wire.session.call("private/insert"))
    await settle()
    wire.session.detach("peer_closed")
    with pytest.raises(SessionLostError):
        await first
    with pytest.raises(NotSentError):
        await queued


async def test_message_rate_from_the_venue_resizes_the_bucket_charging_what_was_sent():
    wire = Wire()
    call = asyncio.ensure_future(wire.session.call("public/login"))
    await settle()
    wire.answer(wire.sent[0]["id"], {})
    await call
    wire.session.set_message_rate(5)
    assert wire.session.message_rate == 5
    assert wire.session._bucket.tokens == pytest.approx(4, abs=0.01)
    with pytest.raises(ValueError):
        wire.session.set_message_rate(0)


async def test_malformed_frames_are_counted_by_kind_and_the_session_goes_on():
    wire = Wire()
    call = asyncio.ensure_future(wire.session.call("public/ticker"))
    await settle()
    request_id = wire.sent[0]["id"]
    for frame, kind in (
        (b"not json", "frame"),
        (b'{"id": "text", "result": 1}', "response_id"),
        (b'{"channel_name": "ticker.X.raw"}', "notification"),
        (b'{"id": null, "error": {"code": 6, "message": "bad"}}', "error_without_id"),
        (b'{"id": 1, "error": {"code": "x"}}', "frame"),
    ):
        wire.session.on_message(frame, 0)
        assert wire.session.stats.malformed[kind] >= 1
    assert wire.session.stats.malformed["frame"] == 2
    wire.session.on_message(b'{"channel_name":"ticker.X.raw","notification":{"a":1}}', 0)
    assert wire.notifications == [("ticker.X.raw", b'{"a":1}')]
    wire.session.on_message(orjson.dumps({"id": request_id}), 0)  # neither result nor error
    with pytest.raises(RpcProtocolError):
        await call
    counter = wire.session.metrics.counter("thalex_malformed_frames_total", venue="thalex", kind="frame")
    assert counter.value == 2


async def test_a_caller_that_gives_up_leaves_its_answer_to_the_late_handler():
    wire = Wire()
    call = asyncio.ensure_future(wire.session.call("private/insert", context="abandoned"))
    await settle()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    wire.answer(wire.sent[0]["id"], {"order_id": "Y"})
    assert wire.late[0].context == "abandoned"


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(12)), st.sets(st.integers(0, 11), max_size=4))
def test_any_answer_order_with_pushes_in_between_resolves_every_future_to_its_own_answer(order, failing):
    async def scenario() -> None:
        wire = Wire()
        calls = [asyncio.ensure_future(wire.session.call("private/insert", {"n": n})) for n in range(12)]
        await settle()
        for position in order:
            request = wire.sent[position]
            if position in failing:
                wire.error(request["id"], 24)
            else:
                wire.answer(request["id"], request["params"]["n"])
            wire.session.on_message(b'{"channel_name":"session.orders","notification":[]}', 0)
        for n, call in enumerate(calls):
            if n in failing:
                with pytest.raises(ThalexRejectedError):
                    await call
            else:
                assert msgspec.json.decode(await call) == n
        assert wire.session.in_flight == 0 and len(wire.notifications) == 12

    asyncio.run(scenario())
