"""Fault decisions are seeded, bounded by their profile, and counted by kind."""

from __future__ import annotations

import pytest

from hftkit.core.clock import SimulatedClock
from hftkit.sim.engine.faults import (
    DepthAction,
    FaultConfigError,
    FaultInjector,
    FaultKind,
    FaultProfile,
    profile_named,
)


def test_a_well_behaved_profile_injects_nothing():
    injector = FaultInjector(FaultProfile(), seed=1)
    for _ in range(1000):
        fault = injector.request()
        assert (fault.delay_s, fault.status, fault.timeout) == (0.0, 0, False)
        assert injector.depth_action() is DepthAction.SEND
        assert not injector.corrupt_frame()
        assert not injector.stalled()
    assert injector.disconnect_after_s() is None
    assert set(injector.snapshot().values()) == {0}


def test_same_seed_same_decisions_and_counts_match_what_was_injected():
    profile = FaultProfile(
        http_error_probability=0.2, depth_drop_probability=0.1, depth_duplicate_probability=0.1
    )
    first, second = FaultInjector(profile, seed=7), FaultInjector(profile, seed=7)
    statuses = [first.request().status for _ in range(500)]
    assert statuses == [second.request().status for _ in range(500)]
    assert first.counts[FaultKind.HTTP_ERROR] == sum(1 for status in statuses if status >= 500)
    assert 50 < first.counts[FaultKind.HTTP_ERROR] < 150
    actions = [first.depth_action() for _ in range(1000)]
    assert first.counts[FaultKind.DEPTH_DROPPED] == actions.count(DepthAction.DROP)
    assert first.counts[FaultKind.DEPTH_DUPLICATED] == actions.count(DepthAction.DUPLICATE)


def test_a_rate_limit_storm_lasts_its_duration():
    clock = SimulatedClock()
    injector = FaultInjector(FaultProfile(rate_limit_probability=1.0, rate_limit_storm_s=2.0), clock=clock)
    assert injector.request().status == 429
    injector.set_profile(FaultProfile(rate_limit_storm_s=2.0))  # no new storms, the current one is reset
    assert injector.request().status == 0
    injector.set_profile(FaultProfile(rate_limit_probability=1.0, rate_limit_storm_s=2.0))
    assert injector.request().status == 429
    injector.set_profile(FaultProfile())
    clock.advance_seconds(0.5)
    assert injector.request().status == 0


def test_storm_retry_after_counts_down():
    clock = SimulatedClock()
    injector = FaultInjector(FaultProfile(rate_limit_probability=1.0, rate_limit_storm_s=3.0), clock=clock)
    injector.request()
    assert injector.storm_retry_after_s() == 3
    clock.advance_seconds(2.5)
    assert injector.request().status == 429
    assert injector.storm_retry_after_s() == 1


def test_stalls_come_on_schedule_and_end():
    clock = SimulatedClock()
    injector = FaultInjector(FaultProfile(stall_every_s=5, stall_duration_s=1), clock=clock)
    assert not injector.stalled()
    clock.advance_seconds(5)
    assert injector.stalled()
    clock.advance_seconds(0.5)
    assert injector.stalled()
    clock.advance_seconds(0.6)
    assert not injector.stalled()
    assert injector.counts[FaultKind.STALL] == 1


def test_disconnect_schedule_takes_the_earliest_of_period_and_random_rate():
    injector = FaultInjector(FaultProfile(disconnect_every_s=5), seed=3)
    assert injector.disconnect_after_s() == 5
    random_only = FaultInjector(FaultProfile(disconnect_probability_per_s=10), seed=3)
    delays = [random_only.disconnect_after_s() for _ in range(200)]
    assert all(delay is not None and delay > 0 for delay in delays)
    assert 0.05 < sum(delays) / len(delays) < 0.2  # mean 1/rate


@pytest.mark.parametrize(
    "settings",
    [
        {"http_error_probability": 1.5},
        {"request_latency_s": -1},
        {"no_such_fault": 1},
        {"stall_every_s": "x"},
    ],
)
def test_bad_profiles_are_refused_with_the_field_named(settings):
    with pytest.raises(FaultConfigError):
        FaultProfile.from_mapping(settings)


def test_named_profiles_and_updates():
    hostile = profile_named("hostile")
    assert hostile.disconnect_every_s > 0
    assert hostile.updated({"disconnect_every_s": 0}).disconnect_every_s == 0
    with pytest.raises(FaultConfigError, match="known"):
        profile_named("chaos")
