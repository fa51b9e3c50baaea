"""The EED report as printable HTML: one A4 page per site, no script, no external style."""

from __future__ import annotations

from html import escape
from typing import Any

#: Gaps and events listed on a page before "and N more" (the JSON form has them all).
MAX_LISTED = 8

_FIGURES = (("total_energy_kwh", "Total energy consumption", "kWh", ",.0f"),
            ("it_energy_kwh", "IT equipment energy", "kWh", ",.0f"),
            ("water_input_m3", "Water input", "m³", ",.1f"),
            ("reused_heat_kwh", "Reused heat", "kWh", ",.0f"),
            ("renewable_onsite_kwh", "Renewable energy, on site (PV, wind)", "kWh", ",.0f"),
            ("renewable_contracted_kwh", "Renewable energy, contracted (PPA, GoO)", "kWh", ",.0f"))
_KPIS = (("pue", "PUE (total / IT energy)", "", ".3f"),
         ("wue_l_per_kwh", "WUE (water / IT energy)", "L/kWh", ".3f"),
         ("erf", "ERF (reused heat / total energy)", "", ".3f"),
         ("ref", "REF (renewable / total energy)", "", ".3f"))

_STYLE = """
@page { size: A4; margin: 14mm; }
body { font: 10pt/1.35 system-ui, sans-serif; color: #111; margin: 0; }
.page { page-break-after: always; padding: 8px 4px; }
.page:last-child { page-break-after: auto; }
h1 { font-size: 15pt; margin: 0 0 2px; } h2 { font-size: 11pt; margin: 12px 0 4px; }
.sub { color: #555; margin-bottom: 8px; }
table { border-collapse: collapse; width: 100%; }
td, th { border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.warn { color: #a15c00; } .muted { color: #777; } small { color: #555; }
"""


def _fmt(v: Any, spec: str) -> str:
    return "not metered" if v is None else format(v, spec)


def _events(evs: list[dict[str, Any]]) -> str:
    """Events summed per kind: ``gap ×3 on 2 series (pv-inv-2/power_kw, ...)``."""
    if not evs:
        return '<span class="muted">none</span>'
    kinds: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        kinds.setdefault(e["kind"], []).append(e)
    items = []
    for kind, es in sorted(kinds.items()):
        names = ", ".join(escape(f"{e['device']}/{e['point']}") for e in es[:3])
        more = ", ..." if len(es) > 3 else ""
        items.append(f"{escape(kind)} ×{sum(e['count'] for e in es)} on {len(es)} series ({names}{more})")
    return '<span class="warn">' + "; ".join(items) + "</span>"


def _page(r: dict[str, Any]) -> str:
    p = r["period"]
    head = (f'<h1>{escape(r["site"])} — EU data-centre report</h1>'
            f'<div class="sub">Delegated Regulation (EU) 2024/1364 · jurisdiction {escape(r["jurisdiction"])} · '
            f'period {escape(p["start"][:10])} to {escape(p["end"][:10])} (local time, end exclusive) · '
            f'installed IT power {r["installed_it_kw"]:,.0f} kW</div>')
    if not r["in_scope"]:
        return f'<section class="page">{head}<p><b>Not in scope:</b> {escape(r["reason"])}.</p></section>'
    ev = r["events"]
    rows = "".join(f'<tr><td>{name}</td><td class="n">{_fmt(r["figures"][k], spec)}</td><td>{unit}</td>'
                   f'<td>{_events(ev.get(k, []))}</td></tr>' for k, name, unit, spec in _FIGURES)
    kpis = "".join(f'<tr><td>{name}</td><td class="n">{_fmt(r["kpis"][k], spec)}</td><td>{unit}</td>'
                   f'<td>{_events(ev.get(k, []))}</td></tr>' for k, name, unit, spec in _KPIS)
    rn = r["renewable"]
    cfe = r["cfe_hourly"]
    c = r["coverage"]
    gaps = c["gaps"]
    gap_items = "".join(f'<li>{escape(g["start"][:16])} – {escape(g["end"][:16])}: {g["hours"]} h, '
                        f'{100 * g["coverage"]:.1f} % covered</li>' for g in gaps[:MAX_LISTED])
    if len(gaps) > MAX_LISTED:
        gap_items += f"<li>and {len(gaps) - MAX_LISTED} more (see the JSON form)</li>"
    other = ev.get("other", [])
    return f"""<section class="page">{head}
<h2>Indicators (sums over the period)</h2>
<table><tr><th>Indicator</th><th>Value</th><th>Unit</th><th>Quality events affecting it</th></tr>{rows}</table>
<h2>Key performance indicators (ratios of the period sums)</h2>
<table><tr><th>KPI</th><th>Value</th><th>Unit</th><th>Quality events affecting it</th></tr>{kpis}</table>
<h2>Renewable energy</h2>
<p>PV {rn["pv_kwh"]:,.0f} kWh · wind {rn["wind_kwh"]:,.0f} kWh · PPA (metered) {rn["ppa_kwh"]:,.0f} kWh ·
guarantees of origin {rn["guarantees_of_origin_kwh"]:,.0f} kWh.
Hourly-matched carbon-free share (on site + PPA, per hour, energy-weighted):
<b>{"n/a" if cfe is None else f"{100 * cfe:.1f} %"}</b>.</p>
<h2>Metering coverage</h2>
<p>Share of the period metered: <b>{100 * c["metered_share"]:.2f} %</b>;
hours completely metered (≥ {100 * c["complete_threshold"]:.0f} % of readings):
<b>{100 * c["complete_share"]:.2f} %</b>; {c["days_in_store"]} daily rows.
{len(gaps)} gap(s):</p><ul>{gap_items or "<li>none</li>"}</ul>
{f"<p><small>Other quality events: {_events(other)}</small></p>" if other else ""}
</section>"""


def render_html(reports: list[dict[str, Any]]) -> str:
    """Render the report as one HTML document, one printable page per site."""
    pages = "\n".join(_page(r) for r in reports)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>EU data-centre report</title><style>{_STYLE}</style></head><body>{pages}</body></html>")
