# Every target works as the first command on a fresh machine: it creates .venv and installs
# exactly the locked set (requirements/*.lock, hashes checked); the stamp is refreshed whenever
# the lock, pyproject.toml, setup.py or the C source changes. `make lock` refreshes the locks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
LATEST_VENV := .venv-latest
LOCK := requirements/dev.lock
PEERS_LOCK := requirements/peers.lock
RUNTIME_LOCK := requirements/runtime.lock
FUZZ_LOCK := requirements/fuzz.lock
RUN_SECONDS ?= 20
# pip reads no user or site index configuration here: the lock names every file by hash.
PIP_ENV := PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_DISABLE_PIP_VERSION_CHECK=1
# uv pip compile: one universal lock (every platform and Python 3.11+), hashes for every file.
UV_COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" pyproject.toml requirements/build.in

.PHONY: run test test-latest bench bench-peers lock lint format clean fuzz

# Install the locked set first (no resolution, no network choice left), then hftkit itself
# without dependencies and without an isolated build (the build backend is in the lock too).
$(STAMP): $(LOCK) pyproject.toml setup.py src/hftkit/_native.c
	$(PYTHON) -m venv $(VENV)
	$(PIP_ENV) $(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PIP_ENV) $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hftkit run --seconds $(RUN_SECONDS) --metrics-port 0

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The next upgrade in one command: the newest versions pyproject.toml allows, in a scratch venv,
# through the same lint and suite. Not run by CI; green here means `make lock` is safe to take.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(PIP_ENV) $(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(PIP_ENV) $(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST_VENV)/bin/python -m hftkit.bench.lock $(LOCK) || true
	$(LATEST_VENV)/bin/ruff check src tests
	HFTKIT_UNLOCKED=1 $(LATEST_VENV)/bin/python -m pytest -q -p no:cacheprovider

# Refresh every lock from pyproject.toml (newest allowed versions), then `make test` and
# `make bench` before committing: the lock changes only together with the figures it was tested on.
# The dev lock is resolved first; the runtime and peers locks are held to its versions, so hftkit
# runs on the same set in production, in the tests and beside the benchmark peers.
lock: $(STAMP)
	$(UV_COMPILE) --extra dev -c requirements/peers-compat.txt -o $(LOCK)
	$(UV_COMPILE) --extra postgres --extra redis -c $(LOCK) -o $(RUNTIME_LOCK)
	$(UV_COMPILE) --extra dev --extra peers -c $(LOCK) -o $(PEERS_LOCK)
	$(UV_COMPILE) --extra dev --extra fuzz -c $(LOCK) -o $(FUZZ_LOCK)

bench: $(STAMP)
	$(BIN)/hftkit bench all

# Peers (cryptofeed's order-book, NautilusTrader, ccxt, aiolimiter) live in their own
# environment with hftkit installed beside them; they are never hftkit dependencies.
$(PEERS_STAMP): $(PEERS_LOCK) pyproject.toml setup.py src/hftkit/_native.c
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PIP_ENV) $(PEERS_VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(PEERS_LOCK)
	$(PIP_ENV) $(PEERS_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(PEERS_STAMP)

# The peers' runners are checked first (tests/peers: collected only with HFTKIT_PEERS=1).
bench-peers: $(PEERS_STAMP)
	HFTKIT_PEERS=1 $(PEERS_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/peers
	$(PEERS_VENV)/bin/hftkit bench all

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(LATEST_VENV) build src/*.egg-info .pytest_cache

# Longer, coverage-guided runs of the fuzz suite's targets (tests/fuzz/atheris_targets.py).
# atheris comes from its own lock (the dev set plus atheris); FUZZ_RUNS inputs per target.
FUZZ_RUNS ?= 20000
FUZZ_TARGETS := binance_stream binance_depth binance_user_data binance_rest_body binance_rest_headers \
	thalex_rpc thalex_notification

fuzz: $(STAMP)
	$(PIP_ENV) $(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(FUZZ_LOCK)
	for target in $(FUZZ_TARGETS); do \
		$(BIN)/python tests/fuzz/atheris_targets.py $$target -atheris_runs=$(FUZZ_RUNS) || exit 1; \
	done
