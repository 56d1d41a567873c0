# The two set-up commands are `make run` and `make test`; both create the venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test mutation lint bench devbench browser-deps nginx-deps psql-deps lock clean

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
## MEDCHAT_TEST_DATABASE_URL is set. pytest-xdist runs it on every core (TEST_WORKERS=auto;
## TEST_WORKERS=0 runs it in one process): each test has its own databases, key directory and
## rate-limit prefix, so workers share nothing. --dist worksteal: a worker that runs out of
## tests takes some of another's queue instead of idling (the contract runs take a minute each):
## on 2 cores 812 s against 913-947 s with xdist's default (docs/testing.md).
TEST_WORKERS ?= auto
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

## Mutation testing of the security core (tools/mutation.py, docs/testing.md): mutmut over each
## module of [tool.medchat-mutation.modules] with its own tests, 2 workers each, two modules at
## a time (about 15 minutes on 2 cores); prints the score
## table and fails when a module is below its threshold. The modules marked `postgresql` need
## MEDCHAT_TEST_DATABASE_URL. `make mutation MUTATION_ARGS="tokens --survivors"` runs one.
mutation: install
	$(BIN)/python tools/mutation.py $(MUTATION_ARGS)

## requirements.lock: the production dependencies of pyproject.toml (and the setuptools that
## builds medchat), pinned with the hash of every file, for every platform (deploy/Dockerfile
## installs it with --require-hashes). Run after changing [project].dependencies; needs the index.
lock: install
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml deploy/build-requirements.in --universal \
		--python-version 3.11 --generate-hashes --custom-compile-command 'make lock' \
		-o requirements.lock

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

## The benchmark's bundle for a lent machine without network, in .devbench (bench/README.md,
## "On a lent machine"): ../shared/devbench/build.sh with the lock's versions and a wheel for
## each dependency the index has only as source. Needs the index.
devbench: install
	PYTHON=$(BIN)/python bash tools/devbench-bundle.sh .devbench

## Debian's chromium and chromium-driver for the console's browser tests (needs root).
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are present"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

## Debian's nginx, for the `nginx -t` check of deploy/nginx/medchat.conf (needs root).
nginx-deps:
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then \
		echo "nginx is present"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx; \
	fi

## Debian's psql, the superuser's client deploy/bootstrap.sh runs (tests/e2e/test_bootstrap.py).
psql-deps:
	@if command -v psql >/dev/null; then \
		echo "psql is present"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-client; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts
