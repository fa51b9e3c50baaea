"""Dashboard load time: a year of hourly KPI rows for 4 sites, against a bare read in the same run.

Writes a store (``ParquetStore``: one file per site and UTC date, ~1 460 files, 35 040 hourly
+ 1 460 daily rows) and times, after one warm-up call each (numba compile, OS cache):

1. bare read: ``pl.scan_parquet`` of every kpi file with hive partitions, filtered to the
   hourly rows and collected (the floor of any reader of this layout);
2. fleet page: ``/api/fleet``'s :func:`fleet_overview` (today / 30 days / YTD per site,
   jurisdiction and fleet);
3. site page: ``/api/site``'s :func:`site_series` over the whole year (auto window ``1d``)
   and over 92 days of ``1h`` rows;
4. both over HTTP from the real server (JSON encoding included).

Target (issue 15): a year of hourly rows for 4 sites loads in under a second. Run:
``.venv/bin/python benchmarks/bench_dashboard.py``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pueflow.config.load import parse_config  # noqa: E402
from pueflow.connectors.parquet_store import ParquetStore  # noqa: E402
from pueflow.modes.dashboard.data import fleet_overview, site_series  # noqa: E402
from pueflow.modes.dashboard.server import make_server  # noqa: E402
from pueflow.modes.dashboard.store import latest_date, scan  # noqa: E402

SITES = (("tetouan-1", "MA", "Africa/Casablanca"), ("aragon-1", "ES", "Europe/Madrid"),
         ("abilene-1", "US", "America/Chicago"), ("dakar-1", "SN", "Africa/Dakar"))
YEAR = 2026


def config(store: Path):
    meters = [{"device": "inc", "point": "kw", "kind": "power", "role": r} for r in ("facility",)] + [
        {"device": "pdu", "point": "kw", "kind": "power", "role": "it"}]
    return parse_config({
        "pipeline": {"windows": ["15m", "1h", "1d"]},
        "sites": [{"id": s, "jurisdiction": j, "timezone": tz, "latitude": 30.0, "longitude": 0.0,
                   "it_capacity_kw": 7500.0, "meters": meters} for s, j, tz in SITES],
        "sinks": [{"name": "local", "type": "parquet", "jurisdiction": "GLOBAL", "path": str(store)}]})


def hourly_rows(site: str, rng: np.random.Generator) -> pl.DataFrame:
    t = np.arange(np.datetime64(f"{YEAR}-01-01T00:00"), np.datetime64(f"{YEAR + 1}-01-01T00:00"),
                  np.timedelta64(1, "h")).astype("datetime64[ns]")
    n = len(t)
    h = np.arange(n) % 24
    it = 6000 + 800 * np.sin(2 * np.pi * h / 24) + 50 * rng.standard_normal(n)
    fac = it * (1.08 + 0.04 * np.clip(np.sin(np.pi * (h - 6) / 12), 0, None))
    pv = 3000 * np.clip(np.sin(np.pi * (h - 6) / 12), 0, None)
    ppa = 4000 * rng.random(n)
    ren = pv + ppa
    cols = {"time": t, "site": [site] * n, "window": ["1h"] * n, "category": ["2"] * n, "run": [""] * n,
            "facility_kwh": fac, "it_kwh": it, "pv_kwh": pv, "wind_kwh": np.zeros(n), "ppa_kwh": ppa,
            "cooling_chiller_kwh": 0.05 * it, "cooling_cdu_pump_kwh": 0.01 * it, "pue": fac / it,
            "ppue_chiller": 1.05 * np.ones(n), "ppue_cdu_pump": 1.01 * np.ones(n),
            "ref": np.minimum(ren / fac, 1), "cue_kg_per_kwh": 0.5 * np.maximum(fac - pv, 0) / it,
            "cfe_matched_kwh": np.minimum(ren, fac), "cfe_hourly": np.minimum(ren, fac) / fac,
            "coverage": np.ones(n), "ambient_temp_c": 20 + 8 * np.sin(2 * np.pi * h / 24),
            "supply_temp_c": 32 + 0.1 * rng.standard_normal(n)}
    df = pl.DataFrame(cols).with_columns(pl.col("time").dt.replace_time_zone("UTC"))
    day = (df.group_by(pl.col("time").dt.truncate("1d")).agg(
        pl.col("facility_kwh", "it_kwh", "pv_kwh", "ppa_kwh").sum(), pl.col("coverage").mean())
        .with_columns(pl.lit(site).alias("site"), pl.lit("1d").alias("window"), pl.lit("2").alias("category"),
                      pl.lit("").alias("run"), (pl.col("facility_kwh") / pl.col("it_kwh")).alias("pue")))
    return pl.concat([df, day], how="diagonal_relaxed")


def best_of(fn, n: int = 5) -> float:
    fn()  # warm-up: numba compile, OS file cache
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pueflow-bench-dash-") as tmp:
        store = Path(tmp) / "store"
        cfg = config(store)
        st = ParquetStore(store)
        rng = np.random.default_rng(1)
        t0 = time.perf_counter()
        for s, _, _ in SITES:
            st.write("kpi", hourly_rows(s, rng))
        st.flush()
        files = len(list(store.rglob("*.parquet")))
        print(f"store: {files} partition files written in {time.perf_counter() - t0:.1f} s")

        def bare():
            return pl.scan_parquet(f"{store}/measurement=kpi/**/*.parquet", hive_partitioning=True).filter(
                pl.col("window") == "1h").collect()

        rows = bare().height
        t_bare = best_of(bare)

        def fleet():
            return fleet_overview(cfg, scan([store], "kpi"), "", latest=latest_date([store]))

        def site_year():
            return site_series(cfg, "aragon-1", scan([store], "kpi"), None, None, "", date(YEAR, 1, 1),
                               date(YEAR + 1, 1, 1))

        def site_quarter():
            return site_series(cfg, "aragon-1", scan([store], "kpi"), None, None, "", date(YEAR, 7, 1),
                               date(YEAR, 10, 1), "1h")

        t_fleet, t_year, t_q = best_of(fleet), best_of(site_year), best_of(site_quarter)
        srv = make_server(cfg, [str(store)], port=0)
        th = threading.Thread(target=srv.serve_forever, daemon=True)
        th.start()
        base = f"http://127.0.0.1:{srv.server_port}"

        def get(path):
            with urllib.request.urlopen(base + path, timeout=60) as r:  # noqa: S310 - 127.0.0.1
                return r.read()

        try:
            t_http_fleet = best_of(lambda: get("/api/fleet"))
            t_http_site = best_of(lambda: get(f"/api/site/aragon-1?from={YEAR}-01-01&to={YEAR + 1}-01-01&window=1h"))
        finally:
            srv.shutdown()
            srv.server_close()
        print(f"{rows:,} hourly rows of 4 sites for {YEAR} (as of {datetime.now(UTC):%Y-%m-%d})")
        print(f"  bare scan+collect of the hourly rows : {t_bare * 1e3:7.1f} ms  (reference)")
        print(f"  fleet page data (3 periods x 4 sites): {t_fleet * 1e3:7.1f} ms  = {t_fleet / t_bare:.1f} x bare")
        print(f"  site page, a year (1d windows)       : {t_year * 1e3:7.1f} ms  = {t_year / t_bare:.1f} x bare")
        print(f"  site page, 92 days of 1h windows     : {t_q * 1e3:7.1f} ms  = {t_q / t_bare:.1f} x bare")
        print(f"  HTTP /api/fleet                      : {t_http_fleet * 1e3:7.1f} ms")
        print(f"  HTTP /api/site, a year of 1h rows    : {t_http_site * 1e3:7.1f} ms")
        worst = max(t_fleet, t_year, t_http_fleet, t_http_site)
        print(f"target: a year of hourly rows for 4 sites in < 1 s -> worst {worst:.2f} s "
              f"{'OK' if worst < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
