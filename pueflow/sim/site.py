"""One site's simulation: weather and renewables for the whole run, the rest chunk by chunk.

IT, cooling, electrical, battery and meters are stepped one chunk at a time, with their
state carried between chunks.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl

from pueflow.config.models import Site
from pueflow.config.plant import WindSpec
from pueflow.sim import cooling, electrical, solar, weather, wind
from pueflow.sim.battery import Battery
from pueflow.sim.load import RackLoad
from pueflow.sim.meters import (
    NONE,
    REGISTER,
    RESET,
    FaultInjector,
    RegisterBank,
    fault_frame,
    frame,
)
from pueflow.sim.plant import emitted, resolve, series_specs
from pueflow.sim.truth import ROLE_COL, TRUTH_ROLES, TruthAccumulator

# appended streams keep the earlier ones' draws (SeedSequence children are by index)
_STREAMS = ("weather", "pv", "wind", "racks", "tanks", "misc", "faults", "registers", "ppa")


def _factors(rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    """Draw static unit-to-unit factors with mean exactly 1 (``n = 0``: an empty array)."""
    if n == 0:
        return np.ones(0)
    f = 1.0 + spread * rng.standard_normal(n)
    return f / f.mean()


def _cdu_blocks(racks: int, cdus: int) -> tuple[np.ndarray, np.ndarray]:
    """Racks feed CDUs in contiguous blocks (rack ``i`` -> CDU ``i * cdus // racks``).

    Returns (CDUs that have racks, first rack of each of them) for ``np.add.reduceat``,
    which sums in a fixed order (a BLAS product would round differently with chunk length).
    """
    owner = (np.arange(racks) * cdus) // max(racks, 1)
    used = np.zeros(cdus, bool)
    used[owner] = True
    return used, np.searchsorted(owner, np.flatnonzero(used))


class SiteSim:
    """Simulate one site over samples ``start_ns + i * step_ns``, ``i = 0 .. n_total - 1``."""

    def __init__(self, site: Site, windows: dict[str, int], grace_ns: int, start_ns: int, step_ns: int,
                 n_total: int, seed: int, faults: bool):
        self.site, self.start_ns, self.step_ns, self.n_total = site, start_ns, step_ns, n_total
        self.dt_s = step_ns / 1e9
        p = self.plant = site.plant
        # the start is part of the key so runs over different weeks do not repeat one pattern
        start_s = start_ns // 10**9
        ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(site.id.encode()), start_s & 0xFFFFFFFF,
                                                     (start_s >> 32) & 0xFFFFFFFF))
        rng = dict(zip(_STREAMS, (np.random.default_rng(s) for s in ss.spawn(len(_STREAMS))), strict=True))
        self.rng = rng
        c = self.counts = resolve(site)
        end_ns = start_ns + (n_total - 1) * step_ns
        self.weather = weather.generate(p.climate, site.latitude, site.longitude, start_ns, end_ns, rng["weather"])
        self._pv_grid = self._pv()
        self._wind_grid = self._wind()
        self._ppa_grid = self._ppa()
        self.racks = RackLoad.build(p.load, p.racks.rack_kw * _factors(rng["misc"], c.racks, p.racks.spread),
                                    rng["racks"])
        self.tanks = RackLoad.build(p.load, np.full(c.tanks, p.immersion.tank_kw), rng["tanks"])
        self.cdu_used, self.cdu_starts = _cdu_blocks(c.racks, c.cdus)
        misc = rng["misc"]
        self.unit_f = {g: _factors(misc, n, 0.03) for g, n in
                       (("sink_fan", c.dry_coolers + c.towers), ("crah", c.crahs), ("ups", c.ups))}
        shares = _factors(misc, c.incomers, 0.05) / c.incomers
        self.incomer_share = shares
        self.pv_f = np.clip(1.0 - 0.015 * np.abs(misc.standard_normal(c.pv_inverters)), 0.95, 1.0)
        self.battery = Battery(p.battery)
        heat = 1.05 * (c.racks * p.racks.rack_kw + c.tanks * p.immersion.tank_kw)
        self.tx_kva = p.electrical.transformer_rated_kva or max(1.3 * 1.3 * heat, 1.0)

        self.specs, self.table = emitted(site, series_specs(site, c), p.faults.register_max_kwh)
        self._groups_index()
        self.registers = self._register_bank(faults, end_ns - start_ns)
        self.injector = FaultInjector(self.table, p.faults, self.dt_s, n_total, grace_ns, rng["faults"], faults)
        scale = np.ones(len(TRUTH_ROLES))
        scale[ROLE_COL["water_l"]] = 3600.0
        self.truth = TruthAccumulator(site.id, site.timezone, windows, end_ns, scale)
        self.fault_frames: list[pl.DataFrame] = []

    # ------------------------------------------------------------------ whole-run inputs

    def _pv(self) -> np.ndarray:
        p, s = self.plant, self.site
        if self.counts.pv_inverters == 0:
            return np.zeros(len(self.weather.grid_ns))

        lay = solar.layout(p.pv, s.latitude)
        return solar.ac_power_kw(p.pv, lay, self.weather, s.latitude, s.longitude, s.altitude_m)

    def _wind(self) -> np.ndarray:
        if self.counts.turbines == 0:
            return np.zeros((len(self.weather.grid_ns), 0))

        return wind.turbine_power_kw(self.plant.wind, self.weather.wind10_m_s, self.rng["wind"])

    def _ppa(self) -> np.ndarray:
        """Delivery of each contracted wind farm on the weather grid [kW], (n_grid, n_ppa).

        The farm sees the site's 10 m wind ``lag_hours`` later and scaled by
        ``wind_speed_factor``; its turbines (capacity / nominal, rounded up) follow their
        power curve, and the total is scaled to the contracted capacity.
        """
        g = self.weather.grid_ns.astype(np.float64)
        out = np.zeros((len(g), len(self.site.ppa)))
        for k, c in enumerate(self.site.ppa):
            v = np.interp(g - c.lag_hours * 3.6e12, g, self.weather.wind10_m_s) * c.wind_speed_factor
            nominal = wind.power_curve(c.turbine_type, c.hub_height_m)[2]
            n = max(int(np.ceil(c.capacity_kw / nominal)), 1)
            spec = WindSpec(count=n, turbine_type=c.turbine_type, hub_height_m=c.hub_height_m)
            out[:, k] = wind.turbine_power_kw(spec, v, self.rng["ppa"]).sum(axis=1) * (c.capacity_kw / (n * nominal))
        return out

    def _groups_index(self) -> None:
        by_group: dict[str, tuple[list[int], list[int]]] = {}
        for i, s in enumerate(self.specs):
            cols, dst = by_group.setdefault(s.group, ([], []))
            cols.append(s.column)
            dst.append(i)
        self.group_index = {g: (np.array(c, np.int64), np.array(d, np.int64)) for g, (c, d) in by_group.items()}
        self.reg_idx = np.flatnonzero(self.table.kind == REGISTER)

    def _register_bank(self, faults: bool, span_ns: int) -> RegisterBank:
        t, c, p = self.table, self.counts, self.plant
        reg = self.reg_idx
        rmax = t.register_max[reg]
        rng = self.rng["registers"]
        # small starting readings keep float rounding of register deltas far below 1e-9 of
        # the energy; with faults on they look like meters in service for years
        start = rng.random(len(reg)) * np.minimum(1e6 if faults else 100.0, 0.1 * rmax)
        if faults and len(reg):
            nominal = {"incomer": 1.2 * self.site.it_capacity_kw / max(c.incomers, 1),
                       "grid_import": self.site.it_capacity_kw, "grid_export": 0.05 * self.site.it_capacity_kw,
                       "water": 0.5 * p.water.l_per_kwh_rejected * self.site.it_capacity_kw}
            hours = span_ns / 3.6e12
            near = rng.random(len(reg)) < p.faults.rollover_register_fraction
            for k, j in enumerate(reg):
                if near[k]:
                    use = nominal.get(self.specs[j].group, 0.0) * hours * (0.2 + 0.5 * rng.random())
                    if 0 < use < 0.09 * rmax[k]:
                        start[k] = rmax[k] - use
        scale = np.array([self.dt_s if self.specs[j].group == "water" else self.dt_s / 3600.0 for j in reg])
        return RegisterBank(start, rmax, scale, t.jitter[reg].copy())

    # ------------------------------------------------------------------ chunk physics

    def _local(self, time_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lt = pl.Series(time_ns).cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(self.site.timezone)
        hour = (lt.dt.hour().cast(pl.Float64) + lt.dt.minute().cast(pl.Float64) / 60.0
                + lt.dt.second().cast(pl.Float64) / 3600.0).to_numpy()
        return hour, lt.dt.weekday().to_numpy()

    def physics(self, time_ns: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Step the site's physics over the samples at ``time_ns`` and return its state there.

        Load, cooling and battery state carry over to the next call, so calls must come in
        time order.

        Parameters
        ----------
        time_ns : array of int64 [ns]
            Sample times, UTC, consecutive at the site's step.

        Returns
        -------
        groups : dict of str to array (n, units)
            Per-unit values by group (``rack_it``, ``cdu_pump``, ...), in each series' unit.
        role : array (n, roles)
            True power per truth role [kW] (``water_l`` in [L/s]).
        ambient : array (n,) [degC]
            Ambient temperature.
        """
        p, c, dt = self.plant, self.counts, self.dt_s
        n = len(time_ns)
        hour, weekday = self._local(time_ns)
        amb = self.weather.at("ambient_c", time_ns)
        wb = self.weather.at("wet_bulb_c", time_ns)
        g: dict[str, np.ndarray] = {}
        g["rack_it"] = self.racks.step(dt, hour)
        g["tank_it"] = self.tanks.step(dt, hour)
        rack_total = g["rack_it"].sum(axis=1)
        tank_total = g["tank_it"].sum(axis=1)
        it = rack_total + tank_total

        cdu_heat = np.zeros((n, c.cdus))
        if self.cdu_starts.size:
            cdu_heat[:, self.cdu_used] = np.add.reduceat(g["rack_it"], self.cdu_starts, axis=1)
        cdu_heat *= p.racks.liquid_fraction
        cdu = cooling.cdu(p.cdu, cdu_heat, np.zeros(n))
        g["cdu_pump"] = cdu.pump_kw
        pumps = cdu.pump_kw.sum(axis=1)
        ups_load = it + (pumps if p.electrical.cdu_on_ups else 0.0)
        ups = electrical.ups_loss_kw(p.electrical, c.ups, ups_load)
        base_kw = p.aux.base_kw if p.aux.base_kw is not None else 0.004 * self.site.it_capacity_kw
        office_kw = p.aux.office_kw if p.aux.office_kw is not None else 0.002 * self.site.it_capacity_kw
        office = np.clip(hour - 7.5, 0, 1) * np.clip(18.5 - hour, 0, 1)
        office = np.where(weekday <= 5, office, 0.0) * 0.85 + 0.15
        aux_total = base_kw + office_kw * office
        g["aux"] = np.repeat((aux_total / max(c.aux, 1))[:, None], c.aux, axis=1)
        air = rack_total * (1.0 - p.racks.liquid_fraction) + ups.sum(axis=1) + aux_total
        g["crah"] = cooling.crah_kw(p.crah, c.crahs, air) * self.unit_f["crah"]
        g["immersion"] = cooling.immersion_kw(p.immersion, g["tank_it"])
        heat = (cdu_heat.sum(axis=1) + tank_total + pumps + air + g["crah"].sum(axis=1)
                + g["immersion"].sum(axis=1))
        sink = cooling.heat_sink(p, c.dry_coolers + c.towers, c.chillers, amb, wb, heat)
        g["sink_fan"] = sink.sink_fan_kw * self.unit_f["sink_fan"]
        g["chiller"] = sink.chiller_kw
        supply = sink.facility_supply_c + p.cdu.approach_k
        noise = 0.05 * self.rng["misc"].standard_normal((n, c.cdus))
        g["cdu_supply"] = supply[:, None] + noise
        g["cdu_return"] = g["cdu_supply"] + (cdu.return_c - cdu.supply_c)
        g["cdu_flow"] = cdu.flow_lpm

        cool = {"cooling.cdu_pump": pumps, "cooling.crah": g["crah"].sum(axis=1),
                "cooling.immersion": g["immersion"].sum(axis=1), "cooling.chiller": g["chiller"].sum(axis=1),
                "cooling.tower" if c.towers else "cooling.dry_cooler": g["sink_fan"].sum(axis=1)}
        non_it = it + aux_total + sum(cool.values())
        tx = electrical.transformer_loss_kw(p.electrical, self.tx_kva, non_it + ups.sum(axis=1))
        g["ups"] = (ups + (tx / c.ups)[:, None]) * self.unit_f["ups"] if c.ups else ups
        losses = g["ups"].sum(axis=1) if c.ups else tx
        facility = it + sum(cool.values()) + losses + aux_total

        g["pv"] = self.weather_interp(self._pv_grid, time_ns)[:, None] * self.pv_f[None, :]
        g["wind"] = np.stack([self.weather_interp(self._wind_grid[:, i], time_ns)
                              for i in range(c.turbines)], axis=1) if c.turbines else np.zeros((n, 0))
        pv, wnd = g["pv"].sum(axis=1), g["wind"].sum(axis=1)
        # contracted off-site supply: metered and counted, never in the site's balance below
        g["ppa"] = np.stack([self.weather_interp(self._ppa_grid[:, k], time_ns)
                             for k in range(self._ppa_grid.shape[1])], axis=1) if self.site.ppa else np.zeros((n, 0))
        bess, soc = self.battery.step(dt, facility - pv - wnd, hour) if c.battery else (np.zeros(n), np.zeros(n))
        g["bess"], g["soc"] = bess[:, None], soc[:, None]
        grid = facility - pv - wnd + bess
        g["grid_import"] = np.maximum(grid, 0.0)[:, None]
        g["grid_export"] = np.maximum(-grid, 0.0)[:, None]
        inc = facility[:, None] * self.incomer_share[None, :]
        inc[:, -1] = facility - inc[:, :-1].sum(axis=1)
        g["incomer"] = inc
        g["ambient"] = amb[:, None]
        g["water"] = sink.water_l_s[:, None]

        role = np.zeros((n, len(TRUTH_ROLES)))
        for name, v in {"facility": facility, "it": it, **cool, "electrical_losses": losses,
                        "other": aux_total, "pv": pv, "wind": wnd, "grid_import": g["grid_import"][:, 0],
                        "grid_export": g["grid_export"][:, 0], "battery": bess,
                        "water_l": sink.water_l_s, "ppa": g["ppa"].sum(axis=1)}.items():
            role[:, ROLE_COL[name]] = v
        return g, role, amb

    def weather_interp(self, grid_values: np.ndarray, time_ns: np.ndarray) -> np.ndarray:
        """Interpolate a series on the weather grid linearly to ``time_ns`` [ns].

        Times outside the grid take the value at its nearest end (no extrapolation).
        """
        return np.interp(time_ns.astype(np.float64), self.weather.grid_ns.astype(np.float64), grid_values)

    # ------------------------------------------------------------------ telemetry

    def chunk(self, g0: int, n: int) -> pl.DataFrame:
        """Telemetry rows (arrival order) for samples ``g0 .. g0 + n - 1``."""
        time_ns = self.start_ns + (g0 + np.arange(n, dtype=np.int64)) * self.step_ns
        groups, role, amb = self.physics(time_ns)
        self.truth.add(time_ns, role, amb)
        values = np.empty((n, len(self.table)))
        reg = self.reg_idx
        for gname, (cols, dst) in self.group_index.items():
            if self.table.kind[dst[0]] != REGISTER:
                values[:, dst] = groups[gname][:, cols]
        codes, u2 = self.injector.plan(g0, n)
        reg_power = np.empty((n, len(reg)))
        for k, j in enumerate(reg):
            s = self.specs[j]
            reg_power[:, k] = groups[s.group][:, s.column]
        reset = codes[:, reg] == RESET
        readings, wrapped = self.registers.advance(reg_power, reset)
        codes_reg = codes[:, reg]
        codes_reg[(codes_reg == RESET) & ~reset] = NONE
        codes[:, reg] = codes_reg
        values[:, reg] = readings
        final = g0 + n >= self.n_total
        rows = self.injector.apply(time_ns, values, codes, u2, int(time_ns[-1] + self.step_ns), final)
        ks, js = np.nonzero(wrapped)
        rows.fault_rows.extend((int(time_ns[k]), int(reg[j]), "rollover", "rollover", 0.0)
                               for k, j in zip(ks.tolist(), js.tolist(), strict=True))
        if rows.fault_rows:
            self.fault_frames.append(fault_frame(self.site.id, self.table, rows.fault_rows))
        return frame(self.site.id, self.table, rows)
