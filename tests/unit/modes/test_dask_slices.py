"""Pure parts of replay on Dask: the slice plan, the warm-up length, the --dask address."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pueflow.config.load import load_config
from pueflow.exceptions import PueflowError
from pueflow.modes.distributed import DaskError, parse_address, site_spans
from pueflow.modes.slices import HOUR_NS, plan_slices, site_gap_ns, warm_up_ns

ROOT = Path(__file__).resolve().parents[3]
NS = 10**9


def _ns(d: datetime) -> int:
    return int(d.timestamp()) * NS


def _midnight(day: date, zone: str) -> int:
    return _ns(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)))


def test_slices_tile_each_site_at_its_local_midnights():
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    t_lo = _ns(datetime(2026, 3, 21, tzinfo=UTC))
    t_hi = _ns(datetime(2026, 3, 23, tzinfo=UTC)) - 60 * NS
    slices = plan_slices(cfg, dict.fromkeys(range(len(cfg.sites)), (t_lo, t_hi)))
    for i, site in enumerate(cfg.sites):
        mine = [s for s in slices if s.site == i]
        # by hand: the local dates the UTC span touches, each from its midnight to the next
        first = datetime.fromtimestamp(t_lo / NS, ZoneInfo(site.timezone)).date()
        last = datetime.fromtimestamp(t_hi / NS, ZoneInfo(site.timezone)).date()
        days = [first + timedelta(d) for d in range((last - first).days + 1)]
        want = [(_midnight(d, site.timezone), _midnight(d + timedelta(1), site.timezone))
                for d in days]
        assert [(s.start, s.end) for s in mine] == want, site.id
        assert [s.last for s in mine] == [False] * (len(want) - 1) + [True]
    # Casablanca's Ramadan time ends on 2026-03-22: that local day has 23 hours
    tet = next(s for s in slices if s.site == 0 and s.start == _midnight(date(2026, 3, 22),
                                                                           "Africa/Casablanca"))
    assert tet.end - tet.start == 23 * HOUR_NS


def test_slices_of_several_days_keep_the_last_partial_group():
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    t_lo = _ns(datetime(2026, 10, 20, 12, tzinfo=UTC))
    t_hi = _ns(datetime(2026, 10, 27, 12, tzinfo=UTC))
    madrid = plan_slices(cfg, {1: (t_lo, t_hi)}, days=3)
    assert [(s.start, s.end) for s in madrid] == [
        (_midnight(date(2026, 10, 20), "Europe/Madrid"), _midnight(date(2026, 10, 23), "Europe/Madrid")),
        (_midnight(date(2026, 10, 23), "Europe/Madrid"), _midnight(date(2026, 10, 26), "Europe/Madrid")),
        (_midnight(date(2026, 10, 26), "Europe/Madrid"), _midnight(date(2026, 10, 28), "Europe/Madrid")),
    ]


def test_a_zone_whose_midnight_misses_a_window_is_refused():
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    cfg.sites[0].timezone = "Asia/Kathmandu"  # UTC+5:45: local midnight is not on the hour
    with pytest.raises(PueflowError, match="Asia/Kathmandu"):
        plan_slices(cfg, {0: (_ns(datetime(2026, 1, 1, tzinfo=UTC)), _ns(datetime(2026, 1, 2, tzinfo=UTC)))})


def test_warm_up_covers_twice_the_longest_gap():
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    gaps = [max(m.max_gap_ns() for m in s.meters) for s in cfg.sites]
    assert [site_gap_ns(cfg, i) for i in range(len(cfg.sites))] == gaps
    assert warm_up_ns(15 * 60 * NS) == HOUR_NS  # 2 x 15 min is under the one-hour floor
    assert warm_up_ns(3 * HOUR_NS) == 6 * HOUR_NS


@pytest.mark.parametrize(("address", "want"), [
    ("local:2", ("local", 2)), ("local:16", ("local", 16)),
    ("tcp://10.0.0.5:8786", ("remote", 0)), ("tls://sched:8786", ("remote", 0)),
])
def test_dask_addresses(address, want):
    assert parse_address(address) == want


@pytest.mark.parametrize("address", ["", "local", "local:0", "local:two"])
def test_bad_dask_addresses_say_the_fix(address):
    with pytest.raises(DaskError, match="local:"):
        parse_address(address)


def test_a_site_ending_early_has_its_own_last_slice():
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    t_lo = _ns(datetime(2026, 10, 20, 12, tzinfo=UTC))
    end = _ns(datetime(2026, 10, 22, 12, tzinfo=UTC))
    madrid = plan_slices(cfg, {1: (t_lo, end + 86_400 * NS)}, own_last={1: end})
    # the slice holding the site's own last reading is its last; later ones are too
    assert [s.last for s in madrid] == [False, False, True, True]


def test_stray_sites_ride_with_site_0():
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    spans, own = site_spans(cfg, {"tetouan-1": (100, 200), "aragon-1": (50, 300),
                                  "nowhere-9": (10, 500)})
    assert spans == {0: (10, 500), 1: (50, 300)}
    assert own == {0: 200, 1: 300}
    spans, own = site_spans(cfg, {"nowhere-9": (10, 500)})
    assert spans == {0: (10, 500)}
    assert own == {0: 9}  # site 0 itself never reported: every slice is past its end
