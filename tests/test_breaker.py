"""The circuit breaker: exact limits in event time, tiers, holding, allow-list, snapshots."""

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog.breaker import (
    HOLD,
    PASS,
    THROTTLE,
    TRIPPED,
    Breaker,
    BreakerConfig,
    BreakerConfigError,
    Limit,
    RatioLimit,
)

SEC = 1_000_000_000


def test_n_outputs_in_the_window_pass_and_the_next_one_trips():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=5, window_ns=SEC, name="total")]))
    assert [b.check(i) for i in range(5)] == [PASS] * 5
    assert b.check(SEC - 1) == TRIPPED and b.is_open
    t = b.last_trip
    assert (t.limit, t.count, t.window_ns, t.timestamp_ns) == ("total", 5, SEC, SEC - 1)


def test_outputs_spread_beyond_the_window_never_trip():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=5, window_ns=SEC)]))
    # exactly 5 per second forever: the 6th is always a full window after the 1st
    assert all(b.check(i * SEC // 5) == PASS for i in range(1000))


def test_per_key_limits_are_isolated():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=2, window_ns=SEC, per="key")]))
    assert [b.check(0, key=k) for k in (1, 1, 2, 2, 3)] == [PASS] * 5
    assert b.check(1, key=1) == TRIPPED and b.last_trip.key == 1


def test_per_type_limit_uses_the_type_id():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=1, window_ns=SEC, per="type")]))
    assert b.check(0, type_id=1) == PASS and b.check(0, type_id=2) == PASS
    assert b.check(0, type_id=1) == TRIPPED


def test_keys_past_the_cap_share_one_overflow_window():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=1, window_ns=SEC, per="key")],
                              max_keys=2))
    assert b.check(0, key=1) == PASS and b.check(0, key=2) == PASS
    assert b.check(0, key=3) == PASS  # overflow window: first use
    assert b.check(0, key=4) == TRIPPED  # shares key 3's window: stricter, never unlimited


def test_throttle_tier_reports_and_the_trip_tier_opens():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=2, window_ns=SEC, tier="throttle"),
                                      Limit(max_count=4, window_ns=SEC)]))
    assert [b.check(i) for i in range(5)] == [PASS, PASS, THROTTLE, THROTTLE, TRIPPED]
    assert b.throttled == 2 and b.trips == 1


def test_ratio_limit_trips_on_too_many_outputs_per_input():
    b = Breaker(BreakerConfig(ratio=RatioLimit(max_ratio=2.0, window_ns=SEC, min_inputs=1)))
    b.on_input(0)
    assert b.check(1) == PASS and b.check(2) == PASS
    assert b.check(3) == TRIPPED and b.last_trip.ratio == 3.0
    b2 = Breaker(BreakerConfig(ratio=RatioLimit(max_ratio=2.0, window_ns=SEC, min_inputs=3)))
    assert all(b2.check(i) == PASS for i in range(10))  # too few inputs to judge


def test_open_breaker_holds_everything_but_the_allow_list_and_keeps_order():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=1, window_ns=SEC)], allow_types={9}))
    b.check(0)
    assert b.check(1) == TRIPPED
    assert b.check(2, type_id=1) == HOLD and b.check(3, type_id=9) == PASS
    for i in range(5):
        b.hold(bytes([i]))
    assert b.held_count == 5
    assert b.release_held() == [bytes([i]) for i in range(5)] and b.held_count == 0
    b.hold(b"x")
    assert b.discard_held() == 1 and b.discarded == 1
    assert b.is_open  # only reset closes it
    b.reset(10)
    assert not b.is_open and b.resets == 1


def test_half_open_after_cool_down_closes_on_a_passing_probe():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=1, window_ns=100)],
                              half_open_after_ns=1000))
    b.check(0)
    assert b.check(1) == TRIPPED
    assert not b.tick(500) and b.is_open
    assert b.tick(1001) and b.state_name == "half_open"
    assert b.check(1002) == PASS and b.state_name == "closed"


def test_alert_hook_is_called_once_per_trip_and_a_raising_hook_is_contained():
    seen = []
    b = Breaker(BreakerConfig(limits=[Limit(max_count=1, window_ns=SEC)]), alert=seen.append)
    b.check(0)
    b.check(1)
    b.check(2)
    assert len(seen) == 1 and seen[0].limit == "limit0"

    def boom(_):
        raise RuntimeError("pager down")

    b2 = Breaker(BreakerConfig(limits=[Limit(max_count=1, window_ns=SEC)]), alert=boom)
    b2.check(0)
    assert b2.check(1) == TRIPPED and b2.alert_errors == 1


