// One site: KPIs, renewable shares, coverage, temperatures, quality events and setpoints
// over a chosen range. Times are the site's local wall-clock time (sent as such by the server).
"use strict";
const SITE = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1]);
const SUBSYSTEMS = ["chiller", "dry_cooler", "cdu_pump", "immersion", "crah", "tower"];
const SP_NAMES = {cooling_supply_c: "coolant supply temperature", grid_import_kw: "grid import", battery_kw: "battery power"};

function line(x, y, name, extra) {
  return Object.assign({type: "scatter", mode: "lines", x: x, y: y, name: name, connectgaps: false}, extra || {});
}

function query() {
  const q = new URLSearchParams();
  for (const k of ["from", "to", "window"]) {
    const v = document.getElementById(k).value;
    if (v) q.set(k, v);
  }
  return q.toString();
}

let drawn = 0;
async function plot(id, traces, layout) {
  await Plotly.react(id, traces, layout, PF.config);
  drawn += 1;
}

async function draw() {
  const d = await PF.json(`/api/site/${encodeURIComponent(SITE)}?${query()}`);
  drawn = 0;
  document.getElementById("title").textContent = `pueflow — ${d.site}`;
  document.title = `pueflow — ${d.site}`;
  document.getElementById("from").value = d.from;
  document.getElementById("to").value = d.to;
  const sel = document.getElementById("window");
  if (sel.options.length === 1) {
    for (const w of d.windows) sel.add(new Option(w, w));
  }
  document.getElementById("tzinfo").textContent = `times in ${d.timezone} (local); ${d.window} windows`;
  const xt = `local time (${d.timezone})`;
  const k = d.kpi;
  const pue = [];
  if (k.pue) pue.push(line(k.time, k.pue, "PUE", {line: {width: 2.5, color: "#16324f"}}));
  for (const s of SUBSYSTEMS) if (k["ppue_" + s]) pue.push(line(k.time, k["ppue_" + s], "pPUE " + s.replace("_", " ")));
  await plot("chart-pue", pue, PF.layout("PUE, pPUE [-]", xt));

  const ren = [];
  const pc = v => v === null ? null : 100 * v;
  if (d.cfe.time.length) {
    ren.push(line(d.cfe.time, d.cfe.cfe_hourly.map(pc), "carbon-free share of each hour", {line: {color: "#8ab17d", width: 1}}));
    ren.push(line(d.cfe.time, d.cfe.ref_so_far.map(pc), "REF, range so far", {line: {color: "#2a9d8f", width: 2.5}}));
    ren.push(line(d.cfe.time, d.cfe.cfe_so_far.map(pc), "hour-matched CFE, range so far", {line: {color: "#e76f51", width: 2.5, dash: "dot"}}));
  }
  await plot("chart-ren", ren, PF.layout("share of facility energy [%]", xt, {yaxis: {title: {text: "share of facility energy [%]"}, range: [0, 105]}}));

  const cov = k.coverage ? [line(k.time, k.coverage.map(v => v === null ? null : 100 * v), "coverage", {fill: "tozeroy", line: {color: "#577590"}})] : [];
  await plot("chart-cov", cov, PF.layout("readings covered [%]", xt, {yaxis: {title: {text: "readings covered [%]"}, range: [0, 105]}}));

  const temp = [];
  if (k.ambient_temp_c) temp.push(line(k.time, k.ambient_temp_c, "ambient", {line: {color: "#f4a261"}}));
  if (k.supply_temp_c) temp.push(line(k.time, k.supply_temp_c, "coolant supply", {line: {color: "#264653"}}));
  await plot("chart-temp", temp, PF.layout("temperature [°C]", xt));

  const ev = d.events;
  const evTrace = [{type: "scatter", mode: "markers", x: ev.time, y: ev.kind, name: "events",
    text: ev.series.map((s, i) => `${s} ×${ev.count[i]}`), marker: {symbol: "line-ns-open", size: 14, color: "#b00020"},
    hovertemplate: "%{x}<br>%{y}: %{text}<extra></extra>"}];
  await plot("chart-events", evTrace, PF.layout("event kind", xt, {hovermode: "closest", yaxis: {title: {text: "event kind"}, type: "category"},
    xaxis: {title: {text: xt}, range: k.time.length ? [k.time[0], k.time[k.time.length - 1]] : [d.from, d.to]},
    margin: {l: 130, r: 20, t: 10, b: 45}}));

  const box = document.getElementById("setpoints");
  const fields = Object.keys(d.setpoints);
  if (!fields.length) {
    box.innerHTML = '<p class="muted">no setpoints in this range</p>';
  } else {
    box.innerHTML = fields.map(f => `<div id="sp-${f}" class="chart small"></div>`).join("");
    for (const f of fields) {
      const s = d.setpoints[f];
      const tr = [line(s.time, s.setpoint, "published setpoint", {line: {shape: "hv", color: "#e76f51"}})];
      if (s.measured.length) tr.push(line(s.measured_time, s.measured, "measured", {line: {color: "#264653"}}));
      await plot(`sp-${f}`, tr, PF.layout(`${SP_NAMES[f] || f} [${s.unit}]`, xt));
    }
  }
  document.body.dataset.charts = String(drawn);
}

async function main() {
  // a link may carry the range: /site/<id>?from=YYYY-MM-DD&to=YYYY-MM-DD&window=1h
  const url = new URLSearchParams(location.search);
  for (const k of ["from", "to"]) if (url.get(k)) document.getElementById(k).value = url.get(k);
  if (url.get("window")) document.getElementById("window").add(new Option(url.get("window"), url.get("window"), true, true));
  document.getElementById("apply").addEventListener("click", async () => {
    try { await draw(); PF.done(true); } catch (e) { document.getElementById("error").textContent = String(e); PF.done(false); }
  });
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
