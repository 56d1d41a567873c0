# The two set-up commands are `make run` and `make test`; both create the venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint bench browser-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Serve on http://127.0.0.1:8000 with SQLite and demo accounts (local use only).
run: install
	mkdir -p var
	$(BIN)/medchat db upgrade
	$(BIN)/medchat demo
	@echo "Serving on http://127.0.0.1:8000 (Ctrl-C stops)"
	MEDCHAT_BIND=127.0.0.1:8000 MEDCHAT_WORKERS=$${MEDCHAT_WORKERS:-2} \
		$(BIN)/gunicorn -c deploy/gunicorn.conf.py wsgi:app

## The static checks, then the whole suite: SQLite always, PostgreSQL too when
## MEDCHAT_TEST_DATABASE_URL is set.
test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

## Every static check CI runs (`make test` runs them first): lint and format, the layers,
## types ([tool.mypy]) and bandit's security lint ([tool.bandit]) of the package.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/bandit -c pyproject.toml -r medchat access_control -q

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

## Debian's chromium and chromium-driver for the console's browser tests (needs root).
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are present"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts
