"""Synthetic telemetry, test configs, the replay reference and store read-back."""

from __future__ import annotations

import math
import time
import tomllib
from pathlib import Path

import numpy as np
import polars as pl

from pueflow.config.load import parse_config
from pueflow.config.models import Config
from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch

ROOT = Path(__file__).resolve().parents[2]
TETOUAN = ROOT / "config" / "tetouan-7.5mw.toml"
NS = 10**9


def site_ids(n: int) -> list[str]:
    return [f"tetouan-{i + 1}" for i in range(n)]


def make_config(path: Path, *, bootstrap: str, names, vm_url: str | None, n_sites: int = 2,
                idle_timeout: str = "3s", checkpoint_interval: str = "2s",
                checkpoint_records: int = 500_000, fmt: str = "json",
                windows: tuple[str, ...] = ("1m", "15m", "1h", "1d")) -> Config:
    """The Tetouan site copied ``n_sites`` times, Kafka on the test broker, one influx sink."""
    base = tomllib.loads(TETOUAN.read_text())
    site0 = base["sites"][0]
    sites = []
    for sid in site_ids(n_sites):
        s = dict(site0)
        s["id"] = sid
        sites.append(s)
    doc = {
        "pipeline": {"windows": list(windows), "grace": "30s", "idle_timeout": idle_timeout,
                     "checkpoint_interval": checkpoint_interval,
                     "checkpoint_records": checkpoint_records},
        "sites": sites,
        "kafka": {"bootstrap_servers": [bootstrap], "topics": [names.topic],
                  "group_id": names.group, "format": fmt, "timestamp_unit": "ms",
                  "dlq_topic": names.dlq, "state_topic": names.state, "max_poll_records": 2000},
        "sinks": ([{"name": "store", "type": "influx", "url": vm_url, "org": "ops",
                    "bucket": "pueflow", "jurisdiction": "MA", "batch_rows": 5000,
                    "timeout_s": 5.0, "max_retries": 3}] if vm_url else []),
    }
    path.write_text(_toml(doc))
    return parse_config(doc, str(path))


def _toml(doc: dict) -> str:
    """Just enough TOML for the test configs (tables, arrays of tables, scalars, lists)."""
    out: list[str] = []

    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return repr(v)

    def table(prefix: str, d: dict, array: bool = False):
        out.append(f"[[{prefix}]]" if array else f"[{prefix}]")
        subs = []
        for k, v in d.items():
            if isinstance(v, dict):
                subs.append((k, v, False))
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                subs.append((k, v, True))
            else:
                out.append(f"{k} = {scalar(v)}")
        for k, v, arr in subs:
            if arr:
                for item in v:
                    table(f"{prefix}.{k}", item, True)
            else:
                table(f"{prefix}.{k}", v)

    for k, v in doc.items():
        if isinstance(v, list):
            for item in v:
                table(k, item, True)
        else:
            table(k, v)
    return "\n".join(out) + "\n"


def telemetry(sites: list[str], start_ns: int, minutes: float, *, step_s: int = 10,
              n_pdu: int = 6, n_cdu: int = 3, seed: int = 1) -> pl.DataFrame:
    """Long-form telemetry (time, site, device, point, value) of Tetouan-like sites at
    ``step_s``: an incomer energy register, PDU power, CDU pump power and supply
    temperature, a dry cooler, UPS losses and auxiliaries."""
    rng = np.random.default_rng(seed)
    n_t = int(minutes * 60 // step_s)
    t = start_ns + np.arange(n_t, dtype=np.int64) * step_s * NS
    cols = {"time": [], "site": [], "device": [], "point": [], "value": []}

    def add(site, dev, point, values):
        cols["time"].append(t)
        cols["site"].append(np.full(n_t, site, object))
        cols["device"].append(np.full(n_t, dev, object))
        cols["point"].append(np.full(n_t, point, object))
        cols["value"].append(np.round(values, 4))

    for site in sites:
        facility = np.zeros(n_t)
        phase = rng.uniform(0, 2 * math.pi)
        for i in range(n_pdu):
            p = 600 + 80 * np.sin(np.arange(n_t) / 40 + phase + i) + rng.normal(0, 5, n_t)
            add(site, f"pdu-{i + 1:02d}", "power_kw", p)
            facility += p
        for i in range(n_cdu):
            p = 25 + rng.normal(0, 1, n_t)
            add(site, f"cdu-{i + 1:02d}", "pump_power_kw", p)
            add(site, f"cdu-{i + 1:02d}", "supply_temp_c", 32 + rng.normal(0, 0.3, n_t))
            facility += p
        for dev, point, mean in (("drycooler-1", "fan_power_kw", 180), ("ups-1", "loss_kw", 90),
                                 ("aux-1", "power_kw", 40)):
            p = mean + rng.normal(0, mean * 0.02, n_t)
            add(site, dev, point, p)
            facility += p
        energy = 1_000_000 + np.cumsum(facility * step_s / 3600.0)
        add(site, "incomer-1", "energy_kwh", energy)
    df = pl.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    return (df.with_columns(pl.col("time").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))
            .sort("time", "site", "device", "point", maintain_order=True))