@pytest.mark.parametrize("cfg, message", [
    ({"limits": []}, "at least one limit"),
    ({"limits": [{"max_count": 0, "window_ns": 1}]}, r"limits\[0\]\.max_count: must be >= 1"),
    ({"limits": [{"max_count": 1, "window_ns": -5}]}, r"limits\[0\]\.window_ns: must be > 0"),
    ({"limits": [{"max_count": 1, "window_ns": 1, "per": "account"}]}, "per"),
    ({"limits": [{"max_count": 1, "window_ns": 1, "color": 1}]}, "color"),
    ({"limits": [{"max_count": 5, "window_ns": 1, "tier": "throttle"},
                 {"max_count": 5, "window_ns": 1}]}, "could never act"),
    ({"ratio": {"max_ratio": 0, "window_ns": 1}}, "max_ratio must be > 0"),
    ({"limits": [{"max_count": 1, "window_ns": 1}], "half_open_after_ns": 0}, "half_open"),
])
def test_bad_configuration_is_a_clear_error(cfg, message):
    with pytest.raises(BreakerConfigError, match=message):
        Breaker(cfg)


def _brute(limits, events):
    """Recompute every window from the full history: the obviously-correct model."""
    history, out, opened = [], [], False
    for t, key in events:
        if opened:
            out.append(HOLD)
            continue
        decision = PASS
        for n, w, per in limits:
            same = [h for h in history if (per is None or h[1] == key) and t - h[0] < w]
            if len(same) >= n:
                decision = TRIPPED
                opened = True
                break
        if decision == PASS:
            history.append((t, key))
        out.append(decision)
    return out


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3)), max_size=80),
       st.integers(1, 6), st.integers(1, 40), st.booleans())
def test_breaker_matches_a_brute_force_model(steps, n, w, keyed):
    limits = [(n, w, "key" if keyed else None), (n + 2, 2 * w, None)]
    b = Breaker(BreakerConfig(limits=[Limit(max_count=c, window_ns=ww, per=p)
                                      for c, ww, p in limits]))
    t, events = 0, []
    for dt, key in steps:
        t += dt
        events.append((t, key))
    assert [b.check(ts, key=k) for ts, k in events] == _brute(limits, events)


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), min_size=2, max_size=60),
       st.data())
def test_snapshot_and_restore_continue_identically(steps, data):
    cfg = BreakerConfig(limits=[Limit(max_count=3, window_ns=40, per="key"),
                                Limit(max_count=6, window_ns=50)],
                        ratio=RatioLimit(max_ratio=3.0, window_ns=64, min_inputs=2))
    cut = data.draw(st.integers(0, len(steps)))
    a = Breaker(cfg)
    t, events = 0, []
    for dt, key in steps:
        t += dt
        events.append((t, key))

    def run(b, evs):
        out = []
        for ts, k in evs:
            if k == 5:
                b.on_input(ts)
            else:
                out.append(b.check(ts, key=k))
        return out

    run(a, events[:cut])
    b = Breaker(cfg)
    b.restore(a.snapshot())
    assert run(b, events[cut:]) == run(a, events[cut:])
    assert b.counters() == a.counters()


def test_reset_starts_the_windows_afresh_without_moving_event_time():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=1, window_ns=SEC)]))
    assert b.check(0) == PASS and b.check(1) == TRIPPED
    b.reset(100 * SEC)
    assert b.check(2) == PASS  # the held-back input is judged at its own time, afresh
    assert b.check(3) == TRIPPED


class _LastNWindows:
    """The breaker's count limits as they were before issue #14's step 11: every window
    keeps the timestamps of its last ``max_count`` accepted outputs (a deque of that
    length), and an output is over a limit exactly when that window is full and its oldest
    is less than ``window_ns`` old. Throttled outputs count; keys past ``max_keys`` share
    one overflow window; the clock is the largest timestamp seen; a trip opens (HOLD) until
    ``reset``, which empties every window (keys stay known)."""

    def __init__(self, limits, max_keys):
        self.limits, self.max_keys = limits, max_keys
        self.windows = [{} for _ in limits]
        self.opened, self.clock = False, -(1 << 62)

    def reset(self):
        self.opened = False
        for wins in self.windows:
            for win in wins.values():
                win.clear()

    def _window(self, i, key):
        n, _, per, _ = self.limits[i]
        wins = self.windows[i]
        k = key if per == "key" else None
        if k not in wins and len(wins.keys() - {"overflow"}) >= self.max_keys:
            k = "overflow"  # past the cap of distinct keys: one shared window
        return wins.setdefault(k, deque(maxlen=n))

    def check(self, t, key):
        self.clock = max(self.clock, t)
        if self.opened:
            return HOLD
        t, throttled, wins = self.clock, False, []
        for i, (n, w, _, tier) in enumerate(self.limits):
            win = self._window(i, key)
            wins.append(win)
            if len(win) == n and t - win[0] < w:
                if tier == "trip":
                    self.opened = True
                    return TRIPPED
                throttled = True
        for win in wins:
            win.append(t)
        return THROTTLE if throttled else PASS


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 45), st.integers(1, 150),
       st.integers(1, 45), st.integers(1, 4), st.sampled_from(["trip", "throttle"]))
