"""``pueflow dashboard`` in a real headless browser (Debian's chromium).

The server runs as a subprocess on 127.0.0.1 over a store the real core wrote; chromium loads
the pages with a virtual-time budget and dumps the DOM. The pages record script and console
errors and every URL they fetched into ``#diag`` (``diag.js``), so the test checks them without
DevTools. The fleet table's PUE per site is compared with sums of the store's hourly rows read
here with ``read_store`` (not the server's query).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.connectors.parquet_store import ParquetStore, read_store
from tests.conftest import frames, run
from tests.integration.conftest import ROOT, _stop, free_port, http_get, wait_port

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
T0 = datetime(2026, 7, 1, tzinfo=UTC)
MIN = 60 * 10**9
METERS = [{"device": "inc", "point": "kw", "kind": "power", "role": "facility"},
          {"device": "pdu", "point": "kw", "kind": "power", "role": "it"},
          {"device": "chiller", "point": "kw", "kind": "power", "role": "cooling.chiller"},
          {"device": "pv", "point": "kw", "kind": "power", "role": "pv"},
          {"device": "ppa-farm", "point": "kw", "kind": "power", "role": "ppa"},
          {"device": "weather", "point": "t", "kind": "sensor", "role": "ambient_temp_c"},
          {"device": "cdu", "point": "supply", "kind": "sensor", "role": "supply_temp_c"}]
SITES = (("tetouan-1", "MA", "Africa/Casablanca", 1.25), ("aragon-1", "ES", "Europe/Madrid", 1.4))


def config_dict(store: Path) -> dict:
    return {"pipeline": {"windows": ["15m", "1h", "1d"], "grace": "0s"},
            "sites": [{"id": sid, "jurisdiction": j, "timezone": tz, "latitude": 35.0, "longitude": -5.0,
                       "it_capacity_kw": 2000.0, "grid_co2_kg_per_kwh": 0.5, "meters": METERS}
                      for sid, j, tz, _ in SITES],
            "sinks": [{"name": "local", "type": "parquet", "jurisdiction": "GLOBAL", "path": str(store)}]}


def readings(sid: str, ratio: float, days: float):
    rows = []
    n = int(days * 24 * 60)
    rng = np.random.default_rng(abs(hash(sid)) % 2**32)
    t0 = int(T0.timestamp()) * 10**9
    for m in range(n + 1):
        if sid == "aragon-1" and 600 < m < 700:  # a 100-minute outage of every meter
            continue
        t = t0 + m * MIN
        h = (m / 60) % 24
        it = 1000 + 300 * np.sin(2 * np.pi * h / 24) + 20 * rng.standard_normal()
        sun = max(0.0, np.sin(np.pi * (h - 6) / 12))
        fac = it * (ratio + 0.05 * sun) + 150.0  # a fixed share: PUE is higher at low load
        rows += [(t, (sid, "inc", "kw"), fac), (t, (sid, "pdu", "kw"), it),
                 (t, (sid, "chiller", "kw"), 0.6 * (fac - it)), (t, (sid, "pv", "kw"), 500 * sun),
                 (t, (sid, "ppa-farm", "kw"), 900.0 * (h >= 20 or h < 4)),
                 (t, (sid, "weather", "t"), 18 + 10 * sun), (t, (sid, "cdu", "supply"), 32 + 0.5 * sun)]
        if sid == "tetouan-1" and m == 900:
            rows.append((t + 1, (sid, "pdu", "kw"), 1e9))  # a spike
    return rows


@pytest.fixture(scope="module")
def site_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    store = root / "store"
    cfg = parse_config(config_dict(store))
    rows = sorted((r for sid, _, _, ratio in SITES for r in readings(sid, ratio, 2.5)), key=lambda r: r[0])
    _, outs = run(cfg, [rows])
    st = ParquetStore(store)
    for m in ("kpi", "quality"):
        st.write(m, frames(outs, m).with_columns(pl.lit("").alias("run")))
    # published setpoints of one site, as the dispatcher writes them
    times = [T0 + timedelta(minutes=15 * k) for k in range(4 * 48)]
    st.write("setpoint", pl.DataFrame({
        "time": times, "site": ["tetouan-1"] * len(times), "asset": ["cooling.loop1"] * len(times),
        "run": [""] * len(times), "cooling_supply_c": [32.0 + (k % 8) * 0.25 for k in range(len(times))],
    }).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC"))))
    st.flush()
    toml = root / "dash.toml"
    toml.write_text(_toml(config_dict(store)))
    return cfg, store, toml


def _toml(d: dict) -> str:
    def val(v):
        return json.dumps(v)

    out = ["[pipeline]", f"windows = {val(d['pipeline']['windows'])}", f"grace = {val(d['pipeline']['grace'])}"]
    for s in d["sites"]:
        out += ["", "[[sites]]"] + [f"{k} = {val(v)}" for k, v in s.items() if k != "meters"]
        for m in s["meters"]:
            out += ["[[sites.meters]]"] + [f"{k} = {val(v)}" for k, v in m.items()]
    for k in d["sinks"]:
        out += ["", "[[sinks]]"] + [f"{a} = {val(b)}" for a, b in k.items()]
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def server(site_store, tmp_path_factory):
    _, _, toml = site_store
    port = free_port()
    log = tmp_path_factory.mktemp("dashlog") / "dash.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pueflow.cli", "dashboard", "--config", str(toml),
                                 "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_port(port, 30.0, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def browse(url: str, tmp: Path) -> tuple[str, str]:
    """DOM after the page's scripts ran (virtual time), and chromium's log."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (make sysdeps installs it)"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--window-size=1400,1800",
           "--dump-dom", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout, p.stderr


