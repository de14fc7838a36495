# The README's commands. Each creates .venv and installs on first use, so a
# fresh machine needs only Python 3.11 and make.
#
# `make serve` speaks MCP on stdout, so everything else it prints (set-up
# included) goes to stderr, and recipe lines are not echoed. Nor does make
# announce directories there ("Entering directory", for `make -C DIR serve` or
# a make run from another make): GNU make 4.4 and later take this setting from
# here; older ones announce -C before reading any makefile, so a client that
# runs them passes --no-print-directory itself.
MAKEFLAGS += --no-print-directory
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench bench-quick clean postgres

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)" >&2; exit 1; }
	@echo "setting up $(VENV) (first run only)" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet -e '.[server,dev]' >&2
	@touch $(STAMP)

serve: $(STAMP)
	@$(BIN)/actorstate serve

# A throwaway PostgreSQL cluster for trying the PostgreSQL store: the
# machine's own server binaries, in a temporary folder, as an unprivileged
# user (actorstate-pg when run as root). Prints its URL (use it as --db);
# Ctrl-C stops it and deletes the folder. ARGS="--port 5433" picks the port.
postgres: $(STAMP)
	@$(BIN)/python -m actorstate.store.postgres_cluster $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check actorstate tests benchmarks conformance
	$(BIN)/mypy
	$(BIN)/lint-imports

lint: $(STAMP)
	$(BIN)/ruff check actorstate tests benchmarks conformance
	$(BIN)/mypy
	$(BIN)/lint-imports

# The benchmark suite: every scenario, 5 repetitions each (about 45 minutes
# on 2 cores), into results/<timestamp>/. The stdio scenario installs its
# Node.js baseline itself (npm ci, first run only) when node and npm are on
# PATH, and reports that one server skipped otherwise. bench-quick runs
# every scenario briefly and checks the answers (under 90 s).
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick $(ARGS)

# The MCP conformance suite (@modelcontextprotocol/conformance, pinned in
# conformance/package.json and installed there by npm ci on first use)
# against `actorstate serve --http` (seconds). Fails on a check that is not
# in conformance/expected-failures.json and on an entry there that no longer
# fails. Without node and npm on PATH it prints why and is skipped.
.PHONY: conformance
conformance: $(STAMP)
	@$(BIN)/python conformance/run.py $(ARGS); status=$$?; \
	if [ $$status -eq 3 ]; then echo "make conformance: skipped (reason above)" >&2; exit 0; fi; \
	exit $$status

clean:
	rm -rf $(VENV) build *.egg-info benchmarks/baselines/node/node_modules conformance/node_modules
