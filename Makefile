# mailtrawl — every target creates or updates .venv as needed; a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PORT ?= 8443
PYTEST_WORKERS ?= 2

.PHONY: demo test bench lint format venv clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: venv
	$(BIN)/mailtrawl demo --port $(DEMO_PORT)

# Browser tests use Debian's Chromium (Playwright drives it; it downloads no browser of its own).
# Installed when missing and when we may (root); otherwise the browser tests skip, or fail in CI.
CHROMIUM := /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium for the browser tests" >&2; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
				>/tmp/mailtrawl-chromium-install.log 2>&1 \
				|| echo "could not install chromium (see /tmp/mailtrawl-chromium-install.log)" >&2; \
		else \
			echo "chromium is missing: install it (apt-get install chromium) to run the browser tests" >&2; \
		fi; \
	}

test: venv browser
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