def recent_start(hours_ago: float = 6.0) -> int:
    """An hour boundary ``hours_ago`` before now [ns] (inside every store's retention)."""
    now = time.time_ns()
    h = 3600 * NS
    return (now - int(hours_ago * h)) // h * h


def replay_kpi(cfg: Config, df: pl.DataFrame) -> pl.DataFrame:
    """The reference: the whole frame through one Pipeline, then finalize()."""
    p = Pipeline(cfg)
    keys = list(zip(df["site"].to_list(), df["device"].to_list(), df["point"].to_list(),
                    strict=True))
    uniq = {}
    series = np.fromiter((uniq.setdefault(k, p.registry.id(*k)) for k in keys), np.int32,
                         count=len(keys))
    b = Batch(df["time"].dt.epoch("ns").to_numpy(), series, df["value"].to_numpy())
    outs = [p.process(b), p.finalize()]
    kpis = [o.kpi for o in outs if o.kpi is not None]
    return pl.concat(kpis, how="diagonal_relaxed")


KPI_TAGS = ("site", "window", "category", "run")


def kpi_points(kpi: pl.DataFrame) -> dict[tuple, float]:
    """(site, window, field, time_ms) -> value for every non-null finite field."""
    out = {}
    fields = [c for c in kpi.columns if c not in (*KPI_TAGS, "time")]
    t_ms = (kpi["time"].dt.epoch("ns") // 10**6).to_list()
    for row, tm in zip(kpi.iter_rows(named=True), t_ms, strict=True):
        for f in fields:
            v = row[f]
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                continue
            out[(row["site"], row["window"], f, tm)] = float(v)
    return out


def store_points(series: list[dict], measurement: str = "kpi") -> tuple[dict, list]:
    """(site, window, field, time_ms) -> value from a VictoriaMetrics export, plus every
    duplicate (same key twice) as (key, values)."""
    out: dict[tuple, float] = {}
    dups: dict[tuple, list[float]] = {}
    pre = measurement + "_"
    for s in series:
        m = s["metric"]
        field = m["__name__"].removeprefix(pre)
        for tm, v in zip(s["timestamps"], s["values"], strict=True):
            key = (m.get("site"), m.get("window"), field, tm)
            if key in out:
                dups.setdefault(key, [out[key]]).append(v)
            out[key] = float(v)
    return out, list(dups.items())


def windows_of(points: dict[tuple, float]) -> set[tuple]:
    return {(k[0], k[1], k[3]) for k in points}


def compare(store: dict, want: dict, rel: float = 1e-12) -> list[str]:
    """Problems (as text) between stored and replayed points over the windows the store has.

    VictoriaMetrics keeps ~15 significant digits, hence ``rel``.
    """
    problems = []
    have = windows_of(store)
    for key, v in want.items():
        if (key[0], key[1], key[3]) not in have:
            continue
        got = store.get(key)
        if got is None:
            problems.append(f"missing {key} (want {v})")
        elif not math.isclose(got, v, rel_tol=rel, abs_tol=1e-9):
            problems.append(f"{key}: store {got!r} != replay {v!r}")
    extra = have - windows_of(want)
    problems += [f"window in store but not in replay: {w}" for w in sorted(extra)]
    return problems


def wait_for(pred, timeout_s: float, interval_s: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval_s)
    msg = f"timed out after {timeout_s} s waiting for {what} (last: {last!r})"
    raise TimeoutError(msg)
