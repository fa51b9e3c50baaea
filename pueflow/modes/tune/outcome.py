"""The outcome of a tuning run in plain words: what the best setting saves, why the oracle is lower.

Used by the HTML report and the terminal summary alike. Costs are the realised cost at the
configured prices (:meth:`~pueflow.modes.tune.objective.Evaluator.metrics`), which is
the sum of the parts :data:`COST_PARTS` names, so the gap to the oracle splits into them
exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Parts of the realised cost [currency] (metric key -> what it is), as the gap names them.
COST_PARTS = {
    "demand_cost": "the demand charge on the billed peak",
    "energy_cost": "the energy bill",
    "carbon_cost": "CO2 at the carbon price",
    "wear_cost": "battery wear",
    "terminal_shortfall_cost": "the battery left below its end-of-period target",
    "other_cost": "demand-response penalties less export revenue",
}
#: Parts smaller than this share of the gap are left out of the sentence.
MINOR_SHARE = 0.05


def money(v: float, currency: str) -> str:
    """``v`` [currency] for a sentence: whole units from 100 up, else two decimals."""
    return (f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}") + f" {currency}"


def score_unit(objective: str, currency: str) -> str:
    """Name the unit of a score: the currency for ``cost``, kg for ``co2``, none when weighted."""
    return {"cost": currency, "co2": "kg CO2"}.get(objective, "")


def _pick(comps: list[Any], name: str) -> dict[str, Any]:
    """Metrics of ``name`` by period."""
    return {c.period: c.metrics for c in comps if c.name == name}


def _period(*by_period: dict[str, Any]) -> str | None:
    """Choose ``validation`` when every setting has it, else ``train``, else None."""
    for period in ("validation", "train"):
        if all(period in b for b in by_period):
            return period
    return None


def savings_line(comps: list[Any], currency: str, objective: str = "cost") -> str | None:
    """"Best setting saves X (Y %) on validation against the configured settings", or None.

    ``comps`` are :class:`~pueflow.modes.tune.report.Comparison` rows; the validation
    period is used when both settings ran on it, else the train period.
    """
    best, conf = _pick(comps, "best"), _pick(comps, "configured")
    period = _period(best, conf)
    if period is None:
        return None
    b, c = best[period]["cost"], conf[period]["cost"]
    saved = c - b
    pct = f" ({abs(saved) / abs(c) * 100:.1f} %)" if c else ""
    verb = "saves" if saved >= 0 else "costs"
    more = "" if saved >= 0 else " more"
    line = (f"Best setting {verb} {money(abs(saved), currency)}{pct}{more} on {period} against the "
            f"configured settings: {money(c, currency)} -> {money(b, currency)}.")
    if objective != "cost":
        co2 = conf[period]["co2_t"] - best[period]["co2_t"]
        line += f" CO2: {'-' if co2 >= 0 else '+'}{abs(co2):,.2f} t."
    return line


def oracle_gap_line(comps: list[Any], currency: str) -> str | None:
    """Why the oracle bound is lower than the best setting (else the configured), part by part."""
    mine = _pick(comps, "best") or _pick(comps, "configured")
    oracle = _pick(comps, "oracle")
    period = _period(mine, oracle)
    if period is None:
        return None
    m, o = mine[period], oracle[period]
    gap = m["cost"] - o["cost"]
    if not all(k in m and k in o for k in COST_PARTS):
        return None  # metrics of a study from an older pueflow
    if gap <= 1e-9 * max(abs(m["cost"]), 1.0):
        return f"The best setting matches the perfect-foresight oracle bound on {period}."
    parts = sorted(((m[k] - o[k], k) for k in COST_PARTS), key=lambda dk: -abs(dk[0]))
    top_d, top = parts[0]
    line = (f"The oracle bound costs {money(gap, currency)} ({gap / abs(m['cost']) * 100:.1f} %) less on "
            f"{period}. It knows the whole period in advance; no real controller does. "
            f"Most of the gap is {COST_PARTS[top]}: {money(top_d, currency)} ({top_d / gap * 100:.0f} %)")
    if top == "demand_cost":
        line += (f", billed peak {m['peak_kw']:,.0f} kW against the oracle's {o['peak_kw']:,.0f} kW "
                 f"(knowing every future hour, it charges the battery and shifts work ahead of the peak)")
    more = [f"{COST_PARTS[k]} {money(d, currency)}" for d, k in parts[1:] if d >= MINOR_SHARE * gap]
    less = [f"{COST_PARTS[k]} {money(-d, currency)}" for d, k in parts[1:] if -d >= MINOR_SHARE * gap]
    if more:
        line += f"; also {', '.join(more)}"
    if less:
        line += f"; the oracle pays more for {', '.join(less)}"
    return line + "."


def storage_label(url: str, file: Path | None, out: Path) -> str:
    """Name the study storage for a report, without an absolute path of this machine.

    ``file`` is the storage's local file (None for a database server, whose ``url`` is
    shown with its password already redacted): shown relative to ``out`` when inside it,
    else by its name.
    """
    if file is None:
        return url
    try:
        rel = file.resolve().relative_to(out.resolve())
    except ValueError:
        return f"{file.name} (outside the output folder)"
    return f"{rel.as_posix()} in the output folder"

