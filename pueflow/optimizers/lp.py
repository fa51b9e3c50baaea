"""The dispatch LP's formulation: variables, constraints and objective for one site.

:class:`SiteLP` lays out the columns and rows for a horizon of ``n`` steps once, with the
sparsity pattern of the constraint matrix fixed. :meth:`SiteLP.assemble` then writes one
problem's costs, bounds, right-hand sides and the coefficients that change with the
inputs (step lengths, window restarts, cooling planes, demand mask) into preallocated
arrays, so a receding-horizon solve never rebuilds the matrix. Solving is in
:mod:`pueflow.optimizers.solve`, reading the solution in :mod:`pueflow.optimizers.plan`.

Units inside the LP are MW, MWh, h, °C and currency; the API is in kW.

Per step ``t`` (length ``dt``; ``dt = 0`` marks a dead step past the horizon's end):

* balance: pv + wind + imp + imp_dr − exp + dis − ch = (1+f)(L + Σ x) + aux + Σ q
* battery: e_t = (1 − σ dt) e_{t−1} + η_c dt ch − dt/η_d dis; e_{N−1} + z ≥ E_T;
  E_min ≤ e_t + s⁻_t − s⁺_t ≤ E_max with penalised slacks that exist only while a measured
  SoC starts outside the band
* job j: power x = Σ_k x_k over the segments of its concave throughput curve (slopes
  α_k falling, so cheaper work fills the first segments first); |x_t − x_{t−1}| ≤ R dt;
  per window s met in the horizon Σ_{t∈s} dt Σ_k α_k x_{k,t} + u_s ≥ W_s − done (its work,
  or a pro-rated share where the horizon ends inside the window)
* loop c: q ≥ a_k heat + g_k T + h_k; |T_t − T_{t−1}| ≤ r dt; T + ρ heat ≤ T_chip;
  without a chiller T − (ITD/Q_d) heat ≥ T_amb − ΔT; q ≤ a_k* heat + g_k* T + h_k* (free
  rows until :mod:`pueflow.optimizers.sinks` pins cooling to its plane)
* billed peak: P_s ≥ w_t (imp + imp_dr) for the steps t of billing period s, P_s ≥ P̂ for the
  period already under way

Objective [currency]: Σ_t dt [(price + carbon price × intensity) (imp + imp_dr)
+ DR penalty imp_dr − export price exp + curtailment (A − pv − wind) + wear (ch + dis)]
+ demand charge Σ_s P_s (less the already billed P̂) + unmet-work penalty Σ u
+ terminal-shortfall penalty z + SoC-band slacks + a tiny supply-temperature tie-break.

Windows and billing periods are *slots*: a fixed number of columns and rows whose member
steps change from one problem to the next through coefficients that are either the step
length or zero (HiGHS drops the zeros when the model is passed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pueflow.optimizers import plant
from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.horizon import Problem
from pueflow.optimizers.lp_loops import MW, loop_pattern

INF = np.inf
#: Tiny per-°C cost so that ties in supply temperature resolve to the cooler, safer side.
SUPPLY_TIEBREAK = 1e-4
#: Cost of each kWh outside the SoC band, per hour, in multiples of the highest price.
BAND_PENALTY = 10.0


@dataclass
class LPArrays:
    """One problem in HiGHS' form: min c·x + offset, row_lo ≤ A x ≤ row_hi, col_lo ≤ x ≤ col_hi."""

    c: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray
    data: np.ndarray
    offset: float
    t0_ns: int = 0


class _Index:
    def __init__(self) -> None:
        self.n = 0
        self.blocks: dict[str, tuple[int, int]] = {}

    def add(self, name: str, size: int) -> int:
        self.blocks[name] = (self.n, size)
        self.n += size
        return self.n - size

    def __getitem__(self, name: str) -> int:
        return self.blocks[name][0]

    def __contains__(self, name: str) -> bool:
        return name in self.blocks


