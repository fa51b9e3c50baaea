"""Meters: turn true power into telemetry, and inject (and record) meter faults.

- Power meters report the true kW at each sample.
- Registers accumulate the trapezoid integral of the true power between samples (no
  rounding) on top of a starting reading, and wrap at their rollover maximum.
- Faults (when enabled), each recorded with the quality event the pipeline should raise:
  gaps (a run of samples missing), spikes (a power reading far above ``max_kw``),
  duplicates, late arrival (beyond the grace period), out-of-order arrival (within grace),
  NaN readings, register jitter (a reading slightly below the previous one) and register
  resets (back to zero). Natural register rollovers are recorded too.

Faults are drawn per (sample, series) from uniforms taken in time order, so the result
does not depend on how the run is cut into chunks. Delayed rows are held in a buffer and
emitted at their arrival time, so the output is in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pueflow.config.plant import MeterFaultSpec
from pueflow.jit import njit

POWER, REGISTER, SENSOR = 0, 1, 2
NONE, GAP, SPIKE, DUPLICATE, LATE, OUT_OF_ORDER, NAN, JITTER, RESET, GAP_CONT = range(10)
FAULT_NAMES = {GAP: "gap", SPIKE: "spike", DUPLICATE: "duplicate", LATE: "late",
               OUT_OF_ORDER: "out_of_order", NAN: "nan", JITTER: "jitter", RESET: "reset"}
#: Quality event kind the pipeline should report for each fault (None = silently absorbed).
EXPECTED_QUALITY = {"gap": "gap", "spike": "spike", "duplicate": "duplicate", "late": "late",
                    "out_of_order": None, "nan": "invalid_value", "jitter": None,
                    "reset": "reset", "rollover": "rollover"}
#: A register is not reset above this share of its maximum (it would read as a rollover).
ROLLOVER_ZONE = 0.9
#: Columns of the fault frame (dtype instances, so the dict is ``dict[str, pl.DataType]``).
FAULT_SCHEMA: dict[str, pl.DataType] = {
    "time": pl.Datetime("ns", "UTC"), "site": pl.String(), "device": pl.String(),
    "point": pl.String(), "kind": pl.String(), "expected_quality": pl.String(),
    "detail": pl.Float64()}


@dataclass
class SeriesTable:
    """Emitted series of one site, in emission order, with their meter parameters."""

    device: list[str]
    point: list[str]
    kind: np.ndarray           # int8: POWER / REGISTER / SENSOR
    register_max: np.ndarray   # [kWh or L]
    jitter: np.ndarray         # tolerated register decrease [kWh]
    max_gap_ns: np.ndarray
    spike_kw: np.ndarray       # readings above this are spikes [kW]

    def __len__(self) -> int:
        return len(self.device)


def fault_probabilities(table: SeriesTable, spec: MeterFaultSpec, step_s: float) -> np.ndarray:
    """Cumulative per-sample probability of each fault code 1..8, shape (series, 8)."""
    per = step_s / 86400.0
    reg = table.kind == REGISTER
    powr = table.kind == POWER
    rates = np.zeros((len(table), 8))
    rates[:, GAP - 1] = spec.gaps_per_series_day
    rates[:, SPIKE - 1] = np.where(powr, spec.spikes_per_series_day, 0.0)
    rates[:, DUPLICATE - 1] = spec.duplicates_per_series_day
    rates[:, LATE - 1] = spec.late_per_series_day
    rates[:, OUT_OF_ORDER - 1] = spec.out_of_order_per_series_day
    rates[:, NAN - 1] = spec.nan_per_series_day
    rates[:, JITTER - 1] = np.where(reg & (table.jitter > 0), spec.jitter_per_register_day, 0.0)
    rates[:, RESET - 1] = np.where(reg, spec.resets_per_register_day, 0.0)
    return np.cumsum(rates * per, axis=1)


@njit
def _plan(u, u2, cum_p, gap_min, gap_max, gap_left, g0, n_total, codes):  # pragma: no cover
    """Fault code per (sample, series); ``gap_left`` carries open gaps across chunks."""
    n, s_count = u.shape
    n_kinds = cum_p.shape[1]
    for k in range(n):
        g = g0 + k
        for j in range(s_count):
            if gap_left[j] > 0:
                codes[k, j] = GAP_CONT
                gap_left[j] -= 1
                continue
            codes[k, j] = NONE
            if g == 0 or g >= n_total - 1:
                continue  # keep the first and last sample: they bound the run
            x = u[k, j]
            if x >= cum_p[j, n_kinds - 1]:
                continue
            c = 0
            while x >= cum_p[j, c]:
                c += 1
            code = c + 1
            if code == GAP:
                length = gap_min + int(u2[k, j] * (gap_max - gap_min + 1))
                length = min(length, n_total - 1 - g)
                gap_left[j] = length - 1
            codes[k, j] = code


@njit
def _registers(p, started, prev_p, scale, cum, base, wraps, reg_max, jitter, reset, out, wrapped):  # pragma: no cover
    """Advance registers over a chunk.

    ``reset[k, j]`` is cleared where a reader could not tell it from a rollover (reading in
    the top decile) or from jitter (too small a drop).
    """
    n, r = p.shape
    for k in range(n):
        for j in range(r):
            inc = 0.5 * (prev_p[j] + p[k, j]) * scale[j] if started else 0.0
            if reset[k, j]:
                before = base[j] + cum[j] - wraps[j] * reg_max[j]
                if before < ROLLOVER_ZONE * reg_max[j] and before - inc > jitter[j]:
                    base[j] = -cum[j]
                    wraps[j] = 0.0
                else:
                    reset[k, j] = False
            cum[j] += inc
            raw = base[j] + cum[j]
            w = np.floor(raw / reg_max[j])
            wrapped[k, j] = w > wraps[j]
            wraps[j] = w
            out[k, j] = raw - w * reg_max[j]
            prev_p[j] = p[k, j]
        started = True


@dataclass
class RegisterBank:
    """Cumulative registers of one site (state carried across chunks)."""

    start: np.ndarray
    reg_max: np.ndarray
    scale: np.ndarray          # per-sample-interval factor: dt/3600 (kWh) or dt (L from L/s)
    jitter: np.ndarray         # decrease a reader tolerates as noise
    cum: np.ndarray = field(init=False)
    wraps: np.ndarray = field(init=False)
    prev_p: np.ndarray = field(init=False)
    started: bool = False

    def __post_init__(self) -> None:
        self.cum = np.zeros(len(self.start))
        self.base = self.start.astype(np.float64).copy()
        self.wraps = np.floor(self.base / self.reg_max)
        self.prev_p = np.zeros(len(self.start))

    def advance(self, power: np.ndarray, reset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integrate power into the registers and return the readings.

        Each register gains the trapezoid of power over each sample interval (the first
        sample ever adds nothing) and wraps at ``reg_max``.

        Parameters
        ----------
        power : array, shape (n, r)
            Power of each metered series ([kW], or [L/s] for water meters).
        reset : array of bool, shape (n, r)
            Requested register resets; edited in place: a reset a reader could not tell
            from a rollover or from jitter is cleared (not applied).

        Returns
        -------
        readings : array, shape (n, r)
            Register values ([kWh] or [L]), in [0, reg_max).
        wrapped : array of bool, shape (n, r)
            True where the register wrapped at this sample. ``n = 0`` gives empty arrays and
            leaves the state unchanged.
        """
        n, r = power.shape
        out = np.empty((n, r))
        wrapped = np.zeros((n, r), np.bool_)
        if n:
            _registers(np.ascontiguousarray(power, np.float64), self.started, self.prev_p, self.scale,
                       self.cum, self.base, self.wraps, self.reg_max, self.jitter, reset, out, wrapped)
            self.started = True
        return out, wrapped


