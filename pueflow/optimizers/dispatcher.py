"""The bridge from the streaming core to dispatch: closed KPI windows in, setpoints out.

:class:`Dispatcher` keeps each dispatched site's recent history (from the KPI rows of its
input window), and each time event time crosses a re-dispatch boundary it forecasts,
plans and publishes the setpoints that take effect until the next boundary. It is driven
by the rows' event time only, never by the wall clock, so a replay publishes the same
setpoints however its input was cut into batches.

Setpoint rows (``rows.TAGS["setpoint"]``): asset ``site`` carries ``battery_kw``,
``grid_import_kw``, ``grid_export_kw``, ``curtail_kw``, ``flex_it_cap_kw``, ``step_cost`` (the
step's own cost) and ``plan_cost`` (the whole horizon's planned cost, the same on every row
of one plan); asset ``cooling.<loop>`` carries ``cooling_supply_c``; asset ``job.<name>``
carries that job's ``flex_it_cap_kw``. Fields an asset does not have are null. Quality rows
report clipped setpoints (``setpoint_clipped``) and every plan that is not the LP's own
optimum over the measured state (``dispatch_fallback``: rule fallback, relaxed state, work
that cannot meet its deadline, an input window too poorly covered to read and filled from
the forecast (``filled_input``; its setpoints are clipped for the worst-case IT load),
forecast steps a feed did not cover (``fallback_steps``)).

Policy ``"oracle"`` needs the whole period: it only collects history from the rows and
publishes everything when :meth:`finish` is called at the end of a replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from pueflow.exceptions import OptimizerError
from pueflow.optimizers.assets import SiteModel, site_model
from pueflow.optimizers.battery import soc_step
from pueflow.optimizers.controller import plan_step
from pueflow.optimizers.dispatch_state import restore_sites, snapshot_sites
from pueflow.optimizers.forecast import Forecast, Forecaster, Recent, forecaster_for
from pueflow.optimizers.horizon import DispatchState, Problem, job_occurrence
from pueflow.optimizers.inputs import read_windows
from pueflow.optimizers.plan import Plan, setpoints_at
from pueflow.optimizers.policy import POLICIES, SiteDispatch
from pueflow.optimizers.safety import Setpoints, clip_setpoints
from pueflow.optimizers.tariff import calendar, signals
from pueflow.schema import rows as rw
from pueflow.units import parse_duration_ns

SETPOINT_FIELDS = ("battery_kw", "grid_import_kw", "grid_export_kw", "curtail_kw", "flex_it_cap_kw",
                   "cooling_supply_c", "step_cost", "plan_cost")
# dtype instances, so the dicts are dict[str, pl.DataType]
_QUALITY_SCHEMA: dict[str, pl.DataType] = {
    "time": rw.TIME_DTYPE, "site": pl.String(), "kind": pl.String(), "device": pl.String(),
    "point": pl.String(), "run": pl.String(), "count": pl.Int64(), "value": pl.Float64(),
    "detail": pl.String()}
_SETPOINT_SCHEMA: dict[str, pl.DataType] = {
    "time": rw.TIME_DTYPE, "site": pl.String(), "asset": pl.String(), "run": pl.String(),
    **{f: pl.Float64() for f in SETPOINT_FIELDS}}


@dataclass
class _Site:
    model: SiteModel
    engine: SiteDispatch
    forecaster: Forecaster
    window: str
    window_ns: int
    state: DispatchState
    hist: dict[int, tuple[float, ...]] = field(default_factory=dict)  # window start -> values
    latest_end: int = -1
    next_ns: int | None = None
    published: dict[int, np.ndarray] = field(default_factory=dict)  # step time -> job caps
    measured_peak: dict[int, float] = field(default_factory=dict)  # billing period -> import kW
    reported: dict[tuple[str, int], float] = field(default_factory=dict)  # (job, window) -> unmet h
    peak_upto: int = -(2**62)  # windows starting before this are folded into measured_peak


def empty_setpoints() -> pl.DataFrame:
    """Return an empty frame with the setpoint row schema."""
    return pl.DataFrame(schema=_SETPOINT_SCHEMA)


def empty_quality() -> pl.DataFrame:
    """Return an empty frame with the dispatcher's quality row schema."""
    return pl.DataFrame(schema=_QUALITY_SCHEMA)


