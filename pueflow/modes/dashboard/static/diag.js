// Loaded first: records script errors, console errors and every URL the page fetched into
// #diag (data-errors, data-resources), so a headless browser's DOM dump shows them.
"use strict";
window.__pfErrors = [];
(function () {
  const orig = console.error;
  console.error = function () {
    window.__pfErrors.push(Array.prototype.map.call(arguments, String).join(" "));
    return orig.apply(console, arguments);
  };
  window.addEventListener("error", e => {
    const t = e.target;
    window.__pfErrors.push(e.message ? "error: " + e.message : "failed to load " + ((t && (t.src || t.href)) || "?"));
  }, true);
  window.addEventListener("unhandledrejection", e => window.__pfErrors.push("rejection: " + e.reason));
})();
window.__pfReport = function () {
  const d = document.getElementById("diag");
  const urls = performance.getEntriesByType("resource").map(r => r.name);
  urls.push(location.href);
  d.dataset.errors = JSON.stringify(window.__pfErrors);
  d.dataset.resources = JSON.stringify(urls);
};