@dataclass
class Emitted:
    """Rows of one chunk in arrival order plus the faults recorded in it."""

    time_ns: np.ndarray
    series: np.ndarray
    value: np.ndarray
    fault_rows: list[tuple[int, int, str, str | None, float]]


class FaultInjector:
    """Plans faults per chunk, distorts readings, and re-orders rows by arrival time."""

    def __init__(self, table: SeriesTable, spec: MeterFaultSpec, step_s: float, n_total: int,
                 grace_ns: int, rng: np.random.Generator, enabled: bool):
        self.table, self.spec, self.enabled = table, spec, enabled
        self.step_ns = int(round(step_s * 1e9))
        self.n_total, self.grace_ns = n_total, grace_ns
        self._rng_u, self._rng_u2 = rng.spawn(2)  # separate streams: chunking changes nothing
        self.cum_p = fault_probabilities(table, spec, step_s)
        self.gap_min = max(1, int(np.ceil(spec.gap_minutes_min * 60 / step_s)))
        self.gap_max = max(self.gap_min, int(np.ceil(spec.gap_minutes_max * 60 / step_s)))
        self.gap_left = np.zeros(len(table), np.int64)
        self._prev_clean = np.zeros(len(table))
        self._buf = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32),
                     np.empty(0, np.float64))

    def plan(self, g0: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw the faults of ``n`` samples starting at global sample ``g0``.

        Returns
        -------
        codes : array of int8, shape (n, series)
            Fault code per sample and series (0 = none; all 0 when faults are disabled).
        u2 : array, shape (n, series)
            Uniform draws that size each fault.
        """
        s = len(self.table)
        codes = np.zeros((n, s), np.int8)
        if not self.enabled:
            return codes, np.zeros((n, s))
        u = self._rng_u.random((n, s))
        u2 = self._rng_u2.random((n, s))
        _plan(u, u2, self.cum_p, self.gap_min, self.gap_max, self.gap_left, g0, self.n_total, codes)
        return codes, u2

    def apply(self, time_ns: np.ndarray, values: np.ndarray, codes: np.ndarray, u2: np.ndarray,
              chunk_end_ns: int, final: bool) -> Emitted:
        """Distort ``values`` (n, series) per ``codes`` and emit rows in arrival order."""
        n, s = values.shape
        vals = values.copy()
        faults: list[tuple[int, int, str, str | None, float]] = []
        if self.enabled:
            self._distort(time_ns, values, vals, codes, u2, faults)
        times = np.repeat(time_ns, s)
        series = np.tile(np.arange(s, dtype=np.int32), n)
        flat_codes = codes.ravel()
        flat_vals = vals.ravel()
        keep = ~np.isin(flat_codes, (GAP, GAP_CONT, LATE, OUT_OF_ORDER))
        delayed = np.isin(flat_codes, (LATE, OUT_OF_ORDER, DUPLICATE))
        du = u2.ravel()[delayed]
        dc = flat_codes[delayed]
        delay = np.where(dc == LATE, self.grace_ns + 60 * 10**9 + (du * 540e9).astype(np.int64),
                         np.where(dc == OUT_OF_ORDER, ((0.2 + 0.5 * du) * self.grace_ns).astype(np.int64),
                                  (du * 0.5 * self.grace_ns).astype(np.int64)))
        bt, ba, bs, bv = self._buf
        d_arr = np.concatenate([ba, times[delayed] + delay])
        d_t = np.concatenate([bt, times[delayed]])
        d_s = np.concatenate([bs, series[delayed]])
        d_v = np.concatenate([bv, flat_vals[delayed]])
        due = np.ones(len(d_arr), bool) if final else d_arr < chunk_end_ns
        order = np.lexsort((d_s[due], d_arr[due]))
        q_arr, q_t, q_s, q_v = d_arr[due][order], d_t[due][order], d_s[due][order], d_v[due][order]
        self._buf = (d_t[~due], d_arr[~due], d_s[~due], d_v[~due])
        m_t, m_s, m_v = times[keep], series[keep], flat_vals[keep]
        pos = np.searchsorted(m_t, q_arr, side="right")
        return Emitted(np.insert(m_t, pos, q_t), np.insert(m_s, pos, q_s), np.insert(m_v, pos, q_v),
                       faults)

    def _distort(self, time_ns, clean, vals, codes, u2, faults) -> None:
        t = self.table
        ks, js = np.nonzero((codes != NONE) & (codes != GAP_CONT))
        for k, j in zip(ks.tolist(), js.tolist(), strict=True):
            code = int(codes[k, j])
            x = float(u2[k, j])
            detail = 0.0
            expected = EXPECTED_QUALITY[FAULT_NAMES[code]]
            if code == GAP:
                length = 1
                while k + length < len(codes) and codes[k + length, j] == GAP_CONT:
                    length += 1
                length += int(self.gap_left[j]) if k + length == len(codes) else 0
                span_ns = (length + 1) * self.step_ns
                detail = length * self.step_ns / 1e9
                # sensors are averaged, not integrated: a reader has no gap to report
                expected = "gap" if span_ns > t.max_gap_ns[j] and t.kind[j] != SENSOR else None
            elif code == SPIKE:
                vals[k, j] = detail = t.spike_kw[j] * (1.5 + x)
            elif code == NAN:
                vals[k, j] = np.nan
            elif code == JITTER:
                prev = clean[k - 1, j] if k > 0 else self._prev_clean[j]
                dec = (0.2 + 0.7 * x) * t.jitter[j]
                if prev - dec < 0.0 or prev - dec >= clean[k, j]:
                    codes[k, j] = NONE
                    continue
                vals[k, j] = prev - dec
                detail = dec
            elif code == LATE:
                detail = (self.grace_ns + 60e9 + x * 540e9) / 1e9
            elif code == OUT_OF_ORDER:
                detail = (0.2 + 0.5 * x) * self.grace_ns / 1e9
            faults.append((int(time_ns[k]), j, FAULT_NAMES[code], expected, detail))
        self._prev_clean = clean[-1].copy()


def frame(site: str, table: SeriesTable, rows: Emitted) -> pl.DataFrame:
    """Return emitted rows in canonical long form: time (UTC), site, device, point, value."""
    n = len(rows.time_ns)
    dev = pl.Series("device", table.device, dtype=pl.Enum(sorted(set(table.device))))
    pts = pl.Series("point", table.point, dtype=pl.Enum(sorted(set(table.point))))
    idx = pl.Series(rows.series.astype(np.uint32))
    return pl.DataFrame({
        "time": pl.Series("time", rows.time_ns).cast(pl.Datetime("ns", "UTC")),
        "site": pl.Series("site", [site]).gather(np.zeros(n, np.uint32)) if n else pl.Series("site", [], pl.String),
        "device": dev.gather(idx).cast(pl.String),
        "point": pts.gather(idx).cast(pl.String),
        "value": rows.value,
    })


def fault_frame(site: str, table: SeriesTable, records: list[tuple[int, int, str, str | None, float]]) -> pl.DataFrame:
    """Return recorded faults as a frame with :data:`FAULT_SCHEMA`.

    Parameters
    ----------
    site : str
        Site id written on every row.
    table : SeriesTable
        The site's series (device and point by index).
    records : list of (int, int, str, str or None, float)
        (time [ns], series index, kind, expected quality kind, detail) per fault.

    Returns
    -------
    polars.DataFrame
        One row per record; empty (with the schema) when there are none.
    """
    if not records:
        return pl.DataFrame(schema=FAULT_SCHEMA)
    t, j, kind, exp, det = zip(*records, strict=True)
    return pl.DataFrame({
        "time": pl.Series(t, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")),
        "site": [site] * len(t), "device": [table.device[i] for i in j],
        "point": [table.point[i] for i in j], "kind": list(kind), "expected_quality": list(exp),
        "detail": list(det)}, schema=FAULT_SCHEMA)