class Dispatcher:
    """Publish setpoints for every site of ``cfg`` that has a ``[sites.dispatch]`` section.

    Parameters
    ----------
    cfg : pueflow.config.models.Config
    policy : ``"mpc"`` (LP with rule fallback), ``"rule"``, ``"oracle"`` (see :meth:`finish`),
        or None for ``"mpc"``
    forecasters : optional per-site :class:`Forecaster` replacing the configured one
    """

    def __init__(self, cfg: Any, policy: str | None = "mpc", *,
                 forecasters: dict[str, Forecaster] | None = None) -> None:
        policy = policy or "mpc"
        if policy not in POLICIES:
            msg = f"dispatch policy {policy!r} is unknown; use one of {POLICIES}"
            raise OptimizerError(msg)
        self.policy = policy
        self.sites: dict[str, _Site] = {}
        windows = {w: parse_duration_ns(w) for w in cfg.pipeline.windows}
        for s in cfg.sites:
            if s.dispatch is None:
                continue
            m = site_model(s)
            w = m.spec.input_window if m.spec.input_window in windows else min(windows, key=lambda k: windows[k])
            fc = (forecasters or {}).get(s.id) or forecaster_for(m)
            self.sites[s.id] = _Site(m, SiteDispatch(m), fc, w, windows[w], DispatchState.initial(m))
        self.run = ""

    # ------------------------------------------------------------------ checkpoint
    def snapshot(self, site_ids: list[str]) -> bytes:
        """Dispatch state of ``site_ids`` as bytes (see :mod:`~pueflow.optimizers.dispatch_state`).

        Stored with a partition's state record, it lets a restarted or rebalanced consumer
        publish the same setpoints as an uninterrupted one.
        """
        return snapshot_sites(self.sites, site_ids, self.run)

    def restore(self, blob: bytes) -> list[str]:
        """Load :meth:`snapshot` bytes; returns the dispatched site ids restored."""
        done, run = restore_sites(self.sites, blob)
        if done:
            self.run = run
        return done

    # ------------------------------------------------------------------ streaming entry
    def on_kpi(self, kpi_rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Take closed KPI windows; return (setpoint rows, quality rows) for the boundaries crossed."""
        sp: list[dict[str, Any]] = []
        q: list[dict[str, Any]] = []
        if kpi_rows is None or not kpi_rows.height or not self.sites:
            return empty_setpoints(), empty_quality()
        if "run" in kpi_rows.columns and kpi_rows.height:
            self.run = str(kpi_rows["run"][0] or "")
        for sid, site in self.sites.items():
            rows = kpi_rows.filter((pl.col("site") == sid) & (pl.col("window") == site.window))
            if not rows.height:
                continue
            self._ingest(site, rows)
            if self.policy == "oracle":
                continue
            if site.next_ns is None:
                red = site.model.redispatch_steps * site.model.step_ns
                first = rows["time"].cast(pl.Int64).min()
                assert isinstance(first, int), "rows is not empty and KPI rows always have a time"
                first_end = first + site.window_ns
                site.next_ns = -(-first_end // red) * red
            red = site.model.redispatch_steps * site.model.step_ns
            while site.next_ns <= site.latest_end:
                self._dispatch(sid, site, site.next_ns, sp, q)
                site.next_ns += red
        return _frame(sp, _SETPOINT_SCHEMA), _frame(q, _QUALITY_SCHEMA)

    def finish(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Oracle policy: solve each site's whole collected period once and publish it all."""
        sp: list[dict[str, Any]] = []
        q: list[dict[str, Any]] = []
        if self.policy != "oracle":
            return empty_setpoints(), empty_quality()
        for sid, site in self.sites.items():
            if not site.hist:
                continue
            m = site.model
            # the period ends with its last readable window: a lone sample at its end (a window
            # with next to no coverage) adds no hour to plan
            good = [k for k, v in site.hist.items() if not np.isfinite(v[7])]
            end = max(good) + site.window_ns if good else site.latest_end
            t, vals = self._series(site, min(site.hist), end)
            t0 = int(t[0])
            n = len(t)
            try:
                fc = site.forecaster.forecast(t, Recent(t, vals[0], vals[1], vals[2], vals[3], m.step_ns))
            except Exception as exc:  # noqa: BLE001 - a user's forecaster must not stop the stream
                q.append(self._q(t0, sid, "dispatch_fallback", "forecast", "error", np.nan,
                                 f"no plan could be prepared: {type(exc).__name__}: {exc}"))
                continue
            missing = ~np.isfinite(vals[2])
            if missing.any():
                q.append(self._q(t0, sid, "dispatch_fallback", "it", "filled_input", float(missing.sum()),
                                 "steps without a readable IT window filled from the forecast"))
            truth = Forecast(*(np.where(np.isfinite(vals[k]), vals[k], getattr(fc, f))
                               for k, f in enumerate(("pv_kw", "wind_kw", "it_kw", "ambient_c"))))
            p, plan = site.engine.oracle(t0, truth, DispatchState.initial(m), end_ns=t0 + n * m.step_ns)
            self._publish(sid, site, plan, p, n, sp, q)
        return _frame(sp, _SETPOINT_SCHEMA), _frame(q, _QUALITY_SCHEMA)

    # ------------------------------------------------------------------ internals
    def _ingest(self, site: _Site, rows: pl.DataFrame) -> None:
        w = read_windows(rows, site.window_ns, site.model.it_capacity_kw)
        t = w.time_ns
        sig = signals(site.model, t)
        for i, ti in enumerate(t.tolist()):
            # the import counts towards the billed peak only in demand-charged windows
            site.hist[ti] = (w.pv_kw[i], w.wind_kw[i], w.it_kw[i], w.ambient_c[i], w.grid_import_kw[i],
                             w.soc_pct[i], float(sig.bill_id[i]) if sig.demand_mask[i] else np.nan,
                             float(w.coverage[i]) if w.filled[i] else np.nan)
        site.latest_end = max(site.latest_end, int(t.max()) + site.window_ns)
        keep = site.latest_end - int((site.model.spec.forecast.history_days + 1) * 86400e9)
        if self.policy != "oracle" and len(site.hist) > 4 * 24 * 60:
            site.hist = {k: v for k, v in site.hist.items() if k >= keep}

    def _series(self, site: _Site, start: int, end: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """History on the dispatch step grid from ``start`` to ``end`` (firm IT estimated)."""
        m = site.model
        step = m.step_ns
        t = start + step * np.arange(max((end - start) // step, 0), dtype=np.int64)
        keys = np.array(sorted(site.hist), dtype=np.int64)
        vals = np.array([site.hist[k][:6] for k in keys.tolist()]).reshape(len(keys), 6)
        idx = np.searchsorted(keys, t, side="right") - 1
        ok = (idx >= 0) & (t < keys[np.maximum(idx, 0)] + site.window_ns)
        out = [np.where(ok, vals[np.maximum(idx, 0), k], np.nan) for k in range(6)]
        # measured IT includes the flexible jobs: take off what was published for them, or
        # before anything was, what their daily quotas draw on average over their windows
        expected = _expected_flex_kw(m, t) if len(t) else np.zeros(0)
        flex = np.array([site.published[int(x)].sum() if int(x) in site.published else expected[i]
                         for i, x in enumerate(t)])
        firm = np.where(np.isfinite(out[2]), np.maximum(out[2] - np.minimum(flex, out[2]), 0.0), np.nan)
        return t, [out[0], out[1], firm, out[3], out[4], out[5]]

    def _update_state(self, site: _Site, t0: int) -> None:
        """Correct the carried state with what was measured before ``t0``: SoC, billed peak.

        Only windows that ended by ``t0`` count, so rows of later windows arriving in the
        same batch (a replay) change nothing: the result does not depend on batching.
        """
        m, st = site.model, site.state
        keys = sorted(k for k in site.hist if site.peak_upto <= k <= t0 - site.window_ns)
        for k in keys:
            g, bill = site.hist[k][4], site.hist[k][6]
            if np.isfinite(g) and np.isfinite(bill):
                site.measured_peak[int(bill)] = max(site.measured_peak.get(int(bill), 0.0), g)
        if keys:
            site.peak_upto = keys[-1] + 1
        done = [k for k in site.hist if k <= t0 - site.window_ns]
        b = m.battery
        if done and b is not None:
            soc = site.hist[max(done)][5]
            if np.isfinite(soc):
                st.soc_kwh = float(soc) / 100.0 * b.energy_kwh
        if st.bill_id in site.measured_peak:
            st.peak_kw = max(st.peak_kw, site.measured_peak[st.bill_id])

    def _dispatch(self, sid: str, site: _Site, t0: int, sp: list, q: list) -> None:
        m = site.model
        n = m.horizon_steps
        start = t0 - int(m.spec.forecast.history_days * 86400e9)
        start -= start % m.step_ns
        t_hist, vals = self._series(site, max(start, min(site.hist)), t0)
        recent = Recent(t_hist, vals[0], vals[1], vals[2], vals[3], m.step_ns)
        self._update_state(site, t0)
        try:
            stp = plan_step(m, site.engine, site.forecaster, self.policy, t0, recent, site.state)
        except Exception as exc:  # noqa: BLE001 - a user's forecaster must not stop the stream
            q.append(self._q(t0, sid, "dispatch_fallback", "forecast", "error", np.nan,
                             f"no plan could be prepared: {type(exc).__name__}: {exc}"))
            return
        if stp.fallback_steps:
            q.append(self._q(t0, sid, "dispatch_fallback", "forecast", "fallback_steps", stp.fallback_steps,
                             "the forecast feed does not cover these steps; the default forecaster filled them"))
        last = [k for k in site.hist if t0 - 2 * site.window_ns < k <= t0 - site.window_ns]
        filled = bool(last) and np.isfinite(site.hist[max(last)][7])
        if filled:
            q.append(self._q(t0, sid, "dispatch_fallback", "it", "filled_input", site.hist[max(last)][7],
                             "the last input window is not covered well enough to read (or not plausible); "
                             "filled from the forecast, setpoints clipped for the worst-case IT load"))
        self._publish(sid, site, stp.plan, stp.problem, min(m.redispatch_steps, n), sp, q, worst_case=filled)

    def _publish(self, sid: str, site: _Site, plan: Plan, p: Problem, steps: int, sp: list, q: list,
                 worst_case: bool = False) -> None:
        m, st = site.model, site.state
        t0 = p.t0_ns
        if plan.source != "lp" and self.policy == "mpc":
            q.append(self._q(t0, sid, "dispatch_fallback", "lp", plan.status, plan.solve_s, plan.reason))
        for asset, value, detail in plan.notes:
            q.append(self._q(t0, sid, "dispatch_fallback", asset, "state", value, detail))
        for j, job in enumerate(m.jobs):
            due = float(plan.unmet_deadline_h[j])
            key = (job.name, int(p.job_occ[j, 0]))
            if due > 1e-3 and due > site.reported.get(key, 0.0) + 1e-2:
                if len(site.reported) > 1000:
                    site.reported.clear()
                site.reported[key] = due
                q.append(self._q(t0, sid, "dispatch_fallback", f"job.{job.name}", "unmet_work_h", due,
                                 "the work cannot all be done by the window's deadline; the shortfall "
                                 "is penalised, not enforced"))
        for k in range(steps):
            tk = t0 + k * m.step_ns
            req = setpoints_at(plan, k)
            firm = float(p.firm_kw[k])
            if worst_case:  # the load is not known: as much firm IT as the capacity leaves the jobs
                firm = max(firm, m.it_capacity_kw - float(np.clip(req.job_kw, 0.0, None).sum()))
            pub, clips = clip_setpoints(m, req, soc_kwh=st.soc_kwh, dt_h=m.step_h, job_on=p.job_on[:, k],
                                        firm_kw=firm)
            for c in clips:
                q.append(self._q(tk, sid, "setpoint_clipped", c.asset, c.point, c.requested,
                                 f"published {c.published:.3f}: {c.detail}"))
            row = {"time": tk, "site": sid, "asset": "site", "run": self.run,
                   "battery_kw": pub.battery_kw, "grid_import_kw": pub.grid_import_kw,
                   "grid_export_kw": pub.grid_export_kw, "curtail_kw": pub.curtail_kw,
                   "flex_it_cap_kw": pub.flex_it_cap_kw, "cooling_supply_c": None,
                   "step_cost": float(plan.step_cost[k]) if len(plan.step_cost) else None,
                   "plan_cost": float(plan.objective)}
            sp.append(row)
            for i, lp in enumerate(m.loops):
                sp.append({"time": tk, "site": sid, "asset": f"cooling.{lp.name}", "run": self.run,
                           "cooling_supply_c": float(pub.supply_c[i])})
            for j, job in enumerate(m.jobs):
                sp.append({"time": tk, "site": sid, "asset": f"job.{job.name}", "run": self.run,
                           "flex_it_cap_kw": float(pub.job_kw[j])})
            self._advance(site, p, k, pub)
            site.published[tk] = pub.job_kw.copy()
        cutoff = t0 - int((m.spec.forecast.history_days + 1) * 86400e9)
        if len(site.published) > 4 * 24 * 60:
            site.published = {k: v for k, v in site.published.items() if k >= cutoff}

    def _advance(self, site: _Site, p: Problem, k: int, pub: Setpoints) -> None:
        """Carry the state through step ``k`` as if the published setpoints were followed."""
        m, st = site.model, site.state
        dt = m.step_h
        b = m.battery
        if b is not None:
            st.soc_kwh = float(soc_step(st.soc_kwh, pub.battery_kw, dt, b.eta_charge, b.eta_discharge,
                                        b.self_discharge_per_h))
        for j, job in enumerate(m.jobs):
            occ = int(p.job_occ[j, k])
            if occ < 0:
                st.job_kw[j] = 0.0
                continue
            if occ != st.job_occ[j]:
                st.job_occ[j] = occ
                st.job_done_h[j] = 0.0
            st.job_done_h[j] += float(job.rate(pub.job_kw[j])) * dt
            st.job_kw[j] = pub.job_kw[j]
        st.supply_c = pub.supply_c.copy()
        bill = int(p.sig.bill_id[k])
        if bill != st.bill_id:
            st.bill_id, st.peak_kw = bill, site.measured_peak.get(bill, 0.0)
        if p.sig.demand_mask[k]:
            st.peak_kw = max(st.peak_kw, pub.grid_import_kw)

    def _q(self, t: int, sid: str, kind: str, device: str, point: str, value: float, detail: str) -> dict:
        return {"time": t, "site": sid, "kind": kind, "device": device, "point": point, "run": self.run,
                "count": 1, "value": float(value) if value is not None else None, "detail": detail}


def _expected_flex_kw(m: SiteModel, t: np.ndarray) -> np.ndarray:
    """Average power of the jobs' daily work spread over their windows, at times ``t``."""
    out = np.zeros(len(t))
    if not m.jobs:
        return out
    cal = calendar(t, m.timezone)
    for job in m.jobs:
        window_h = (job.end_h - job.start_h) % 24.0 or 24.0
        on = job_occurrence(cal.hour, cal.day, job.start_h, job.end_h) >= 0
        out += np.where(on, max(min(job.work_h / window_h, 1.0) * job.max_kw, job.idle_kw), 0.0)
    return out


def _frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=schema)
    cols: dict[str, list[Any] | np.ndarray] = {k: [r.get(k) for r in rows] for k in schema}
    cols["time"] = np.array(cols["time"], dtype=np.int64)
    df = pl.DataFrame(cols, schema_overrides={k: v for k, v in schema.items() if k != "time"})
    return df.with_columns(pl.col("time").cast(rw.TIME_DTYPE))
