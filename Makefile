# Fresh machine: `make run` (paper trading BTCUSD,ETHUSD on the embedded venue) or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
STAMP_BENCH := $(VENV)/.installed-bench
SYMBOLS ?= BTCUSD,ETHUSD
RUN_DIR ?= run

.PHONY: run test check bench loadtest soak clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

$(STAMP_BENCH): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@ $(STAMP_TEST) $(STAMP_RUN)

run: $(STAMP_RUN)
	$(VENV)/bin/orchestrate --symbols $(SYMBOLS) --run-dir $(RUN_DIR)

test: $(STAMP_TEST)
	$(PY) -m pytest -q

# The long end-to-end tests (marker `long`): kill storms, paper = backtest parity, multi-driver
# optimize studies, and slow ones whose coverage make test has elsewhere. CI runs them after `make test`.
test-long: $(STAMP_TEST)
	$(PY) -m pytest -q -m long

# Lint (ruff: pyflakes, pycodestyle, import order, bugbear, pyupgrade) and types (mypy, strict on shared/).
check: $(STAMP_TEST)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP_BENCH)
	$(PY) -m benchmarks

loadtest: $(STAMP_BENCH)
# Issue 16's sequence: 10-500 symbols at 2 ticks/s and 1,000 at 1 tick/s, each symbol's ticks at its
# own time (independent arrivals), plus the burst case at 200 symbols (every market's tick in 8 bursts a
# quarter bar: lockstep). Reports (markdown with the README's table, JSON, latency/CPU/memory curves)
# go to run-loadtest/results/.
	$(VENV)/bin/orchestrate loadtest --symbols 10,100,200,200:lockstep,500,1000@1 --tick-rate 2 --duration 20 --keep-going \
		--run-dir run-loadtest

soak: $(STAMP_BENCH)
	$(VENV)/bin/orchestrate soak --symbols 50 --duration 1800 --run-dir run-soak

clean:
	rm -rf $(VENV) run run-loadtest run-soak .pytest_cache