def test_windows_decide_as_the_last_n_timestamps_did(rnd, n, w, n2, max_keys, tier):
    """Step 11's windows (timestamps still inside the window, grown on demand, older ones
    dropped) against the keep-the-last-N windows they replaced: the same decision for every
    output of 600, through growth past wraps, caps that are not powers of two, time going
    back, throttle tiers, overflow keys, resets and a snapshot restored in the middle. (Long
    runs from a seeded generator: short lists rarely fill a window to its boundary.)"""
    limits = [(n, w, "key", tier), (n2, 2 * w, None, "trip")]
    if tier == "throttle" and n2 <= n:
        limits[1] = (n2, 3 * w, None, "trip")  # a throttle tier below the trip tier
    cfg = BreakerConfig(limits=[Limit(max_count=c, window_ns=ww, per=p, tier=ti)
                                for c, ww, p, ti in limits], max_keys=max_keys)
    cut = rnd.randint(0, 600)
    b, model, t = Breaker(cfg), _LastNWindows(limits, max_keys), 0
    for i in range(600):
        if i == cut:  # a snapshot restored into a fresh breaker continues identically
            b2 = Breaker(cfg)
            b2.restore(b.snapshot())
            b = b2
        t += rnd.randint(-3, 12)
        key = rnd.randint(0, 6)
        if model.opened and rnd.randint(0, 40) == 0:
            b.reset(t)
            model.reset()
        assert (i, b.check(t, key=key)) == (i, model.check(t, key))


def test_a_quiet_key_does_not_cost_max_count_timestamps():
    # 10**7 per key per second (80 MB each if kept up front), 4096 keys with a few outputs
    b = Breaker(BreakerConfig(limits=[Limit(max_count=10**7, window_ns=SEC, per="key")]))
    for k in range(4096):
        assert b.check(k, key=k) == PASS and b.check(k, key=k) == PASS
    assert b.window_bytes() == 4096 * 8 * 8  # the first buffer: 8 timestamps per key


def test_a_window_holds_only_what_is_inside_it():
    # 200,000 outputs at 1 us, 10 us window: never more than 10 inside, none ever trips
    b = Breaker(BreakerConfig(limits=[Limit(max_count=10**6, window_ns=10_000, per="key")]))
    assert all(b.check(i * 1000, key=i % 3) == PASS for i in range(200_000))
    assert b.window_bytes() <= 3 * 16 * 8
    # and the limit still bites at exactly max_count inside the window
    b = Breaker(BreakerConfig(limits=[Limit(max_count=1000, window_ns=SEC)]))
    assert all(b.check(SEC + i) == PASS for i in range(1000))
    assert b.check(2 * SEC) == PASS  # the first left the window exactly now
    assert b.check(2 * SEC) == TRIPPED  # the second is 1 ns inside it


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3), st.integers(1, 12)),
                max_size=120),
       st.integers(1, 30), st.integers(1, 200), st.sampled_from(["trip", "throttle"]),
       st.integers(1, 3))
def test_a_run_of_outputs_passes_at_once_exactly_when_each_would(steps, n, w, tier, max_keys):
    """pass_run(t, key, k) (the loop's check of one input's outputs to one key) against k
    check() calls: True only when each of them would PASS, counted the same, and every later
    decision the same."""
    cfg = BreakerConfig(limits=[Limit(max_count=n, window_ns=w, per="key", tier=tier),
                                Limit(max_count=n + 7, window_ns=w + 5)], max_keys=max_keys)
    runs, each, t = Breaker(cfg), Breaker(cfg), 0
    for dt, key, k in steps:
        t += dt
        if runs.pass_run(t, key, k):
            assert [each.check(t, key=key) for _ in range(k)] == [PASS] * k
        else:  # the loop checks them one by one: the same decisions as without runs
            assert [runs.check(t, key=key) for _ in range(k)] == \
                [each.check(t, key=key) for _ in range(k)]
        assert runs.counters() == each.counters()
        if runs.is_open:
            runs.reset(t)
            each.reset(t)


def test_a_run_passes_only_if_its_last_output_fits_the_window():
    b = Breaker(BreakerConfig(limits=[Limit(max_count=5, window_ns=SEC, per="key")]))
    assert b.pass_run(0, 1, 3) and b.pass_run(1, 1, 2)  # 5: the limit, not over it
    assert not b.pass_run(2, 1, 1) and b.counters()["checks"] == 5  # nothing counted
    assert b.check(2, key=1) == TRIPPED
    # while open, and with a ratio limit or an allow-list, runs are checked one by one
    assert not b.pass_run(3, 2, 1)
    ratio = Breaker(BreakerConfig(limits=[Limit(max_count=5, window_ns=SEC)],
                                  ratio=RatioLimit(max_ratio=2.0, window_ns=SEC)))
    assert not ratio.pass_run(0, 0, 1)
    with pytest.raises(ValueError, match="count must be >= 1"):
        b.pass_run(0, 1, 0)
