"""Property: a config is either refused at load, or nothing leaves a jurisdiction that may not.

Configs are generated (sites in random jurisdictions; sinks of random jurisdictions, incl.
GLOBAL, with random sites, measurements and ``min_window``; random routing rules and
allow-lists), then random kpi / quality / setpoint / fleet frames go through
``Router.rows_for``. Each output is compared with a model written here from the rules in
DESIGN.md and issue 7, independent of ``pueflow.sovereignty.router``:

- no row with a device-level column, and no row of a window finer than the rule allows,
  ever reaches a sink of another jurisdiction;
- every row a sink is configured for and may have, it gets (the router is not just empty);
- a row is refused (``Router.refused``) exactly when routing selected it but the rules
  forbid it, and an accepted config never needs the guard for clean rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pueflow.config.load import parse_config
from pueflow.exceptions import ConfigError
from pueflow.sovereignty.router import Router

COUNTRIES = ["MA", "ES", "US", "SN"]
SECONDS = {"1m": 60, "15m": 900, "1h": 3600, "2h": 7200, "1d": 86400}
ROW_WINDOWS = [*SECONDS, "weekly"]  # "weekly" is no duration: finer than every rule
DEVICE_COLUMNS = ("device", "point", "asset")
T = datetime(2026, 7, 1, tzinfo=UTC)
METER = [{"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it"}]


def _secs(w: str) -> int | None:
    return SECONDS.get(w)


# ------------------------------------------------------------------------------ configs
@st.composite
def configs(draw) -> dict:
    n_sites = draw(st.integers(1, 4))
    sites = [{"id": f"s{i}", "jurisdiction": draw(st.sampled_from(COUNTRIES)),
              "latitude": 0.0, "longitude": 0.0, "it_capacity_kw": 100.0, "meters": METER}
             for i in range(n_sites)]
    ids = [s["id"] for s in sites]
    sinks = []
    for k in range(draw(st.integers(1, 4))):
        sinks.append({
            "name": f"k{k}", "type": "parquet", "path": f"out/k{k}",
            "jurisdiction": draw(st.sampled_from([*COUNTRIES, "GLOBAL"])),
            "sites": draw(st.one_of(st.just([]), st.lists(st.sampled_from(ids), unique=True))),
            "measurements": draw(st.one_of(
                st.just(["kpi", "fleet"]),
                st.lists(st.sampled_from(["kpi", "quality", "setpoint", "fleet"]), min_size=1,
                         unique=True))),
            # coarse windows are likelier, so more configs that send data abroad are accepted
            "min_window": draw(st.sampled_from(["", "1m", "15m", "1h", "1h", "1d", "1d"])),
        })
    routing: dict = {}
    if draw(st.booleans()):
        routing["cross_border_min_window"] = draw(st.sampled_from(["15m", "1h", "1d"]))
    if draw(st.booleans()):
        routing["fleet_min_window"] = draw(st.sampled_from(["1m", "1h", "1d"]))
    if draw(st.booleans()):
        routing["cross_border_measurements"] = draw(
            st.lists(st.sampled_from(["kpi", "fleet"]), unique=True))
    if draw(st.booleans()):
        routing["allow"] = [{
            "sink": draw(st.sampled_from([s["name"] for s in sinks])),
            "jurisdictions": draw(st.one_of(st.just([]), st.lists(st.sampled_from(COUNTRIES),
                                                                  unique=True, max_size=3))),
            "sites": draw(st.one_of(st.just([]), st.lists(st.sampled_from(ids), unique=True))),
            "measurements": draw(st.lists(st.sampled_from(["kpi", "fleet"]), min_size=1,
                                          unique=True)),
            "min_window": draw(st.sampled_from(["", "", "1h", "2h", "1d"])),
        } for _ in range(draw(st.integers(1, 3)))]
    return {"pipeline": {"windows": ["1m", "15m", "1h", "1d"]}, "sites": sites,
            "sinks": sinks, "routing": routing}


# ------------------------------------------------------------------------------ frames
@st.composite
def frames(draw, site_ids: list[str]) -> tuple[str, pl.DataFrame]:
    measurement = draw(st.sampled_from(["kpi", "kpi", "fleet", "fleet", "quality", "setpoint"]))
    n = draw(st.integers(1, 25))
    rid = list(range(n))
    if measurement == "fleet":
        scopes = draw(st.lists(st.sampled_from(["fleet", *COUNTRIES, "XX"]), min_size=n,
                               max_size=n))
        cols = {"scope": scopes, "window": draw(st.lists(st.sampled_from(ROW_WINDOWS),
                                                         min_size=n, max_size=n))}
    else:
        sites = draw(st.lists(st.sampled_from([*site_ids, "ghost"]), min_size=n, max_size=n))
        cols = {"site": sites}
        if measurement == "kpi":
            cols["window"] = draw(st.lists(st.sampled_from(ROW_WINDOWS), min_size=n, max_size=n))
            cols["category"] = ["2"] * n
        elif measurement == "quality":
            cols.update(kind=["spike"] * n, device=["pdu-1"] * n, point=["power_kw"] * n)
        else:
            cols["asset"] = ["bess-1"] * n
    df = pl.DataFrame({"time": [T] * n, **cols, "run": [""] * n, "rid": rid,
                       "value": [1.0] * n})
    if measurement in ("kpi", "fleet") and draw(st.integers(0, 2)) == 0:
        df = df.with_columns(pl.lit("cdu-3").alias(draw(st.sampled_from(DEVICE_COLUMNS))))
    return measurement, df


# ------------------------------------------------------------------------------ the model
class Model:
    """The routing rules, restated from DESIGN.md / issue 7 for one accepted config."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.juris = {s.id: s.jurisdiction for s in cfg.sites}

    def sources(self, row: dict) -> frozenset[str]:
        if "site" in row:
            return frozenset({self.juris.get(row["site"], "?")})
        if row["scope"] == "fleet":
            return frozenset(self.juris.values())
        return frozenset({row["scope"]}) if row["scope"] in self.juris.values() else frozenset({"?"})

    def may_cross(self, sink, m: str, row: dict, device: bool) -> bool:
        r = self.cfg.routing
        w = _secs(row.get("window") or "")
        if device or w is None or m not in ("kpi", "fleet") or m not in r.cross_border_measurements:
            return False
        base = _secs(r.cross_border_min_window)
        if m == "fleet" and r.fleet_min_window:
            base = _secs(r.fleet_min_window)
        entries = [a for a in r.allow if a.sink == sink.name]
        if not entries:
            return w >= base
        src, site = self.sources(row), row.get("site")
        return any(
            (not a.jurisdictions or src <= set(a.jurisdictions))
            and (not a.sites or site in a.sites)
            and m in a.measurements
            and w >= max(base, _secs(a.min_window) if a.min_window else 0)
            for a in entries)

    def route(self, sink, m: str, df: pl.DataFrame) -> tuple[set[int], int]:
        """(row ids the sink must get, rows the guard must refuse)."""
        if m not in sink.measurements:
            return set(), 0
        device = any(c in df.columns for c in DEVICE_COLUMNS)
        mine = set(sink.sites) or {s for s, j in self.juris.items() if j == sink.jurisdiction}
        get, refuse = set(), 0
        for row in df.iter_rows(named=True):
            home = self.sources(row) == {sink.jurisdiction}
            ok = home or self.may_cross(sink, m, row, device)
            if "site" in row:
                selected = row["site"] in mine
            else:  # aggregates: each sink gets the scopes it may have, nothing is refused
                selected = ok
            if m == "kpi" and sink.min_window:
                w = _secs(row["window"])
                selected = selected and w is not None and w >= _secs(sink.min_window)
            if selected and ok:
                get.add(row["rid"])
            elif selected:
                refuse += 1
        return get, refuse


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_refused_at_load_or_nothing_leaves_that_may_not(data):
    raw = data.draw(configs(), label="config")
    try:
        cfg = parse_config(raw)
    except ConfigError:
        event("config refused at load")
        return
    event("config accepted")
    router = Router(cfg)
    model = Model(cfg)
    sinks = {s.name: s for s in cfg.sinks}
    expected_refused: dict[str, int] = {}
    for _ in range(data.draw(st.integers(1, 8), label="n_frames")):
        measurement, df = data.draw(frames([s.id for s in cfg.sites]), label="frame")
        device = any(c in df.columns for c in DEVICE_COLUMNS)
        clean = not device and "weekly" not in df.get_column("window", default=pl.Series([])).to_list()
        for name, sink in sinks.items():
            before = router.refused.get(name, 0)
            out = router.rows_for(sink, measurement, df)
            got = set() if out is None else set(out["rid"].to_list())
            want, refuse = model.route(sink, measurement, df)
            # the safety property, stated on its own
            for row in ([] if out is None else out.iter_rows(named=True)):
                if model.sources(row) != {sink.jurisdiction}:
                    assert not device, (name, measurement, row)
                    assert measurement in ("kpi", "fleet"), (name, measurement, row)
                    assert model.may_cross(sink, measurement, row, device), (name, row)
            assert got == want, (name, sink, measurement, sorted(got ^ want))
            assert router.refused.get(name, 0) - before == refuse
            expected_refused[name] = expected_refused.get(name, 0) + refuse
            if clean:  # an accepted config never needs the guard for clean rows
                assert refuse == 0, (name, measurement, df)
    assert {k: v for k, v in router.refused.items() if v} == {
        k: v for k, v in expected_refused.items() if v}


@settings(max_examples=100, deadline=None)
@given(raw=configs())
def test_an_accepted_config_lists_no_foreign_site_for_what_may_not_leave(raw):
    try:
        cfg = parse_config(raw)
    except ConfigError:
        return
    model = Model(cfg)
    for sink in cfg.sinks:
        for sid in sink.sites:
            if model.juris[sid] == sink.jurisdiction:
                continue
            assert set(sink.measurements) <= {"kpi", "fleet"}
            if "kpi" in sink.measurements:
                # every window the sink takes may cross, for this site
                for w, secs in SECONDS.items():
                    if sink.min_window and secs >= _secs(sink.min_window):
                        assert model.may_cross(sink, "kpi", {"site": sid, "window": w}, False)
                assert sink.min_window
