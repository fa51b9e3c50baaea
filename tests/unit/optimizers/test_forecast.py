"""Forecasts: clear-sky kernel, hour profiles, default forecaster behaviour, external frames."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pueflow.exceptions import OptimizerError
from pueflow.optimizers import forecast as fc
from pueflow.optimizers import solar
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.testing import tiny_site

NS = 10**9
T0 = int(dt.datetime(2025, 6, 21, tzinfo=dt.UTC).timestamp()) * NS


# --------------------------------------------------------------------------- references


def naive_cos_zenith(time_ns, lat, lon):
    """Plain-numpy NOAA low-precision solar position (reference of ``solar._cos_zenith``)."""
    t = np.asarray(time_ns, np.int64)
    days = t // 86_400_000_000_000
    hour = (t - days * 86_400_000_000_000) / 3.6e12
    doy = np.array([(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).timetuple().tm_yday for d in days])
    gam = 2 * np.pi / 365 * (doy - 1 + (hour - 12) / 24)
    eqt = 229.18 * (0.000075 + 0.001868 * np.cos(gam) - 0.032077 * np.sin(gam)
                    - 0.014615 * np.cos(2 * gam) - 0.040849 * np.sin(2 * gam))
    decl = (0.006918 - 0.399912 * np.cos(gam) + 0.070257 * np.sin(gam) - 0.006758 * np.cos(2 * gam)
            + 0.000907 * np.sin(2 * gam) - 0.002697 * np.cos(3 * gam) + 0.00148 * np.sin(3 * gam))
    ha = np.radians((hour * 60 + eqt + 4 * lon) / 4 - 180)
    la = np.radians(lat)
    return np.sin(la) * np.sin(decl) + np.cos(la) * np.cos(decl) * np.cos(ha)


def naive_ghi(time_ns, lat, lon):
    cz = naive_cos_zenith(time_ns, lat, lon)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return np.where(cz > 0, 1098 * cz * np.exp(-0.057 / np.where(cz > 0, cz, 1.0)), 0.0)


def naive_hour_profile(hour, values):
    out = np.full(24, np.nan)
    ok = np.isfinite(values) & np.isfinite(hour)
    b = hour[ok].astype(int) % 24
    for k in range(24):
        if (b == k).any():
            out[k] = values[ok][b == k].mean()
    return out


# --------------------------------------------------------------------------- solar kernel


@settings(max_examples=100, deadline=None)
@given(days=st.integers(-40_000, 40_000))
def test_day_of_year_matches_calendar(days):
    assert solar._day_of_year(days) == (dt.date(1970, 1, 1) + dt.timedelta(days=days)).timetuple().tm_yday


@settings(max_examples=100, deadline=None)
@given(t=st.lists(st.integers(0, 4_102_444_800 * NS), min_size=1, max_size=20),
       lat=st.floats(-66, 66), lon=st.floats(-180, 180))
def test_clearsky_kernel_equals_reference(t, lat, lon):
    t = np.array(t, np.int64)
    np.testing.assert_allclose(solar.clearsky_ghi(t, lat, lon), naive_ghi(t, lat, lon), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(solar.cos_zenith(t, lat, lon), naive_cos_zenith(t, lat, lon), atol=1e-12)


@pytest.mark.filterwarnings("ignore:.*dayofyear")
def test_clearsky_against_pvlib():
    """The fast path's solar position is within a few W/m² of pvlib's for the same model."""
    import pandas as pd  # pvlib's dependency; both come with the sim extra make test installs
    import pvlib
    t = T0 + np.arange(0, 3 * 86400, 600) * NS
    for lat, lon in ((23.72, -15.93), (35.57, -5.37)):
        idx = pd.DatetimeIndex(t.astype("datetime64[ns]")).tz_localize("UTC")
        zen = pvlib.solarposition.get_solarposition(idx, lat, lon)["apparent_zenith"]
        ref = pvlib.clearsky.haurwitz(zen).to_numpy().ravel()
        assert np.abs(solar.clearsky_ghi(t, lat, lon) - ref).max() < 8.0
        ineichen = solar.clearsky_ghi(t, lat, lon, model="pvlib")
        assert np.abs(ineichen.max() - ref.max()) < 150.0  # same sun, different atmosphere
    assert solar.clearsky_ghi(np.zeros(0, np.int64), 0, 0).shape == (0,)
    with pytest.raises(ValueError, match="fast"):
        solar.clearsky_ghi(t, 0, 0, model="nope")


# --------------------------------------------------------------------------- hour profiles


@settings(max_examples=100, deadline=None)
@given(data=st.lists(st.tuples(st.floats(0, 23.99), st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))),
                     max_size=60))
def test_hour_profile_equals_reference(data):
    hour = np.array([d[0] for d in data], float)
    vals = np.array([d[1] for d in data], float)
    np.testing.assert_allclose(fc.hour_profile(hour, vals), naive_hour_profile(hour, vals), rtol=1e-12)


def test_fill_profile_wraps_midnight():
    p = np.full(24, np.nan)
    p[22], p[2] = 10.0, 30.0
    f = fc._fill_profile(p)
    assert f[0] == pytest.approx(20.0)
    assert f[23] == pytest.approx(15.0)


# --------------------------------------------------------------------------- default forecaster


@pytest.fixture
def model():
    return site_model(tiny_site(step="15m", horizon="24h", redispatch="15m",
                                forecast={"pv_kwp": 1000.0, "wind_kw": 800.0, "firm_it_kw": 500.0}))


def _recent(model, days, pv_scale=1.0, wind_kw=200.0, it_kw=None, amb=None):
    n = int(days * 96)
    t = T0 - n * 900 * NS + 900 * NS * np.arange(n)
    ghi = solar.clearsky_ghi(t + 450 * NS, model.latitude, model.longitude)
    it = it_kw if it_kw is not None else 500 + 100 * np.sin(2 * np.pi * np.arange(n) / 96)
    return fc.Recent(t, pv_scale * ghi, np.full(n, wind_kw), np.broadcast_to(it, (n,)).astype(float),
                     np.full(n, 25.0) if amb is None else amb, 900 * NS)


def test_priors_without_history(model):
    times = T0 + 900 * NS * np.arange(96)
    f = fc.DefaultForecaster(model).forecast(times, fc.Recent.empty())
    assert f.pv_kw.max() == pytest.approx(0.8 * model.pv_kwp * solar.clearsky_ghi(times, 35, -5).max() / 1000, rel=0.02)
    np.testing.assert_allclose(f.wind_kw, 0.35 * 800)
    np.testing.assert_allclose(f.it_kw, 500)
    assert 14.0 < f.ambient_c.min() < f.ambient_c.max() < 26.0


def test_pv_follows_recent_clear_sky_index(model):
    """Output at half the clear-sky level persists at short lead and decays to the prior."""
    times = T0 + 900 * NS * np.arange(96)
    f = fc.DefaultForecaster(model).forecast(times, _recent(model, 2, pv_scale=0.4))
    ghi = solar.clearsky_ghi(times + 450 * NS, 35, -5)
    k = f.pv_kw / np.where(ghi > 50, ghi, np.nan)
    day = np.flatnonzero(ghi > 200)
    assert k[day[0]] < k[day[-1]] <= 0.8 + 1e-9  # later daylight closer to the prior 0.8


def test_wind_persistence_blends_to_climatology(model):
    rec = _recent(model, 2, wind_kw=200.0)
    rec.wind_kw[-4:] = 700.0  # a gust in the last hour
    times = T0 + 900 * NS * np.arange(96)
    f = fc.DefaultForecaster(model).forecast(times, rec)
    assert f.wind_kw[0] > 600
    assert abs(f.wind_kw[-1] - np.mean(rec.wind_kw)) < 20


def test_firm_load_follows_its_daily_profile(model):
    rec = _recent(model, 3)
    times = T0 + 900 * NS * np.arange(96)
    f = fc.DefaultForecaster(model).forecast(times, rec)
    ref = 500 + 100 * np.sin(2 * np.pi * np.arange(96) / 96)
    assert np.abs(f.it_kw - ref).max() < 30


def test_nan_history_falls_back(model):
    rec = _recent(model, 2)
    for arr in (rec.pv_kw, rec.wind_kw, rec.it_kw, rec.ambient_c):
        arr[:] = np.nan
    f = fc.DefaultForecaster(model).forecast(T0 + 900 * NS * np.arange(8), rec)
    assert all(np.isfinite(getattr(f, k)).all() for k in fc.FIELDS)


# --------------------------------------------------------------------------- external forecasts


def _frame(times, **cols):
    return pl.DataFrame({"time": times, **cols}).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))


def test_frame_forecaster_with_fallback_and_updates(model):
    times = T0 + 900 * NS * np.arange(8)
    ext = fc.FrameForecaster(_frame(times[:4], pv_kw=[1.0, 2, 3, 4], price_per_kwh=[0.5] * 4),
                             fallback=fc.DefaultForecaster(model))
    f = ext.forecast(times, fc.Recent.empty())
    np.testing.assert_allclose(f.pv_kw[:4], [1, 2, 3, 4])
    assert f.price_per_kwh is None  # not for every step: the tariff applies
    np.testing.assert_allclose(f.it_kw, 500)
    ext.update(_frame(times, pv_kw=np.arange(8.0) * 10, price_per_kwh=np.full(8, 0.7)))
    f = ext.forecast(times, fc.Recent.empty())
    np.testing.assert_allclose(f.pv_kw, np.arange(8.0) * 10)
    np.testing.assert_allclose(f.price_per_kwh, 0.7)


def test_frame_forecaster_errors(model, tmp_path):
    times = T0 + 900 * NS * np.arange(2)
    with pytest.raises(OptimizerError, match="no fallback"):
        fc.FrameForecaster(_frame(times, pv_kw=[1.0, 2])).forecast(times, fc.Recent.empty())
    with pytest.raises(OptimizerError, match="time"):
        fc.FrameForecaster(pl.DataFrame({"t": [1]}))
    with pytest.raises(OptimizerError, match="aware"):
        fc.FrameForecaster(pl.DataFrame({"time": [dt.datetime(2025, 1, 1)]}))  # noqa: DTZ001
    with pytest.raises(OptimizerError, match="cannot read"):
        fc.FrameForecaster.from_file(tmp_path / "missing.parquet")


def test_frame_forecaster_from_file_is_the_configured_source(tmp_path):
    times = T0 + 3600 * NS * np.arange(4)
    path = tmp_path / "fc.parquet"
    _frame(times, pv_kw=[0.0, 1, 2, 3], wind_kw=[5.0] * 4, it_kw=[100.0] * 4, ambient_c=[20.0] * 4).write_parquet(path)
    m = site_model(tiny_site(forecast={"path": str(path), "firm_it_kw": 100.0}))
    f = fc.forecaster_for(m).forecast(times, fc.Recent.empty())
    np.testing.assert_allclose(f.pv_kw, [0, 1, 2, 3])
    assert isinstance(fc.forecaster_for(m), fc.Forecaster)
