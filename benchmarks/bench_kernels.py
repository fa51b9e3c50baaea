"""Energy + window kernel throughput against polars and memcpy, measured in one run.

Data: ``--series`` power series x ``--samples`` readings at a 10 s period (20 M readings by
default), sorted by (series, time), as the core hands them to the kernels.

- kernel: ``energy.integrate`` (trapezoid into 1 min buckets per series) followed by
  ``windows.rollup`` (per-role totals per bucket), one thread;
- polars: sort, shift to form trapezoid pieces, truncate to 1 min with
  ``group_by_dynamic`` grouped by series, sum: the same per-series-per-minute energies;
- reference: a bare single-pass numba trapezoid loop (what "close to the limit" means);
- memcpy: ``np.copyto`` of a float64 array as large as the values (the memory-bound ceiling).

The two energy results are checked to agree (allclose) before anything is reported.
Floors (issue 2): >= 100 M samples/s and >= 3x polars. ``--strict`` exits 1 below a floor.

Run: ``.venv/bin/python benchmarks/bench_kernels.py [--series 2000 --samples 10000]``
"""

from __future__ import annotations

import argparse
import sys
import time

import numba
import numpy as np
import polars as pl

from pueflow.pipeline import energy as en
from pueflow.pipeline import windows as wn

NS = 10**9
BASE_NS = 60 * NS
STEP_NS = 10 * NS
T0_NS = 1_711_836_000 * NS          # minute-aligned
N_ROLES = 4
FLOOR_SAMPLES_PER_S = 100e6
FLOOR_VS_POLARS = 3.0


