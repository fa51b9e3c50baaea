"""Ground truth: true energies and KPIs per site and window, from the fault-free samples.

Computed exactly the way the pipeline integrates: power is linear between samples
(trapezoid), the interval between two samples belongs to the window holding its start
(samples sit on window boundaries, see :func:`pueflow.sim.run.simulate`), and a window
[start, end) gets the integral over [start, end). Windows shorter than a day are aligned to
UTC, ``1d`` to the site's local midnight. Sensors are plain means of the samples whose time
falls in the window. ``coverage`` is the share of the window the run covers, so partial
windows at the run's edges can be told apart.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pueflow.roles import COOLING_SUBSYSTEMS

#: Energy roles tracked by the truth, in column order of ``role_kw`` arrays.
TRUTH_ROLES = (("facility", "it") + tuple(f"cooling.{s}" for s in COOLING_SUBSYSTEMS)
               + ("electrical_losses", "other", "pv", "wind", "grid_import", "grid_export",
                  "battery", "water_l", "ppa"))
ROLE_COL = {r: i for i, r in enumerate(TRUTH_ROLES)}
_NS_PER_HOUR = 3.6e12


def column_name(role: str) -> str:
    """Truth column of a role: ``cooling.chiller`` -> ``cooling_chiller_kwh``; water in litres."""
    if role == "water_l":
        return "water_l"
    return role.replace(".", "_") + "_kwh"


ENERGY_COLUMNS = tuple(column_name(r) for r in TRUTH_ROLES)
#: Every truth column, in order.
COLUMNS = (("time", "site", "window", "coverage") + ENERGY_COLUMNS[:2] + ("cooling_kwh",)
           + ENERGY_COLUMNS[2:] + ("pue", "ppue_cooling", "ref", "wue_l_per_kwh", "ambient_temp_c"))


class TruthAccumulator:
    """Collects per-base-window sums chunk by chunk; :meth:`frame` rolls them up.

    Parameters
    ----------
    site, timezone : str
    windows : dict of window name -> length [ns]
    end_ns : int
        End of the run [ns]; the sample there closes the last interval and opens windows
        of zero coverage (kept, because the pipeline reports them too).
    """

    def __init__(self, site: str, timezone: str, windows: dict[str, int], end_ns: int,
                 role_scale: np.ndarray):
        self.site, self.timezone, self.windows, self.end_ns = site, timezone, windows, end_ns
        self.base_ns = min(windows.values())
        self.role_scale = role_scale  # kWh per (kW * h); water: L per (L/s * h) = 3600
        self._prev_t: int | None = None
        self._prev_p: np.ndarray | None = None
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add(self, time_ns: np.ndarray, role_kw: np.ndarray, ambient_c: np.ndarray) -> None:
        """Add a chunk of true samples: ``role_kw`` (n, len(TRUTH_ROLES)), ``ambient_c`` (n,)."""
        if self._prev_t is None or self._prev_p is None:  # set together: first chunk
            t0, t1, p0, p1 = time_ns[:-1], time_ns[1:], role_kw[:-1], role_kw[1:]
        else:
            t0 = np.concatenate([[self._prev_t], time_ns[:-1]])
            t1 = time_ns
            p0 = np.concatenate([self._prev_p[None, :], role_kw[:-1]])
            p1 = role_kw
        self._prev_t, self._prev_p = int(time_ns[-1]), role_kw[-1].copy()
        energy = 0.5 * (p0 + p1) * ((t1 - t0) / _NS_PER_HOUR)[:, None] * self.role_scale
        e_b, e_sum, cov = _by_bucket(t0 // self.base_ns, energy, (t1 - t0).astype(np.float64))
        s_b, s_sum, s_n = _by_bucket(time_ns // self.base_ns, ambient_c[:, None], np.ones(len(time_ns)))
        self._parts.append((e_b, e_sum, cov, s_b, s_sum[:, 0], s_n))

    def frame(self) -> pl.DataFrame:
        """Truth rows for every configured window (columns :data:`COLUMNS`).

        Sums run in time order with numpy (no hash group-by), so the floats do not depend
        on threads or on how the run was cut into chunks.
        """
        if not self._parts:
            return pl.DataFrame(schema=dict.fromkeys(COLUMNS, pl.Float64))
        e_b, e_sum, cov = _by_bucket(np.concatenate([p[0] for p in self._parts]),
                                     np.concatenate([p[1] for p in self._parts]),
                                     np.concatenate([p[2] for p in self._parts]))
        s_b, s_sum, s_n = _by_bucket(np.concatenate([p[3] for p in self._parts]),
                                     np.concatenate([p[4] for p in self._parts])[:, None],
                                     np.concatenate([p[5] for p in self._parts]))
        # the sample at the end of the run opens windows with no energy (coverage 0), as
        # the pipeline reports them
        buckets = np.union1d(e_b, s_b)
        values = np.zeros((len(buckets), e_sum.shape[1] + 3))
        ei, si = np.searchsorted(buckets, e_b), np.searchsorted(buckets, s_b)
        values[ei, :-3] = e_sum
        values[ei, -3] = cov
        values[si, -2] = s_sum[:, 0]
        values[si, -1] = s_n
        frames = [self._roll(buckets, values, w) for w in self.windows]
        return pl.concat(frames).sort("window", "time").select(COLUMNS)

    def _window_bounds(self, bucket: np.ndarray, window: str) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) [ns] of the ``window`` holding each base bucket."""
        t = bucket * self.base_ns
        if window != "1d":
            n = self.windows[window]
            start = (t // n) * n
            return start, start + n
        local = (pl.Series(t).cast(pl.Datetime("ns", "UTC"))
                 .dt.convert_time_zone(self.timezone).dt.truncate("1d"))
        start = local.dt.convert_time_zone("UTC").cast(pl.Int64).to_numpy()
        end = local.dt.offset_by("1d").dt.convert_time_zone("UTC").cast(pl.Int64).to_numpy()
        return start, end

    def _roll(self, bucket: np.ndarray, values: np.ndarray, window: str) -> pl.DataFrame:
        start, end = self._window_bounds(bucket, window)
        w_start, sums, _ = _by_bucket(start, values, np.zeros(len(start)))
        w_end = end[np.searchsorted(start, w_start)]
        n_e = len(ENERGY_COLUMNS)
        df = pl.DataFrame({
            "time": pl.Series(w_start).cast(pl.Datetime("ns", "UTC")),
            **{c: sums[:, i] for i, c in enumerate(ENERGY_COLUMNS)},
            "coverage": sums[:, n_e] / (w_end - w_start),
            "amb_sum": sums[:, n_e + 1], "amb_n": sums[:, n_e + 2]})
        it, fac = pl.col("it_kwh"), pl.col("facility_kwh")
        cooling = pl.sum_horizontal([pl.col(column_name(f"cooling.{s}")) for s in COOLING_SUBSYSTEMS])
        return df.with_columns(
            pl.lit(self.site).alias("site"), pl.lit(window).alias("window"), cooling.alias("cooling_kwh"),
        ).with_columns(
            pl.when(it > 0).then(fac / it).alias("pue"),
            pl.when(it > 0).then((it + pl.col("cooling_kwh")) / it).alias("ppue_cooling"),
            pl.when(fac > 0).then(pl.min_horizontal((pl.col("pv_kwh") + pl.col("wind_kwh") + pl.col("ppa_kwh")) / fac,
                                                    pl.lit(1.0))).alias("ref"),
            pl.when(it > 0).then(pl.col("water_l") / it).alias("wue_l_per_kwh"),
            pl.when(pl.col("amb_n") > 0).then(pl.col("amb_sum") / pl.col("amb_n")).alias("ambient_temp_c"),
        )


def _by_bucket(bucket: np.ndarray, values: np.ndarray, weight: np.ndarray):
    """Sum ``values`` rows and ``weight`` over runs of equal (sorted) ``bucket``.

    Returns (bucket of each run, row sums (runs, cols), weight sums); empty input gives
    empty arrays.
    """
    if len(bucket) == 0:
        return bucket.astype(np.int64), np.zeros((0, values.shape[1])), np.zeros(0)
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    return bucket[starts], np.add.reduceat(values, starts, axis=0), np.add.reduceat(weight, starts)
