# mailtrawl — every target creates or updates .venv as needed; a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PORT ?= 8443
PYTEST_WORKERS ?= 2

.PHONY: demo test bench lint format venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: venv
	$(BIN)/mailtrawl emulator serve --users 300 --messages-per-mailbox 40 --campaigns 6 --seed 7 \
		--port $(DEMO_PORT) --banner

test: venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

bench: venv
	$(BIN)/python -m bench.run

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