class SiteLP:
    """Fixed structure of one site's LP over ``n`` steps; see the module docstring."""

    def __init__(self, model: SiteModel, n: int) -> None:
        self.model, self.n = model, n
        self.nj, self.nc = len(model.jobs), len(model.loops)
        self.k = len(plant.PLANE_Q) * len(plant.PLANE_T)
        self.has_battery = model.battery is not None
        self.has_demand = model.spec.tariff.demand_charge_per_kw > 0
        col, row = _Index(), _Index()
        for name in ("imp", "impx", "exp", "pv", "wind"):
            col.add(name, n)
        if self.has_battery:
            for name in ("ch", "dis", "e", "sl", "sh"):
                col.add(name, n)
            col.add("z", 1)
        hours = n * model.step_h
        self.job_slots = int(hours // 24.0) + 2
        bill_days = 28.0 if model.spec.tariff.billing_period == "month" else 1.0
        self.bill_slots = int(hours // (24.0 * bill_days)) + 2
        for j, job in enumerate(model.jobs):
            col.add(f"x{j}", len(job.widths_kw) * n)  # power on each throughput segment
            col.add(f"u{j}", self.job_slots)
        for c in range(self.nc):
            col.add(f"T{c}", n)
            col.add(f"q{c}", n)
        if self.has_demand:
            col.add("P", self.bill_slots)
        row.add("bal", n)
        if self.has_battery:
            row.add("soc", n)
            row.add("band", n)
            row.add("term", 1)
        for j, job in enumerate(model.jobs):
            if np.isfinite(job.ramp_kw_per_h):
                row.add(f"jr{j}", n)
            row.add(f"dl{j}", self.job_slots)
        for c, lp in enumerate(model.loops):
            row.add(f"pl{c}", self.k * n)
            row.add(f"tr{c}", n)
            row.add(f"ub{c}", n)  # cooling <= one chosen plane; free unless a sink is found
            row.add(f"chip{c}", n)
            if not lp.chiller:
                row.add(f"fc{c}", n)
        if self.has_demand:
            row.add("pimp", n)
        self.col, self.row = col, row
        self._build_pattern()

    # ------------------------------------------------------------------ pattern
    def _build_pattern(self) -> None:
        n, col, row, m = self.n, self.col, self.row, self.model
        t = np.arange(n)
        t1 = t[1:]
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        dyn: dict[str, tuple[int, int]] = {}
        count = 0

        def put(r, cidx, v, key: str | None = None) -> None:
            nonlocal count
            r, cidx = np.asarray(r, np.int64), np.asarray(cidx, np.int64)
            v = np.broadcast_to(np.asarray(v, np.float64), r.shape)
            rows.append(r)
            cols.append(cidx)
            vals.append(v.copy())
            if key is not None:
                dyn[key] = (count, count + len(r))
            count += len(r)

        f = 1.0 + m.aux_fraction
        b = row["bal"]
        put(b + t, col["pv"] + t, 1.0)
        put(b + t, col["wind"] + t, 1.0)
        put(b + t, col["imp"] + t, 1.0)
        put(b + t, col["impx"] + t, 1.0)
        put(b + t, col["exp"] + t, -1.0)
        bat = m.battery
        if bat is not None:
            put(b + t, col["dis"] + t, 1.0)
            put(b + t, col["ch"] + t, -1.0)
            s = row["soc"]
            put(s + t, col["e"] + t, 1.0)
            put(s + t1, col["e"] + t1 - 1, 0.0, "soc_k")
            put(s + t, col["ch"] + t, 0.0, "soc_ch")
            put(s + t, col["dis"] + t, 0.0, "soc_dis")
            bd = row["band"]
            put(bd + t, col["e"] + t, 1.0)
            put(bd + t, col["sl"] + t, 1.0)
            put(bd + t, col["sh"] + t, -1.0)
            put([row["term"]], [col["e"] + n - 1], 1.0)
            put([row["term"]], [col["z"]], 1.0)
            self._eta = (bat.eta_charge, bat.eta_discharge)
        ns = self.job_slots
        ss = np.repeat(np.arange(ns), n)
        st = np.tile(t, ns)
        for j in range(self.nj):
            u = col[f"u{j}"]
            dl = row[f"dl{j}"]
            for k, x in enumerate(self.segments(j)):
                put(b + t, x + t, -f)
                if f"jr{j}" in row:
                    put(row[f"jr{j}"] + t, x + t, 1.0)
                    put(row[f"jr{j}"] + t1, x + t1 - 1, -1.0)
                # work in window slot s: dt x rate slope where step t belongs to s, else 0
                put(dl + ss, x + st, 0.0, f"dl_x{j}_{k}")
            put(dl + np.arange(ns), u + np.arange(ns), 1.0)
        loop_pattern(self, put, b, t, t1)
        if self.has_demand:
            nb = self.bill_slots
            pi = row["pimp"]
            put(pi + np.tile(t, nb), col["P"] + np.repeat(np.arange(nb), n), 0.0, "pk_P")
            put(pi + t, col["imp"] + t, 0.0, "pk_imp")
            put(pi + t, col["impx"] + t, 0.0, "pk_impx")
        r = np.concatenate(rows)
        cidx = np.concatenate(cols)
        v = np.concatenate(vals)
        order = np.lexsort((r, cidx))
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        self.indices = r[order].astype(np.int32)
        self.indptr = np.zeros(col.n + 1, np.int32)
        np.cumsum(np.bincount(cidx, minlength=col.n), out=self.indptr[1:])
        self.base_data = v[order]
        self.dyn_pos = {key: inv[a:z] for key, (a, z) in dyn.items()}
        self.n_cols, self.n_rows, self.nnz = col.n, row.n, len(order)
        self.integrality = np.zeros(col.n, np.int32)  # all continuous
        self._col_runs = self._runs(col)
        self._row_runs = self._runs(row)
        #: last optimal basis (t0_ns, column statuses, row statuses) for warm starts
        self.last_basis: tuple[int, list, list] | None = None

    def _runs(self, idx: _Index) -> list[int]:
        """Return the starts of the per-step runs (``n`` entries, one per step) among columns or rows."""
        n = self.n
        return [a + r * n for a, size in idx.blocks.values() if size >= n and size % n == 0
                for r in range(size // n)]

    def shifted(self, statuses: list, shift: int, rows: bool) -> list:
        """Basis statuses moved ``shift`` steps earlier, the last step repeated at the end."""
        out = list(statuses)
        if shift <= 0:
            return out
        n = self.n
        for a in self._row_runs if rows else self._col_runs:
            out[a:a + n] = statuses[a + shift:a + n] + [statuses[a + n - 1]] * shift
        return out

    def segments(self, j: int) -> list[int]:
        """First column of each throughput segment of job ``j`` (each ``n`` long)."""
        a = self.col[f"x{j}"]
        return [a + k * self.n for k in range(len(self.model.jobs[j].widths_kw))]

    # ------------------------------------------------------------------ per problem
    def assemble(self, p: Problem) -> LPArrays:
        """Costs, bounds and changing coefficients of problem ``p`` (which must have ``n`` steps)."""
        if p.n != self.n:
            msg = f"problem has {p.n} steps, this LP was laid out for {self.n}"
            raise ValueError(msg)
        m, n, col, row = self.model, self.n, self.col, self.row
        c = np.zeros(self.n_cols)
        lo = np.zeros(self.n_cols)
        hi = np.full(self.n_cols, INF)
        rlo = np.full(self.n_rows, -INF)
        rhi = np.full(self.n_rows, INF)
        data = self.base_data.copy()
        dt = p.dt_h
        live = dt > 0
        sig = p.sig
        offset = 0.0

        def blk(name: str) -> slice:
            a = col[name]
            return slice(a, a + n)

        def rblk(name: str, size: int | None = None) -> slice:
            a = row[name]
            return slice(a, a + (size or n))

        def setdyn(key: str, values) -> None:
            data[self.dyn_pos[key]] = values

        energy = 1e3 * dt  # currency per MW-step per (currency/kWh)
        grid_cost = energy * (sig.price_per_kwh + m.spec.carbon.price_per_t * sig.carbon_kg_per_kwh / 1e3)
        c[blk("imp")] = grid_cost
        c[blk("impx")] = grid_cost + energy * m.spec.grid.dr_penalty_per_kwh
        c[blk("exp")] = -energy * sig.export_per_kwh
        dr = np.minimum(sig.import_limit_kw, m.import_limit_kw) * MW
        hi[blk("imp")] = np.where(live, dr, 0.0)
        hi[blk("impx")] = np.where(live, m.import_limit_kw * MW - dr, 0.0)
        hi[blk("exp")] = np.where(live, m.export_limit_kw * MW, 0.0)
        curt = energy * m.curtail_per_kwh
        for name, avail in (("pv", p.pv_kw), ("wind", p.wind_kw)):
            hi[blk(name)] = avail * MW
            c[blk(name)] = -curt
            offset += float(curt @ (avail * MW))
        f = 1.0 + m.aux_fraction
        bal = np.where(live, (f * p.firm_kw + m.aux_kw) * MW, 0.0)
        rlo[rblk("bal")] = bal
        rhi[rblk("bal")] = bal
        bat = m.battery
        if bat is not None:
            eta_c, eta_d = self._eta
            c[blk("ch")] = energy * bat.wear_per_kwh
            c[blk("dis")] = energy * bat.wear_per_kwh
            hi[blk("ch")] = np.where(live, bat.charge_kw * MW, 0.0)
            hi[blk("dis")] = np.where(live, bat.discharge_kw * MW, 0.0)
            lo[blk("e")] = p.e_lo * MW
            hi[blk("e")] = p.e_hi * MW
            # a measured SoC outside the band may stay out, at a price, but never return there
            rlo[rblk("band")] = bat.e_min_kwh * MW
            rhi[rblk("band")] = bat.e_max_kwh * MW
            hi[blk("sl")] = np.maximum(bat.e_min_kwh - p.e_lo, 0.0) * MW
            hi[blk("sh")] = np.maximum(p.e_hi - bat.e_max_kwh, 0.0) * MW
            c[blk("sl")] = c[blk("sh")] = energy * BAND_PENALTY * m.max_price
            keep = 1.0 - bat.self_discharge_per_h * dt
            setdyn("soc_k", -keep[1:])
            setdyn("soc_ch", -eta_c * dt)
            setdyn("soc_dis", dt / eta_d)
            s = rblk("soc")
            rlo[s] = 0.0
            rhi[s] = 0.0
            rlo[row["soc"]] = rhi[row["soc"]] = keep[0] * p.e0_kwh * MW
            rlo[row["term"]] = bat.e_terminal_kwh * MW
            c[col["z"]] = 1e3 * bat.terminal_penalty_per_kwh
        for j, job in enumerate(m.jobs):
            on = p.job_on[j]
            below = np.r_[0.0, np.cumsum(job.widths_kw)[:-1]]
            for k, x in enumerate(self.segments(j)):
                # the idle floor fills the segments from the first
                floor = float(np.clip(job.idle_kw - below[k], 0.0, job.widths_kw[k]))
                lo[x:x + n] = np.where(on, floor * MW, 0.0)
                hi[x:x + n] = np.where(on, job.widths_kw[k] * MW, 0.0)
            slot = p.job_slot[j]
            ns = self.job_slots
            if slot.max(initial=-1) >= ns:
                msg = f"job {job.name!r} meets {slot.max() + 1} windows in the horizon; the LP has {ns} slots"
                raise ValueError(msg)
            member = (slot[None, :] == np.arange(ns)[:, None]) * dt[None, :]
            for k, alpha in enumerate(job.alpha_per_kw):
                setdyn(f"dl_x{j}_{k}", (member * (alpha / MW)).reshape(-1))
            req = np.zeros(ns)
            np.add.at(req, slot[slot >= 0], p.job_req_h[j][slot >= 0])
            if len(slot) and slot[0] == 0 and not p.job_new[j][0]:
                req[0] -= p.job_done0_h[j]
            dl = rblk(f"dl{j}", ns)
            has_req = np.zeros(ns, bool)
            np.logical_or.at(has_req, slot[slot >= 0], p.job_req_h[j][slot >= 0] > 0)
            rlo[dl] = np.where(has_req, req, -INF)
            a = col[f"u{j}"]
            c[a:a + ns] = job.penalty_per_h
            if f"jr{j}" in row:
                ramp = job.ramp_kw_per_h * MW * dt
                act = p.job_ramp_on[j]
                r = rblk(f"jr{j}")
                rlo[r] = np.where(act, -ramp, -INF)
                rhi[r] = np.where(act, ramp, INF)
                if act[0]:
                    rlo[row[f"jr{j}"]] += p.job_prev_kw[j] * MW
                    rhi[row[f"jr{j}"]] += p.job_prev_kw[j] * MW
        for ci, lp in enumerate(m.loops):
            a = p.plane_a[ci].T.reshape(-1)  # (K*N,), plane-major like the rows
            g = p.plane_g[ci].T.reshape(-1)
            h = p.plane_h[ci].T.reshape(-1)
            heat_firm = np.tile(p.heat_firm_kw[ci], self.k)
            live_k = np.tile(live, self.k)
            setdyn(f"pl_T{ci}", -g * MW)
            for j, job in enumerate(m.jobs):
                if job.heat_share[ci] > 0:
                    for k in range(len(job.widths_kw)):
                        setdyn(f"pl_x{ci}_{j}_{k}", -a * job.heat_share[ci])
            rlo[rblk(f"pl{ci}", self.k * n)] = np.where(live_k, (h + a * heat_firm) * MW, -INF)
            lo[blk(f"T{ci}")] = p.t_lo[ci]
            hi[blk(f"T{ci}")] = p.t_hi[ci]
            c[blk(f"T{ci}")] = SUPPLY_TIEBREAK * dt
            ramp = lp.ramp_c_per_h * dt
            r = rblk(f"tr{ci}")
            rlo[r], rhi[r] = -ramp, ramp
            rlo[row[f"tr{ci}"]] += p.t_prev[ci]
            rhi[row[f"tr{ci}"]] += p.t_prev[ci]
            rhi[rblk(f"chip{ci}")] = lp.chip_plan_c - lp.rho_c_per_kw * p.heat_firm_kw[ci]
            if not lp.chiller:
                itd = (lp.params[plant.P_DT] + lp.params[plant.P_APPROACH]) / lp.params[plant.P_HEAT]
                floor = p.ambient_c - lp.params[plant.P_DT] + itd * p.heat_firm_kw[ci]
                rlo[rblk(f"fc{ci}")] = np.where(live, floor, -INF)
        if self.has_demand:
            nb = self.bill_slots
            bs = p.bill_slot
            if bs.max(initial=-1) >= nb:
                msg = f"the horizon spans {bs.max() + 1} billing periods; the LP has {nb} slots"
                raise ValueError(msg)
            w = -(sig.demand_mask & live).astype(np.float64)
            setdyn("pk_P", (bs[None, :] == np.arange(nb)[:, None]).astype(np.float64).reshape(-1))
            setdyn("pk_imp", w)
            setdyn("pk_impx", w)
            rlo[rblk("pimp")] = 0.0
            a = col["P"]
            used = np.isin(np.arange(nb), bs[live])
            c[a:a + nb] = np.where(used, 1e3 * m.spec.tariff.demand_charge_per_kw, 0.0)
            if p.n and not p.bill_new[0]:
                lo[a] = p.peak0_kw * MW
                offset -= m.spec.tariff.demand_charge_per_kw * p.peak0_kw  # already billed: sunk
        return LPArrays(c, lo, hi, rlo, rhi, data, offset, int(p.t0_ns))

    def value(self, x: np.ndarray, name: str) -> np.ndarray:
        """Solution block ``name`` (e.g. ``"imp"``, ``"x0"`` (segments × steps), ``"T1"``) in LP units."""
        a, size = self.col.blocks[name]
        return x[a:a + size]