def make_data(n_series: int, n_samples: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    series = np.repeat(np.arange(n_series, dtype=np.int32), n_samples)
    time_ns = np.tile(T0_NS + np.arange(n_samples, dtype=np.int64) * STEP_NS, n_series)
    value = rng.uniform(0.0, 1500.0, n_series * n_samples)
    return time_ns, series, value


class KernelRun:
    """Parameter arrays, state and accumulators for one integrate + rollup pass."""

    def __init__(self, n_series: int, n_samples: int):
        n = n_series
        self.kind = np.full(n, en.KIND_POWER, np.int8)
        self.register_max = np.full(n, 1e12)
        self.jitter = np.zeros(n)
        self.max_gap_ns = np.full(n, 60 * NS, np.int64)
        self.max_kw = np.full(n, np.inf)
        self.site_of = np.zeros(n, np.int32)
        self.b0 = np.array([T0_NS // BASE_NS], np.int64)
        self.n_buckets = (n_samples * STEP_NS) // BASE_NS + 1
        self.width = self.n_buckets + 1
        self.role = (np.arange(n) % N_ROLES).astype(np.int16)
        self.site_series = np.arange(n, dtype=np.int32)
        self.reset()

    def reset(self) -> None:
        n = len(self.kind)
        self.last_t = np.full(n, en.NO_TIME, np.int64)
        self.last_v = np.zeros(n)
        self.spike_run = np.zeros(n, np.int64)
        self.first_t = np.full(n, T0_NS, np.int64)
        self.acc_e = np.zeros((n, self.width))
        self.acc_cov = np.zeros((n, self.width))
        self.acc_sum = np.zeros((n, self.width))
        self.acc_n = np.zeros((n, self.width), np.int64)
        for a in (self.acc_e, self.acc_cov, self.acc_sum, self.acc_n):
            a.fill(0)               # touch the pages now: the core reuses its accumulators
        nb = self.n_buckets
        self.out = (np.empty((nb, N_ROLES)), np.empty(nb), np.empty(nb, np.int64),
                    np.empty((nb, N_ROLES)), np.empty((nb, N_ROLES), np.int64))

    def run(self, time_ns, series, value) -> tuple[float, float]:
        """Integrate then roll up; returns (integrate seconds, rollup seconds)."""
        m = len(time_ns)
        ev_idx = np.empty(2 * m, np.int64)
        ev_code = np.empty(2 * m, np.int8)
        ev_val = np.empty(2 * m, np.float64)
        t0 = time.perf_counter()
        n_ev = en.integrate(time_ns, series, value, self.kind, self.register_max, self.jitter,
                            self.max_gap_ns, self.max_kw, self.site_of, self.b0, BASE_NS,
                            self.last_t, self.last_v, self.spike_run, self.acc_e, self.acc_cov,
                            self.acc_sum, self.acc_n, ev_idx, ev_code, ev_val)
        t1 = time.perf_counter()
        wn.rollup(self.site_series, self.role, self.kind, self.first_t, BASE_NS,
                  int(self.b0[0]), self.n_buckets, self.acc_e, self.acc_cov, self.acc_sum,
                  self.acc_n, N_ROLES, *self.out)
        t2 = time.perf_counter()
        assert n_ev == 0, "benchmark data has no gaps"
        return t1 - t0, t2 - t1


@numba.njit(nogil=True)
def reference_loop(time_ns, series, value, base_ns, b0, out):  # pragma: no cover - numba
    """The ceiling for this data: one pass, state in registers, trapezoid into the bucket
    of each interval's start (no gaps, no bucket crossings, no events, no coverage)."""
    ps = -1
    pt = 0
    pv = 0.0
    for i in range(time_ns.shape[0]):
        s = series[i]
        t = time_ns[i]
        v = value[i]
        if s == ps:
            out[s, pt // base_ns - b0] += (pv + v) * 0.5 * ((t - pt) / 3.6e12)
        ps = s
        pt = t
        pv = v


def polars_energy(df: pl.DataFrame, sort: bool = True) -> pl.DataFrame:
    """Per-series-per-minute trapezoid energy [kWh]: sort, shift, truncate, group, sum.

    ``sort=False`` trusts the input order, as the kernel does (the core sorts separately).
    """
    same = pl.col("series").shift(-1) == pl.col("series")
    lf = df.lazy().sort("series", "time") if sort else df.lazy()
    return (
        lf
        .with_columns(
            t1=pl.when(same).then(pl.col("time").shift(-1)),
            v1=pl.when(same).then(pl.col("value").shift(-1)),
        )
        .filter(pl.col("t1").is_not_null()
                & ((pl.col("t1") - pl.col("time")).dt.total_nanoseconds() <= 60 * NS))
        .with_columns(
            e=(pl.col("value") + pl.col("v1")) * 0.5
            * ((pl.col("t1") - pl.col("time")).dt.total_nanoseconds() / 3.6e12))
        .group_by_dynamic("time", every="1m", group_by="series", closed="left", label="left")
        .agg(pl.col("e").sum())
        .collect()
    )


def best_of(fn, repeat: int):
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--strict", action="store_true", help="exit 1 when below a floor")
    args = ap.parse_args(argv)

    time_ns, series, value = make_data(args.series, args.samples)
    n = len(value)
    print(f"data: {args.series} series x {args.samples} samples at 10 s = {n / 1e6:.1f} M "
          f"readings, sorted by (series, time); polars threads: {pl.thread_pool_size()}")

    # kernel: compile (cached) on a slice, then time whole passes from a clean state
    k = KernelRun(args.series, args.samples)
    k.run(time_ns[:1000], series[:1000], value[:1000])
    best_k, best_i, best_r = np.inf, np.inf, np.inf
    for _ in range(args.repeat):
        k.reset()
        ti, tr = k.run(time_ns, series, value)
        if ti + tr < best_k:
            best_k, best_i, best_r = ti + tr, ti, tr

    ref_out = np.zeros_like(k.acc_e)
    b0 = int(k.b0[0])
    reference_loop(time_ns[:1000], series[:1000], value[:1000], BASE_NS, b0, ref_out)

    def ref_pass():
        ref_out[:] = 0.0
        t0 = time.perf_counter()
        reference_loop(time_ns, series, value, BASE_NS, b0, ref_out)
        return time.perf_counter() - t0

    best_ref = min(ref_pass() for _ in range(args.repeat))

    df = pl.DataFrame({"series": series, "time": time_ns, "value": value}).with_columns(
        pl.col("time").cast(pl.Datetime("ns", "UTC")))
    polars_energy(df.head(1000))                                    # warm-up
    best_p, res = best_of(lambda: polars_energy(df), args.repeat)
    best_pn, res_n = best_of(lambda: polars_energy(df, sort=False), args.repeat)
    assert res_n.equals(res), "polars with and without the sort disagree"

    src = value
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best_m, _ = best_of(lambda: np.copyto(dst, src), max(args.repeat, 5))

    # agreement before reporting: per-series-per-minute energies, and the per-minute totals
    col = ((res["time"].dt.epoch("ns").to_numpy() - T0_NS) // BASE_NS).astype(np.int64)
    pol = np.zeros((args.series, k.width))
    pol[res["series"].to_numpy(), col] = res["e"].to_numpy()
    if not np.allclose(ref_out, pol, rtol=1e-9, atol=1e-9):
        print("MISMATCH reference loop vs polars")
        return 2
    if not np.allclose(k.acc_e, pol, rtol=1e-9, atol=1e-9):
        bad = np.argwhere(~np.isclose(k.acc_e, pol, rtol=1e-9, atol=1e-9))[:5]
        print(f"MISMATCH kernel vs polars at (series, minute) {bad.tolist()}")
        return 2
    totals = np.zeros((k.n_buckets, N_ROLES))
    np.add.at(totals, (np.broadcast_to(np.arange(k.n_buckets), pol[:, : k.n_buckets].shape),
                       np.broadcast_to(k.role[:, None], pol[:, : k.n_buckets].shape)),
              pol[:, : k.n_buckets])
    if not np.allclose(k.out[0], totals, rtol=1e-9, atol=1e-6):
        print("MISMATCH rollup vs polars per-minute totals")
        return 2
    print(f"agreement: {args.series * k.n_buckets:,} series-minutes allclose(rtol=1e-9); "
          f"total {k.acc_e.sum():,.1f} kWh")

    rate_k = n / best_k
    rate_p = n / best_p
    rate_m = n / best_m
    print(f"{'':26s}{'seconds':>10s}{'M samples/s':>14s}")
    print(f"{'kernel integrate+rollup':26s}{best_k:10.3f}{rate_k / 1e6:14.1f}"
          f"   (integrate {best_i:.3f} s, rollup {best_r:.3f} s)")
    print(f"{'reference numba loop':26s}{best_ref:10.3f}{n / best_ref / 1e6:14.1f}")
    print(f"{'polars group_by_dynamic':26s}{best_p:10.3f}{rate_p / 1e6:14.1f}"
          "   (sort, shift, truncate, group, sum)")
    print(f"{'  polars, input not sorted':26s}{best_pn:10.3f}{n / best_pn / 1e6:14.1f}"
          "   (no sort, like the kernel)")
    print(f"{'memcpy (np.copyto f64)':26s}{best_m:10.3f}{rate_m / 1e6:14.1f}")
    ratio = rate_k / rate_p
    ratio_n = best_pn / best_k
    print(f"kernel / polars = {ratio:.1f}x (without polars' sort {ratio_n:.1f}x)   "
          f"kernel / reference loop = {rate_k * best_ref / n:.2f}   "
          f"kernel / memcpy = {rate_k / rate_m:.2f}")
    ok = rate_k >= FLOOR_SAMPLES_PER_S and min(ratio, ratio_n) >= FLOOR_VS_POLARS
    print(f"floors (>= {FLOOR_SAMPLES_PER_S / 1e6:.0f} M samples/s: "
          f"{'met' if rate_k >= FLOOR_SAMPLES_PER_S else 'NOT met'}; >= {FLOOR_VS_POLARS:.0f}x "
          f"polars, with and without its sort: "
          f"{'met' if min(ratio, ratio_n) >= FLOOR_VS_POLARS else 'NOT met'})")
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
