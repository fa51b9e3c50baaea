"""The operators' pages: a standard-library HTTP server, JSON endpoints, plotly.js pages.

The server listens on 127.0.0.1 by default.

Routes: ``/`` fleet overview, ``/site/<id>`` one site, ``/api/fleet``, ``/api/site/<id>?from=
YYYY-MM-DD&to=YYYY-MM-DD[&window=1h]``, ``/api/version`` (changes whenever a partition file
of the store is written: the pages poll it and redraw while ``consume`` writes), and
``/static/<file>``. Every script and style is served from here: the pages' own files from
this package, ``plotly.min.js`` from the installed ``plotly`` wheel's package data (the
``[dashboard]`` extra); nothing is fetched from the internet.
"""

from __future__ import annotations

import importlib.util
import json
import os
from datetime import date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

from pueflow.config.models import Config
from pueflow.exceptions import PueflowError
from pueflow.modes.dashboard.data import as_of, fleet_overview, site_series
from pueflow.modes.dashboard.store import latest_date, pick_run, scan, store_paths

STATIC = Path(__file__).with_name("static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}


def plotly_js() -> Path:
    """Path of ``plotly.min.js`` in the installed ``plotly`` package (not imported).

    Raises
    ------
    PueflowError
        If ``plotly`` is not installed (``pip install 'pueflow[dashboard]'``).
    """
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        msg = "the dashboard draws with plotly.js from the 'plotly' package: pip install 'pueflow[dashboard]'"
        raise PueflowError(msg)
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        msg = f"{path} is missing: reinstall plotly (pip install --force-reinstall plotly)"
        raise PueflowError(msg)
    return path


class Dashboard:
    """The data side of the pages: config, store folders and the run shown.

    Parameters
    ----------
    cfg : Config
    stores : list of str, optional
        Store folders (default: the config's ``parquet`` sinks).
    run : str, optional
        ``run`` tag to show (default: production ``""``, else the store's only run).
    """

    def __init__(self, cfg: Config, stores: list[str] | None = None, run: str | None = None):
        self.cfg = cfg
        self.paths = store_paths(cfg, stores)
        self._run = run

    def scans(self) -> dict[str, Any]:
        """Fresh lazy scans of the store (new partition files are seen on every request)."""
        return {m: scan(self.paths, m) for m in ("kpi", "quality", "setpoint")}

    def run(self) -> str:
        """Return the ``run`` tag shown."""
        return pick_run(self.paths, self._run)

    def version(self) -> str:
        """Return a token that changes when any partition file changes (mtime, size)."""
        h = 0
        n = 0
        for root in self.paths:
            for dirpath, _dirs, files in os.walk(root):
                for f in files:
                    if f.endswith(".parquet"):
                        st = os.stat(os.path.join(dirpath, f))
                        h ^= hash((dirpath, f, st.st_mtime_ns, st.st_size))
                        n += 1
        return f"{n}-{h & 0xFFFFFFFFFFFF:x}"

    def fleet(self) -> dict[str, Any]:
        """JSON of the fleet page (:func:`~pueflow.modes.dashboard.data.fleet_overview`)."""
        s = self.scans()
        return fleet_overview(self.cfg, s["kpi"], self.run(), latest=latest_date(self.paths))

    def site(self, site_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """JSON of a site page; ``from``/``to`` local dates (default: the 7 days to the newest row)."""
        s = self.scans()
        run = self.run()
        site = self.cfg.site(site_id)
        end_t = as_of(s["kpi"], run, latest_date(self.paths))
        if "to" in query:
            end = date.fromisoformat(query["to"][0])
        elif end_t is not None:
            end = (end_t.astimezone(ZoneInfo(site.timezone))
                   - timedelta(microseconds=1)).date() + timedelta(days=1)
        else:
            end = datetime.now(ZoneInfo(site.timezone)).date() + timedelta(days=1)
        first = date.fromisoformat(query["from"][0]) if "from" in query else end - timedelta(days=7)
        if end <= first:
            msg = f"to = {end} is not after from = {first}; give from < to (local dates, to exclusive)"
            raise ValueError(msg)
        window = query.get("window", [None])[0] or None
        if window is not None and window not in self.cfg.pipeline.windows:
            msg = f"window = {window!r} is not one of the config's windows {self.cfg.pipeline.windows}"
            raise ValueError(msg)
        return site_series(self.cfg, site_id, s["kpi"], s["quality"], s["setpoint"], run, first, end, window)


def _handler(dash: Dashboard, plotly_path: Path) -> type[BaseHTTPRequestHandler]:
    files = {"plotly.min.js": plotly_path, **{p.name: p for p in STATIC.iterdir() if p.is_file()}}

    class Handler(BaseHTTPRequestHandler):
        server_version = "pueflow-dashboard"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per error only
            if args and str(args[1] if len(args) > 1 else "").startswith(("4", "5")):
                super().log_message(fmt, *args)

        def _send(self, status: int, body: bytes, ctype: str, cache: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj: Any, status: int = 200) -> None:
            self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.split("/") if p]
            try:
                if not parts:
                    self._file("fleet.html")
                elif parts[0] == "site" and len(parts) == 2:
                    dash.cfg.site(parts[1])
                    self._file("site.html")
                elif parts[0] == "static" and len(parts) == 2 and parts[1] in files:
                    self._file(parts[1], cache=True)
                elif parts == ["api", "fleet"]:
                    self._json(dash.fleet())
                elif parts == ["api", "version"]:
                    self._json({"version": dash.version()})
                elif parts[:2] == ["api", "site"] and len(parts) == 3:
                    self._json(dash.site(parts[2], parse_qs(url.query)))
                else:
                    self._json({"error": f"no page {url.path}"}, HTTPStatus.NOT_FOUND)
            except KeyError as exc:
                self._json({"error": str(exc).strip("\"'")}, HTTPStatus.NOT_FOUND)
            except (ValueError, PueflowError) as exc:
                self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)

        def _file(self, name: str, cache: bool = False) -> None:
            path = files[name]
            self._send(200, path.read_bytes(), _TYPES.get(path.suffix, "application/octet-stream"), cache)

    return Handler


def make_server(cfg: Config, stores: list[str] | None = None, *, host: str = "127.0.0.1", port: int = 8050,
                run: str | None = None) -> ThreadingHTTPServer:
    """Return a ready server (not yet serving); ``port`` 0 picks a free one (``server_port``)."""
    dash = Dashboard(cfg, stores, run)
    srv = ThreadingHTTPServer((host, port), _handler(dash, plotly_js()))
    srv.daemon_threads = True
    return srv


def serve(cfg: Config, stores: list[str] | None = None, *, host: str = "127.0.0.1", port: int = 8050,
          run: str | None = None) -> None:
    """Serve the pages at ``http://host:port/`` until interrupted (Ctrl-C)."""
    srv = make_server(cfg, stores, host=host, port=port, run=run)
    paths = ", ".join(str(p) for p in store_paths(cfg, stores))
    print(f"pueflow dashboard on http://{host}:{srv.server_port}/  (stores: {paths}; Ctrl-C stops)")
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
