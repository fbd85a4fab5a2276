"""The shared venue behaviours, run by the Thalex adapter against hftkit.sim; plus cancel-on-disconnect."""

from __future__ import annotations

import pytest
from cases import THALEX_CASE, VenueCase, thalex_config
from suite import Harness, VenueBehaviourSuite, wait_until

from hftkit.core.types import OrderStatus
from hftkit.sim.runner import Simulator
from hftkit.venues.thalex.adapter import ThalexAdapter


class TestThalexBehaviour(VenueBehaviourSuite):
    @pytest.fixture
    def case(self) -> VenueCase:
        return THALEX_CASE


COD_CASE = VenueCase(
    **{
        **THALEX_CASE.__dict__,
        "name": "thalex-cancel-on-disconnect",
        "make_adapter": lambda sim: ThalexAdapter(thalex_config(sim, cancel_on_disconnect_s=2)),
    }
)


@pytest.fixture
def case() -> VenueCase:
    return COD_CASE


async def test_cancel_on_disconnect_orders_are_reported_cancelled_after_the_reconnect(
    harness: Harness, sim: Simulator
) -> None:
    """The venue deletes a cancel-on-disconnect session's orders when it drops; the adapter says so."""
    sim.set_faults(COD_CASE.sim_venue, {"disconnect_every_s": 1.5})
    adapter = await harness.start()
    sim.set_faults(COD_CASE.sim_venue, "none")
    request = harness.resting("cod")
    assert (await adapter.place_order(request)).status is OrderStatus.NEW
    order = harness.sim_order(request.client_order_id)
    assert order is not None and order.is_open
    await wait_until(lambda: not order.is_open, "the venue to delete the order when the session drops")
    assert order.status is OrderStatus.CANCELED
    await wait_until(
        lambda: COD_CASE.reconnects(adapter) == 1 and adapter.is_ready, "the adapter to reconnect and resync"
    )
    await wait_until(
        lambda: harness.recorder.status(request.client_order_id) is OrderStatus.CANCELED,
        "the adapter to report the order cancelled",
    )
    assert adapter.live_orders() == [] and harness.adapter_open() == {}
    await harness.settle_book()
