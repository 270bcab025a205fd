# Every target builds its own virtual environment in .venv/ from requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint types pytest demo run emulator check lock clean bench chaos

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (found " + sys.version.split()[0] + ")")'
	@echo "==> [1/3] creating the virtual environment in $(VENV)/ (first use only)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] installing the pinned packages from requirements.lock (a minute or two; pip shows each package)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on --require-hashes -r requirements.lock
	@echo "==> [3/3] installing the bot itself (editable)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)
	@echo "==> the environment is ready; later runs skip these steps"

test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check bot cogs tests bench
	$(BIN)/ruff format --check bot cogs tests bench

types: $(STAMP)
	$(BIN)/mypy

# With TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) the store, ledger
# and process tests also run on PostgreSQL; without it they are skipped with that reason.
pytest: $(STAMP)
	@echo "==> PostgreSQL variants: $(if $(TEST_DATABASE_URL),on (TEST_DATABASE_URL is set),skipped (set TEST_DATABASE_URL to run them))"
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/astria-bot demo

run: $(STAMP)
	$(BIN)/astria-bot run

emulator: $(STAMP)
	$(BIN)/astria-bot emulator --port 8765

check: $(STAMP)
	$(BIN)/astria-bot check

# Benchmarks with baselines (not in CI; about 3 minutes on 2 cores). QUICK=1: a smoke run.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick)

# The chaos run: 200 jobs from 20 members, a faulty Astria emulator, three kill -9s; prints
# the figures (lost, duplicates, double posts, ledger difference: all 0). SEED=n, SHORT=1.
# PROCS=2: two bot processes (a shard each) on a fresh schema of the PostgreSQL that
# DATABASE_URL or TEST_DATABASE_URL names, each kill hitting either; also prints takeovers.
chaos: $(STAMP)
	$(BIN)/python -m bot.offline.chaos $(if $(SEED),--seed $(SEED)) $(if $(SHORT),--short) \
		$(if $(PROCS),--procs $(PROCS))

# Re-pin the whole tree after changing pyproject.toml's dependencies.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra test --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
