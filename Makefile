# Every target works as the first command on a fresh machine: it creates .venv and installs
# what it needs (the stamp is refreshed whenever pyproject.toml, setup.py or the C source changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
RUN_SECONDS ?= 20

.PHONY: run test bench bench-peers lint format clean

$(STAMP): pyproject.toml setup.py src/hftkit/_native.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hftkit run --seconds $(RUN_SECONDS)

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/hftkit bench all

# Peers (cryptofeed's order-book, NautilusTrader, ccxt, aiolimiter) live in their own
# environment with hftkit installed beside them; they are never hftkit dependencies.
$(PEERS_STAMP): pyproject.toml setup.py src/hftkit/_native.c
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet -e '.[dev]' aiolimiter order-book ccxt nautilus_trader
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)
	$(PEERS_VENV)/bin/hftkit bench all

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) $(PEERS_VENV) build src/*.egg-info .pytest_cache