class Cells(HTMLParser):
    """``td`` texts keyed by (data-site, data-kpi, data-period); ``#diag`` and body attributes."""

    def __init__(self):
        super().__init__()
        self.cells: dict[tuple[str, str, str], str] = {}
        self.diag: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self._key = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-site" in a:
            self._key = (a["data-site"], a["data-kpi"], a["data-period"])
            self.cells[self._key] = ""
        if a.get("id") == "diag":
            self.diag = a
        if tag == "body":
            self.body = a

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None

    def handle_data(self, data):
        if self._key is not None:
            self.cells[self._key] += data


def parse(dom: str) -> Cells:
    c = Cells()
    c.feed(dom)
    return c


def utc(t: datetime) -> pl.Expr:
    return pl.lit(t.astimezone(UTC)).cast(pl.Datetime("ns", "UTC"))


def local_only(c: Cells, base: str) -> None:
    assert c.body.get("data-ready") == "1", c.body
    assert json.loads(c.diag["data-errors"]) == []
    urls = json.loads(c.diag["data-resources"])
    assert any(u.endswith("/static/plotly.min.js") for u in urls)
    assert all(u.startswith(base + "/") for u in urls), urls


def test_fleet_page_pue_is_the_stores_energy_weighted_value(server, site_store, tmp_path):
    cfg, store, _ = site_store
    dom, _ = browse(server + "/", tmp_path / "chr")
    c = parse(dom)
    local_only(c, server)
    hours = read_store(store, "kpi", window="1h")
    as_of = hours["time"].max() + timedelta(hours=1)
    checked = 0
    for sid, _, tz, _ in SITES:
        h = hours.filter(pl.col("site") == sid)
        local_end = as_of.astimezone(ZoneInfo(tz)) - timedelta(microseconds=1)
        midnight = datetime(local_end.year, local_end.month, local_end.day, tzinfo=ZoneInfo(tz))
        starts = {"ytd": datetime(local_end.year, 1, 1, tzinfo=ZoneInfo(tz)), "30d": as_of - timedelta(days=30),
                  "today": midnight}
        for period, start in starts.items():
            sel = h.filter(pl.col("time") >= utc(start))
            pue = sel["facility_kwh"].sum() / sel["it_kwh"].sum()
            assert c.cells[(sid, "pue", period)] == f"{pue:.3f}", (sid, period)
            checked += 1
        # and it is not the mean of the hourly PUEs (the check can tell them apart)
        ytd = h.filter(pl.col("time") >= utc(starts["ytd"]))
        assert f"{ytd['pue'].mean():.3f}" != c.cells[(sid, "pue", "ytd")]
    assert checked == 6


def test_site_page_draws_its_charts_without_errors_or_outside_requests(server, tmp_path):
    dom, log = browse(server + "/site/tetouan-1?x=1", tmp_path / "chr")
    c = parse(dom)
    local_only(c, server)
    # PUE, renewables, coverage, temperatures, events, one setpoint chart
    assert int(c.body["data-charts"]) >= 6
    assert dom.count('class="main-svg"') >= 6
    assert "coolant supply temperature [°C]" in dom
    assert "local time (Africa/Casablanca)" in dom
    assert not re.search(r"Uncaught|CONSOLE\(\d+\)\].*(Error|error)", log), log[-3000:]


def test_pages_see_new_rows(server, site_store):
    _, store, _ = site_store
    status, body = http_get(server + "/api/version")
    assert status == 200
    v1 = json.loads(body)["version"]
    st = ParquetStore(store)
    extra = read_store(store, "kpi", site="aragon-1", window="1h").tail(1).with_columns(
        pl.col("time") + timedelta(hours=1))
    st.write("kpi", extra)
    st.flush()
    v2 = json.loads(http_get(server + "/api/version")[1])["version"]
    assert v2 != v1
    status, body = http_get(server + "/api/site/nowhere")
    assert status == 404
    assert b"nowhere" in body


def test_the_error_hook_reports_a_failed_page(server, tmp_path):
    # the checks above can fail: a range the server refuses shows up as a recorded error
    dom, _ = browse(server + "/site/tetouan-1?from=2026-07-05&to=2026-07-01", tmp_path / "chr")
    c = parse(dom)
    assert c.body.get("data-ready") == "error"
    errors = json.loads(c.diag["data-errors"])
    assert any("is not after" in e for e in errors), errors
