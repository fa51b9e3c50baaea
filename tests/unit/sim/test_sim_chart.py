"""The run chart: a PNG of PUE, cooling overhead, renewable share and ambient temperature."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pueflow.config.load import load_config
from pueflow.sim import simulate, write_chart

ROOT = Path(__file__).resolve().parents[3]


def test_write_chart_from_kpi_rows_with_and_without_truth(tmp_path):
    cfg = load_config(ROOT / "config" / "tetouan-7.5mw.toml")
    cfg.sites[0].plant.climate.hot_spell_probability = 1.0  # a shaded heat spell
    res = simulate(cfg, datetime(2026, 7, 20, tzinfo=UTC), 2, seed=1, step_s=60, faults=False)
    hourly = res.truth.filter(pl.col("window") == "1h")
    kpi = hourly.drop("ppue_cooling")  # the chart derives it from cooling_kwh / it_kwh
    for truth, name in ((res.truth, "with.png"), (None, "alone.png")):
        out = write_chart(kpi, truth, tmp_path / name)
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 20_000
