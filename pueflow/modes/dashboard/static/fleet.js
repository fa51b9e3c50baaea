// Fleet overview: per site, jurisdiction and fleet, PUE / REF / CUE / hourly CFE for
// today, 30 days and the year to date (all computed server-side as ratios of sums).
"use strict";
const PERIOD_NAMES = {today: "today", "30d": "30 days", ytd: "year to date"};
const KPIS = [
  ["pue", "PUE [-]", v => PF.fmt(v, 3)],
  ["ref", "REF", v => PF.pct(v, 1)],
  ["cue_kg_per_kwh", "CUE [kg CO₂/kWh]", v => PF.fmt(v, 3)],
  ["cfe_hourly", "hourly CFE", v => PF.pct(v, 1)],
];

function head(table, first, periods) {
  let top = `<tr><th rowspan="2">${first}</th>`;
  let sub = "<tr>";
  for (const p of periods) {
    top += `<th class="grp" colspan="${KPIS.length}">${PERIOD_NAMES[p]}</th>`;
    KPIS.forEach(([, label], i) => { sub += `<th${i === 0 ? ' class="first"' : ""}>${label}</th>`; });
  }
  table.querySelector("thead").innerHTML = top + "</tr>" + sub + "</tr>";
}

function cells(entry, periods, attrs) {
  let html = "";
  for (const p of periods) {
    KPIS.forEach(([k, , f], i) => {
      html += `<td${i === 0 ? ' class="first"' : ""} data-period="${p}" data-kpi="${k}" ${attrs}>${f(entry[p][k])}</td>`;
    });
  }
  return html;
}

async function draw() {
  const d = await PF.json("/api/fleet");
  document.getElementById("asof").textContent = d.as_of ? "as of " + d.as_of.replace("T", " ").slice(0, 16) + " UTC" : "store is empty";
  const sites = document.getElementById("sites");
  head(sites, "site", d.periods);
  sites.querySelector("tbody").innerHTML = d.sites.map(s =>
    `<tr data-site="${s.site}"><td class="l"><a href="/site/${encodeURIComponent(s.site)}">${s.site}</a> <span class="muted">${s.jurisdiction}</span></td>` +
    cells(s, d.periods, `data-site="${s.site}"`) + "</tr>").join("");
  const groups = document.getElementById("groups");
  head(groups, "scope", d.periods);
  const rows = d.jurisdictions.map(j => [j.jurisdiction, j]);
  if (d.fleet && d.fleet.ytd) rows.push(["fleet", d.fleet]);
  groups.querySelector("tbody").innerHTML = rows.map(([name, e]) =>
    `<tr><td class="l">${name}</td>` + cells(e, d.periods, `data-scope="${name}"`) + "</tr>").join("");

  const names = d.sites.map(s => s.site);
  const bars = d.periods.map(p => ({type: "bar", name: PERIOD_NAMES[p], x: names, y: d.sites.map(s => s[p].pue),
    hovertemplate: "%{x}: PUE %{y:.3f}<extra>" + PERIOD_NAMES[p] + "</extra>"}));
  const pues = d.sites.flatMap(s => d.periods.map(p => s[p].pue)).filter(v => v !== null);
  const lo = pues.length ? Math.max(1, Math.min(...pues) - 0.02) : 1;
  await Plotly.react("chart-pue", bars, PF.layout("PUE [-] (facility / IT energy)", "site",
    {barmode: "group", yaxis: {title: {text: "PUE [-] (facility / IT energy)"}, range: [lo, pues.length ? Math.max(...pues) + 0.02 : 2]}}), PF.config);
  const ren = [["ref", "REF (annual energy share)"], ["cfe_hourly", "hourly-matched CFE share"]].map(([k, label]) => ({
    type: "bar", name: label, x: names, y: d.sites.map(s => s.ytd[k] === null ? null : 100 * s.ytd[k]),
    hovertemplate: "%{x}: %{y:.1f} %<extra>" + label + "</extra>"}));
  await Plotly.react("chart-ren", ren, PF.layout("share of facility energy [%]", "site",
    {barmode: "group", yaxis: {title: {text: "share of facility energy [%]"}, range: [0, 105]}}), PF.config);
}

async function main() {
  try {
    await draw();
    PF.done(true);
  } catch (e) {
    document.getElementById("error").textContent = String(e);
    console.error(e);
    PF.done(false);
  }
  PF.watch(async () => { try { await draw(); PF.done(true); } catch (e) { console.error(e); } });
}
main();
