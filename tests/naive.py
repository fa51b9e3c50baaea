"""Slow, obviously-correct references for the pipeline kernels.

Written from DESIGN.md ("KPI rules", "Streaming semantics") in plain Python, one reading at a
time, with dicts instead of arrays. They share no code with ``pueflow.pipeline``: only the
role names, event codes and field names (the contract) are imported.

Time is int nanoseconds (UTC), energy kWh, power kW.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

NS = 10**9
NS_PER_HOUR = 3600 * NS
NO_TIME = -(2**63)

# event codes and names are part of the kernels' contract, not their logic
EV_ROLLOVER, EV_RESET, EV_SPIKE, EV_REBASE, EV_GAP = 1, 2, 3, 4, 5
OK, UNKNOWN, FUTURE, INVALID, SPIKE, LATE = 0, 1, 2, 3, 4, 5
KIND_REGISTER, KIND_POWER, KIND_SENSOR = 0, 1, 2
ROLLOVER_ZONE = 0.9
SPIKES_BEFORE_REBASE = 3

_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": NS, "m": 60 * NS, "h": 3600 * NS,
          "d": 86400 * NS}


def duration_ns(text: str) -> int:
    """``"90s"`` -> 90e9 (only the simple forms the tests use)."""
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * _UNITS[unit])
    raise ValueError(text)


# --------------------------------------------------------------------------- registers


@dataclass
class RegisterState:
    """Previous accepted reading (the register's max-so-far) and the current spike run."""

    t: int | None = None
    v: float = 0.0
    spikes: int = 0


def register_step(st: RegisterState, t: int, v: float, *, register_max: float, jitter: float,
                  max_kw: float):
    """One register reading against the state before it (DESIGN "Registers").

    Returns ``(t0, delta, events)`` where ``delta`` is None when the reading adds nothing
    (first reading, spike) and ``events`` is a list of ``(code, value)``; ``st`` is updated.
    """
    if st.t is None:
        st.t, st.v = t, v
        return None, None, []
    t0, prev = st.t, st.v
    dt_h = (t - t0) / NS_PER_HOUR
    kept = v
    events = []
    delta = v - prev                               # NaN in, NaN out: not a decrease
    kind = None
    if delta < 0:
        if -delta <= jitter:                       # jitter: nothing, keep the max-so-far
            delta, kept = 0.0, prev
        elif prev >= ROLLOVER_ZONE * register_max:
            delta, kind = (register_max - prev) + v, EV_ROLLOVER
        else:
            delta, kind = v, EV_RESET
    if delta > max_kw * dt_h:                      # implied power above max_kw: a spike
        st.spikes += 1
        if st.spikes >= SPIKES_BEFORE_REBASE:      # a replaced meter: start again from here
            st.spikes = 0
            st.t, st.v = t, v
            return None, None, [(EV_REBASE, delta)]
        return None, None, [(EV_SPIKE, delta)]
    st.spikes = 0
    if kind is not None:
        events.append((kind, delta))
    st.t, st.v = t, kept
    return t0, delta, events


def register_energy(times, values, *, register_max=1e12, jitter=0.0, max_kw=math.inf):
    """Total energy [kWh] and events of one register series (no max_gap: every delta counts)."""
    st = RegisterState()
    total, events = 0.0, []
    for t, v in zip(times, values, strict=True):
        _, delta, ev = register_step(st, int(t), float(v), register_max=register_max,
                                     jitter=jitter, max_kw=max_kw)
        events.extend(ev)
        if delta is not None:
            total += delta
    return total, events


# --------------------------------------------------------------------------- power


def linear_value(t0, v0, t1, v1, t):
    """Power at ``t`` on the line through the two samples (the samples themselves at the ends)."""
    if t == t0:
        return v0
    if t == t1:
        return v1
    return v0 + (v1 - v0) * ((t - t0) / (t1 - t0))


def linear_energy(t0, v0, t1, v1, lo, hi):
    """Exact integral [kWh] of the linear power over ``[lo, hi]`` (inside ``[t0, t1]``)."""
    a = linear_value(t0, v0, t1, v1, lo)
    b = linear_value(t0, v0, t1, v1, hi)
    return (a + b) / 2 * ((hi - lo) / NS_PER_HOUR)


def trapezoid(times, values, max_gap_ns):
    """Energy [kWh] and covered time [ns] of power samples; longer intervals are not filled."""
    energy, covered = 0.0, 0
    for i in range(1, len(times)):
        t0, t1 = int(times[i - 1]), int(times[i])
        if t1 - t0 <= max_gap_ns:
            energy += (values[i - 1] + values[i]) / 2 * ((t1 - t0) / NS_PER_HOUR)
            covered += t1 - t0
    return energy, covered


def coverage(covered_ns: int, window_ns: int) -> float:
    return covered_ns / window_ns


# --------------------------------------------------------------------------- buckets


def boundaries(t0: int, t1: int, base_ns: int):
    """``[t0, b1, b2, ..., t1]``: the interval cut at every multiple of ``base_ns``."""
    pts = [t0]
    b = (t0 // base_ns + 1) * base_ns
    while b < t1:
        pts.append(b)
        b += base_ns
    pts.append(t1)
    return pts


def split_linear(t0, v0, t1, v1, base_ns):
    """``{bucket: (kWh, ns)}`` of power linear from (t0, v0) to (t1, v1) cut at buckets."""
    out = {}
    pts = boundaries(t0, t1, base_ns)
    for lo, hi in zip(pts[:-1], pts[1:], strict=True):
        out[lo // base_ns] = (linear_energy(t0, v0, t1, v1, lo, hi), hi - lo)
    return out


def split_uniform(t0, t1, energy, base_ns):
    """``{bucket: (kWh, ns)}`` of ``energy`` spread uniformly over ``[t0, t1)``."""
    out = {}
    pts = boundaries(t0, t1, base_ns)
    for lo, hi in zip(pts[:-1], pts[1:], strict=True):
        out[lo // base_ns] = (energy * ((hi - lo) / (t1 - t0)), hi - lo)
    return out


@dataclass
class SeriesParams:
    kind: int
    register_max: float = 1e12
    jitter: float = 0.0
    max_gap_ns: int = 60 * NS
    max_kw: float = math.inf


@dataclass
class IntegrateState:
    """Per-series state the kernels carry between calls."""

    register: dict = field(default_factory=dict)   # series -> RegisterState
    power: dict = field(default_factory=dict)      # series -> (t, v)


@dataclass
class Buckets:
    """Per (series, bucket) accumulators and the events, as the kernel should produce."""

    energy: dict = field(default_factory=lambda: defaultdict(float))
    covered: dict = field(default_factory=lambda: defaultdict(float))
    ssum: dict = field(default_factory=lambda: defaultdict(float))
    scount: dict = field(default_factory=lambda: defaultdict(int))
    events: list = field(default_factory=list)     # (reading index, code, value)


def integrate(time_ns, series, value, params: dict[int, SeriesParams], base_ns: int,
              state: IntegrateState | None = None, out: Buckets | None = None) -> Buckets:
    """Reference for ``energy.integrate``: readings sorted by (series, time), no duplicates.

    Register deltas are spread uniformly over their interval when it is no longer than
    max_gap, else booked whole in the bucket of the later reading (a gap, not covered).
    Power is the trapezoid cut at bucket boundaries; a longer interval is a gap. Sensors
    are summed and counted in the bucket of the reading.
    """
    state = state if state is not None else IntegrateState()
    out = out if out is not None else Buckets()
    for i in range(len(time_ns)):
        s, t, v = int(series[i]), int(time_ns[i]), float(value[i])
        p = params[s]
        if p.kind == KIND_SENSOR:
            out.ssum[s, t // base_ns] += v
            out.scount[s, t // base_ns] += 1
            continue
        if p.kind == KIND_POWER:
            prev = state.power.get(s)
            state.power[s] = (t, v)
            if prev is None:
                continue
            t0, v0 = prev
            if t - t0 > p.max_gap_ns:
                out.events.append((i, EV_GAP, (t - t0) / NS))
                continue
            for b, (e, c) in split_linear(t0, v0, t, v, base_ns).items():
                out.energy[s, b] += e
                out.covered[s, b] += c
            continue
        st = state.register.setdefault(s, RegisterState())
        t0, delta, events = register_step(st, t, v, register_max=p.register_max,
                                          jitter=p.jitter, max_kw=p.max_kw)
        out.events.extend((i, code, val) for code, val in events)
        if delta is None:
            continue
        if t - t0 <= p.max_gap_ns:
            for b, (e, c) in split_uniform(t0, t, delta, base_ns).items():
                out.energy[s, b] += e
                out.covered[s, b] += c
        else:
            out.energy[s, t // base_ns] += delta
            out.events.append((i, EV_GAP, (t - t0) / NS))
    return out


# --------------------------------------------------------------------------- screening


def screen(time_ns, series, value, *, site_of, role_of, kind_of, signed, max_kw,
           grace_ns, future_limit_ns, site_max_t=None):
    """Reference for ``screen.screen``: codes in arrival order and the final watermarks.

    A reading is, in this order of precedence: unknown (no site or no role), from the
    future, invalid (NaN/inf, negative where the role is unsigned and not a sensor), a power
    spike (|kW| > max_kw), late (older than the site's max accepted time - grace), or OK.
    """
    max_t = dict(site_max_t or {})
    codes = []
    for t, s, v in zip(time_ns, series, value, strict=True):
        t, s, v = int(t), int(s), float(v)
        if not 0 <= s < len(site_of) or site_of[s] < 0 or role_of[s] < 0:
            codes.append(UNKNOWN)
        elif t > future_limit_ns:
            codes.append(FUTURE)
        elif not math.isfinite(v) or (v < 0 and not signed[s] and kind_of[s] != KIND_SENSOR):
            codes.append(INVALID)
        elif kind_of[s] == KIND_POWER and abs(v) > max_kw[s]:
            codes.append(SPIKE)
        elif site_of[s] in max_t and t < max_t[site_of[s]] - grace_ns:
            codes.append(LATE)
        else:
            codes.append(OK)
            site = site_of[s]
            max_t[site] = max(max_t.get(site, t), t)
    watermarks = {site: m - grace_ns for site, m in max_t.items()}
    return codes, watermarks


def _nan_last(v: float):
    return (1, 0.0) if math.isnan(v) else (0, v)


def sort_dedup(series, time_ns, value):
    """Reference for ``screen.sort_dedup``: (kept, dropped) reading indices.

    Sorted by (series, time); of several readings of one (series, time) the one with the
    smallest value is kept (NaN counts as largest; ties go to the earliest arrival).
    """
    idx = sorted(range(len(series)),
                 key=lambda i: (int(series[i]), int(time_ns[i]), _nan_last(float(value[i])), i))
    kept, dup, seen = [], [], set()
    for i in idx:
        key = (int(series[i]), int(time_ns[i]))
        (dup if key in seen else kept).append(i)
        seen.add(key)
    return kept, dup


def close_time(last_t: dict[int, int], max_gap_ns: dict[int, int], watermark_ns: int) -> int:
    """Latest time up to which a site's buckets are final.

    A reading at or after the watermark is still accepted; if it lands within max_gap of a
    series' last reading it fills the interval from that last reading. So no bucket at or
    after the last reading of such a series can be final yet.
    """
    ct = watermark_ns
    for s, t in last_t.items():
        if t is None:
            continue
        if t + max_gap_ns[s] >= watermark_ns:
            ct = min(ct, t)
    return ct


# --------------------------------------------------------------------------- windows


def day_start(t_ns: int, tz: ZoneInfo) -> int:
    """First instant [ns] of the local calendar day holding ``t_ns`` (local midnight, or
    the first instant after it when midnight does not exist that day)."""
    d = datetime.fromtimestamp(t_ns // NS, UTC).astimezone(tz).date()
    return _first_instant(d, tz)


def _first_instant(d, tz: ZoneInfo) -> int:
    cands = []
    for fold in (0, 1):
        local = datetime.combine(d, time(0), tzinfo=tz).replace(fold=fold)
        ts = int(local.astimezone(UTC).timestamp())
        if datetime.fromtimestamp(ts, UTC).astimezone(tz).date() == d:
            cands.append(ts)
    return min(cands) * NS


def window_bounds(window: str, t_ns: int, tz: ZoneInfo) -> tuple[int, int]:
    """``[start, end)`` [ns, UTC] of the tumbling window holding ``t_ns``: fixed UTC-aligned
    windows, except ``1d`` which runs from local midnight to the next local midnight."""
    if window == "1d":
        start = day_start(t_ns, tz)
        d = datetime.fromtimestamp(start / NS, UTC).astimezone(tz).date()
        return start, _first_instant(d + timedelta(days=1), tz)
    n = duration_ns(window)
    start = t_ns - (t_ns % n)
    return start, start + n


def rollup(site_series, role_of, kind_of, first_t, base_ns, b0, n_buckets, acc_e, acc_cov,
           acc_sum, acc_n, n_roles):
    """Reference for ``windows.rollup`` as lists of per-bucket dicts."""
    rows = []
    for k in range(n_buckets):
        end = (b0 + k + 1) * base_ns
        e = [0.0] * n_roles
        ssum = [0.0] * n_roles
        sn = [0] * n_roles
        cov, den = 0.0, 0
        for s in site_series:
            r = int(role_of[s])
            if kind_of[s] == KIND_SENSOR:
                ssum[r] += acc_sum[s][k]
                sn[r] += int(acc_n[s][k])
            else:
                e[r] += acc_e[s][k]
                if first_t[s] != NO_TIME and first_t[s] < end:
                    cov += acc_cov[s][k]
                    den += 1
        rows.append({"e": e, "cov": cov, "den": den, "ssum": ssum, "sn": sn})
    return rows


# --------------------------------------------------------------------------- KPIs

COOLING = ("chiller", "dry_cooler", "cdu_pump", "immersion", "crah", "tower")


def kpis(e: dict[str, float], metered: set[str], co2_kg_per_kwh: float = 0.0):
    """ISO/IEC 30134 KPIs of one window from role energies.

    ``e`` maps role -> kWh (litres for ``water_l``); roles not in ``metered`` have no meter.
    Returns ``(fields, flag)`` with None for a KPI that is not reported and flag one of
    None, "non_positive_it", "better_than_perfect".
    """
    def g(role):
        return float(e.get(role, 0.0))

    it = g("it")
    cool_roles = [f"cooling.{c}" for c in COOLING if f"cooling.{c}" in metered]
    cooling = sum(g(r) for r in cool_roles) if cool_roles else None
    if "facility" in metered:
        facility = g("facility")
    else:
        facility = it + (cooling or 0.0) + g("electrical_losses") + g("other")
    f = {"facility_kwh": facility, "cooling_kwh": cooling}
    for name in ("pue", "ppue_cooling", *(f"ppue_{c}" for c in COOLING), "ppue_electrical",
                 "ppue_other", "ref", "cue_kg_per_kwh", "wue_l_per_kwh", "erf", "cfe_hourly",
                 "cfe_matched_kwh"):
        f[name] = None
    flag = None
    if not it > 0:
        flag = "non_positive_it"
    else:
        pue = facility / it
        if pue < 1:
            flag = "better_than_perfect"
        else:
            f["pue"] = pue
        if cool_roles:
            f["ppue_cooling"] = (it + cooling) / it
        for c in COOLING:
            if f"cooling.{c}" in metered:
                f[f"ppue_{c}"] = (it + g(f"cooling.{c}")) / it
        if "electrical_losses" in metered:
            f["ppue_electrical"] = (it + g("electrical_losses")) / it
        if "other" in metered:
            f["ppue_other"] = (it + g("other")) / it
        grid = g("grid_import") if "grid_import" in metered else max(
            facility - g("pv") - g("wind"), 0.0)
        f["cue_kg_per_kwh"] = grid * co2_kg_per_kwh / it
        if "water_l" in metered:
            f["wue_l_per_kwh"] = g("water_l") / it
    if facility > 0:
        if metered & {"pv", "wind", "ppa"}:
            ren = g("pv") + g("wind") + g("ppa")
            f["ref"] = min(ren / facility, 1.0)
            # the window's own match (frames keep it on 1-hour windows only)
            f["cfe_matched_kwh"] = facility if ren >= facility else max(ren, 0.0)
            f["cfe_hourly"] = f["cfe_matched_kwh"] / facility
        if "heat_reuse_kwh" in metered:
            f["erf"] = g("heat_reuse_kwh") / facility
    return f, flag


def pue(facility_kwh: float, it_kwh: float) -> float:
    return facility_kwh / it_kwh


def ppue(it_kwh: float, overhead_kwh: float) -> float:
    return (it_kwh + overhead_kwh) / it_kwh


def fleet_pue(sites: list[tuple[float, float]]) -> float:
    """Energy-weighted fleet PUE from (facility kWh, IT kWh) per site: a ratio of sums."""
    return sum(f for f, _ in sites) / sum(i for _, i in sites)


# --------------------------------------------------------------------------- end to end


@dataclass
class Meter:
    """One series of the end-to-end reference: its role and how it is read."""

    role: str
    kind: str                      # "register" | "power" | "sensor"
    register_max: float = 1e12
    jitter: float = 0.0
    max_gap_ns: int = 60 * NS
    max_kw: float = math.inf
    signed: bool = False


def kpi_rows(readings, meters: dict[str, Meter], windows: list[str], tz: ZoneInfo,
             co2_kg_per_kwh: float = 0.0):
    """Expected ``kpi`` rows of one site fed ``readings`` in time order, then finalized.

    ``readings`` is a list of ``(time_ns, series_name, value)``; every series name is in
    ``meters``. Energy is split exactly at window boundaries (not through buckets), so this
    checks the bucket machinery too. Returns ``{(window, start_ns): row}``.
    """
    # screening: invalid values and power spikes out; duplicates keep the smallest value
    good = {}
    for t, name, v in readings:
        m = meters[name]
        v = float(v)
        if not math.isfinite(v) or (v < 0 and not m.signed and m.kind != "sensor"):
            continue
        if m.kind == "power" and abs(v) > m.max_kw:
            continue
        key = (name, int(t))
        good[key] = min(good.get(key, v), v)
    if not good:
        return {}
    series = defaultdict(list)
    for (name, t), v in sorted(good.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        series[name].append((t, v))
    first_t = {name: pts[0][0] for name, pts in series.items()}
    t_min = min(first_t.values())
    t_max = max(t for pts in series.values() for t, _ in pts)

    # pieces: (role, kind of piece, payload); events: (time, column)
    linear, uniform, point, sensor, events = [], [], [], [], []
    for name, pts in series.items():
        m = meters[name]
        if m.kind == "sensor":
            sensor.extend((m.role, t, v) for t, v in pts)
            continue
        if m.kind == "power":
            for (t0, v0), (t1, v1) in zip(pts[:-1], pts[1:], strict=True):
                if t1 - t0 <= m.max_gap_ns:
                    linear.append((m.role, t0, v0, t1, v1))
                else:
                    events.append((t1, "gaps"))
            continue
        st = RegisterState()
        for t, v in pts:
            t0, delta, evs = register_step(st, t, v, register_max=m.register_max,
                                           jitter=m.jitter, max_kw=m.max_kw)
            for code, _ in evs:
                if code == EV_ROLLOVER:
                    events.append((t, "rollovers"))
                elif code == EV_RESET:
                    events.append((t, "resets"))
            if delta is None:
                continue
            if t - t0 <= m.max_gap_ns:
                uniform.append((m.role, t0, t, delta))
            else:
                point.append((m.role, t, delta))
                events.append((t, "gaps"))

    metered = {m.role for m in meters.values()}
    energy_roles = {m.role for m in meters.values() if m.kind != "sensor"}
    energy_series = [n for n in series if meters[n].kind != "sensor"]
    base_ns = min(duration_ns(w) for w in windows)
    # the core's windows start at the earliest reading's base bucket and run to the end of
    # the longest window holding the last reading's bucket
    first_b = t_min - t_min % base_ns
    last_b = t_max - t_max % base_ns
    end_all = max(window_bounds(w, last_b, tz)[1] for w in windows)
    rows = {}
    for w in windows:
        start, end = window_bounds(w, first_b, tz)
        while end <= end_all:
            rows[w, start] = _window_row(
                start, end, linear, uniform, point, sensor, events, metered, energy_roles,
                energy_series, first_t, co2_kg_per_kwh)
            if rows[w, start]["_empty"] and start >= t_max:
                del rows[w, start]          # padding after the last reading, not data
            start, end = end, window_bounds(w, end, tz)[1]
    return rows


def _window_row(a, b, linear, uniform, point, sensor, events, metered, energy_roles,
                energy_series, first_t, co2):
    e = defaultdict(float)
    covered = 0
    for role, t0, v0, t1, v1 in linear:
        lo, hi = max(t0, a), min(t1, b)
        if lo < hi:
            e[role] += linear_energy(t0, v0, t1, v1, lo, hi)
            covered += hi - lo
    for role, t0, t1, delta in uniform:
        lo, hi = max(t0, a), min(t1, b)
        if lo < hi:
            e[role] += delta * ((hi - lo) / (t1 - t0))
            covered += hi - lo
    for role, t, delta in point:
        if a <= t < b:
            e[role] += delta
    smean = defaultdict(list)
    for role, t, v in sensor:
        if a <= t < b:
            smean[role].append(v)
    # every energy series that had started reporting before the window ended is expected
    # to cover the whole window
    den = sum(1 for n in energy_series if first_t[n] < b)
    row, flag = kpis(e, metered, co2)
    if b - a != 3600 * 10**9:  # hourly matching: only 1-hour windows carry it
        row["cfe_hourly"] = row["cfe_matched_kwh"] = None
    row["coverage"] = covered / (den * (b - a)) if den else 0.0
    for col in ("rollovers", "resets", "gaps"):
        row[col] = sum(1 for t, c in events if c == col and a <= t < b)
    for role in energy_roles:
        row[energy_column(role)] = e.get(role, 0.0)
    for role, vs in smean.items():
        row[role] = sum(vs) / len(vs)
    row["_flag"] = flag if den and row["coverage"] > 0 else None
    row["_empty"] = not any(v != 0 for v in e.values()) and not smean
    row["_n"] = (a, b)
    return row


def energy_column(role: str) -> str:
    """Name of the ``kpi`` column holding a role's window energy (``cooling.cdu_pump`` ->
    ``cooling_cdu_pump_kwh``, ``water_l`` stays)."""
    name = role.replace(".", "_")
    return name if name.endswith(("_kwh", "_l")) else name + "_kwh"
