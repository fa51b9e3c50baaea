// Shared helpers of the pueflow pages (served from the package).
"use strict";
const PF = {
  fmt(v, digits) { return (v === null || v === undefined) ? "–" : Number(v).toFixed(digits); },
  pct(v, digits) { return (v === null || v === undefined) ? "–" : (100 * v).toFixed(digits) + " %"; },
  async json(url) {
    const r = await fetch(url, {cache: "no-store"});
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  },
  // redraw when the store changes (a running consume writes partitions)
  watch(redraw, everyMs) {
    let last = null;
    setInterval(async () => {
      try {
        const v = (await PF.json("/api/version")).version;
        if (last !== null && v !== last) await redraw();
        last = v;
      } catch (e) { /* the server may be restarting: try again next tick */ }
    }, everyMs || 10000);
    PF.json("/api/version").then(v => { last = v.version; }).catch(() => {});
  },
  layout(ytitle, xtitle, extra) {
    return Object.assign({
      margin: {l: 60, r: 20, t: 10, b: 45}, hovermode: "x unified",
      legend: {orientation: "h", y: 1.12}, xaxis: {title: {text: xtitle}},
      yaxis: {title: {text: ytitle}}, font: {size: 12},
    }, extra || {});
  },
  config: {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage"]},
  done(ok) {
    if (window.__pfReport) window.__pfReport();
    document.body.dataset.ready = ok ? "1" : "error";
  },
};
