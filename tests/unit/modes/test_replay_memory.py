"""A series-major file bigger than the memory setting replays within it (peak RSS).

Any replay that does not spill must hold every reading at once: at least
``BYTES_PER_READING`` (int64 time + int32 series + float64 value) per reading. The bound
is three quarters of that above a baseline run (same child, tiny file): the spilling run
must stay below it and an in-memory run of the same file must exceed it (so the bound is
not vacuous). The spilling run's extra is a fixed ~75-85 MiB (reader and allocator), not
proportional to the file: 3 M readings +85 MiB, 8 M readings +73 MiB measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil

from pueflow.modes.spill import BYTES_PER_READING
from tests.conftest import T0

NS = 10**9
N_SERIES = 40
PER_SERIES = 200_000  # one reading every 10 s: ~23 days per series
ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import sys
from pueflow.config.load import parse_config
from pueflow.modes.replay import replay
meters = [{"device": "pdu-*", "point": "kw", "kind": "power", "role": "it", "max_gap": "60s"}]
cfg = parse_config({"pipeline": {"windows": ["1h", "1d"], "grace": "0s"},
    "sites": [{"id": s, "jurisdiction": "MA", "timezone": "Africa/Casablanca", "latitude": 35.0,
               "longitude": -5.0, "it_capacity_kw": 9000.0, "meters": meters}
              for s in ("s1", "s2")]})
res = replay(cfg, [sys.argv[1]], progress=False, write=False, memory_mb=float(sys.argv[2]))
print(res.readings, int(res.spilled), res.kpi.height, flush=True)
"""


def _series_major(path: Path, n_series: int, per_series: int) -> int:
    t = T0 + 10 * NS * np.arange(per_series, dtype=np.int64)
    parts = [pl.DataFrame({"time": t, "value": np.full(per_series, 100.0 + k)}).with_columns(
        site=pl.lit(f"s{1 + k % 2}"), device=pl.lit(f"pdu-{k}"), point=pl.lit("kw"))
        for k in range(n_series)]
    df = pl.concat(parts).with_columns(
        pl.col("time").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))
    df.write_parquet(path, row_group_size=100_000)
    return df.height


def _peak_rss(path: Path, memory_mb: float) -> tuple[int, list[str]]:
    """Peak resident memory [bytes] of a child replaying ``path``, polled with psutil."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(memory_mb)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.005)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return peak, out.split()


def test_series_major_file_replays_within_a_small_memory_setting(tmp_path):
    tiny, big = tmp_path / "tiny.parquet", tmp_path / "big.parquet"
    _series_major(tiny, 2, 2_000)
    n = _series_major(big, N_SERIES, PER_SERIES)
    base, _ = _peak_rss(tiny, 1024.0)
    bound = base + n * BYTES_PER_READING * 3 // 4
    spilled, out = _peak_rss(big, 4.0)
    assert out[:2] == [str(n), "1"]  # every reading, and it did spill
    in_memory, out_mem = _peak_rss(big, 1024.0)
    assert out_mem == [out[0], "0", out[2]]  # same readings and kpi rows, no spill
    mib = 2**20
    print(f"baseline {base / mib:.0f} MiB, spilled {spilled / mib:.0f} MiB, in memory "
          f"{in_memory / mib:.0f} MiB, bound {bound / mib:.0f} MiB")
    assert in_memory > bound, (
        f"bound {bound / mib:.0f} MiB is too loose: the in-memory run peaked at "
        f"{in_memory / mib:.0f} MiB")
    assert spilled < bound, (f"spilling run peaked at {spilled / mib:.0f} MiB, bound "
                             f"{bound / mib:.0f} MiB (baseline {base / mib:.0f} MiB)")
