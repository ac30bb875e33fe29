# Two set-up commands on a fresh machine: `make demo` and `make test`. `make up` brings up the stack alone.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
# Python keeps its bytecode caches (in .venv and __pycache__/, both ignored): where the machine sets
# PYTHONDONTWRITEBYTECODE, each of the suite's hundreds of Python processes compiled every module it
# imports again (`orchestrator run`: 1.9 s of CPU to import instead of 0.6).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: lock up down demo demo-stop test test-slow ready checks unit unit-first integration-tests lane-integration-tests lane-stack-then-fault-tests lane-cluster-tests \
        stack-tests fault-tests stack-then-fault-tests lint docs schema \
        asyncapi-schema bench bench-cluster clean images stack-demo stack-down test-stack cluster-up cluster-down test-cluster cluster-tests

# The virtualenv is exactly requirements/dev.txt (the lock: `make lock`), then this repository's
# distributions from their directories without dependencies (the contract, contract/, first: the
# server and Director's client, clients/python, depend on it). uv installs it in a third of pip's time (pip is the fallback); its version
# is the lock's.
LOCAL_DISTS := -e ./contract -e ./clients/python -e .
$(VENV)/.installed: requirements/dev.txt requirements/build.txt pyproject.toml contract/pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	( $(PY) -m pip install -q "uv==$$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/dev.txt)" && \
	  $(VENV)/bin/uv pip sync -q --python $(PY) requirements/dev.txt && \
	  $(VENV)/bin/uv pip install -q --python $(PY) --no-deps --build-constraints requirements/build.txt $(LOCAL_DISTS) ) \
	|| ( $(PY) -m pip install -q -r requirements/dev.txt && $(PY) -m pip install -q --no-deps $(LOCAL_DISTS) )
	touch $@

# The lock files from the pyproject.toml files (scripts/lock.sh); UPGRADE=1 takes the newest versions.
lock: $(VENV)/.installed
	bash scripts/lock.sh

up:
	bash scripts/stack-up.sh

down: demo-stop
	bash scripts/stack-down.sh

demo: up $(VENV)/.installed
	bash scripts/demo.sh

demo-stop:
	bash scripts/demo.sh stop

# The production stack (compose.yaml), built and deployed for real next to the local stack
# (deploy/stack-local.env: its own stack name, ports, network and sites root).
STACK_ENV ?= deploy/stack-local.env

images:
	bash scripts/images.sh

stack-demo: up $(VENV)/.installed
	STACK_ENV=$(STACK_ENV) bash scripts/stack.sh demo

stack-down:
	STACK_ENV=$(STACK_ENV) bash scripts/stack.sh down

test-stack: up $(VENV)/.installed stack-tests

# The whole suite on the real stack, cheapest first: docs/development.md ("The suite") says how it is
# scheduled and why.
# WITH_CLUSTER=1 (.ci/run) adds the cluster's tests as one more lane of the parallel phase.
TEST_WORKERS ?= 4
TEST_LANES := integration-tests stack-then-fault-tests $(if $(WITH_CLUSTER),cluster-tests)
test:
	$(MAKE) --no-print-directory -j$(words lint unit $(TEST_LANES)) --output-sync=target lint $(TEST_LANES:%=lane-%)

# The production stack's lane starts once the stack is up, beside the unit tests; the others wait
# for the unit tests too (a failing unit test stops them before they start).
lane-stack-then-fault-tests: ready
	$(MAKE) --no-print-directory stack-then-fault-tests
lane-integration-tests: ready unit-first
	$(MAKE) --no-print-directory integration-tests
lane-cluster-tests: ready unit-first
	$(MAKE) --no-print-directory cluster-tests

ready: up $(VENV)/.installed demo-stop

checks: lint unit-first

unit-first: $(VENV)/.installed asyncapi-schema
	$(PY) -m pytest tests/unit -q -x -n 2

# Faults too slow for make test's budget (a real dockerd stop and start: every container restarts).
test-slow: up $(VENV)/.installed
	$(PY) -m pytest tests/faults -q -ra -m slow

# Four workers, a module's tests on one of them, at most 8 (the cluster tests are worker 8, the fault tests 9): docs/development.md.
integration-tests:
	$(PY) -m pytest tests/resilience tests/integration tests/security tests/director -q -ra -n $(TEST_WORKERS) \
		--dist loadfile \
		-m 'not slow' --durations=12

stack-tests:
	$(PY) -m pytest tests/stack -q -ra

fault-tests:
	TEST_WORKER=9 $(PY) -m pytest tests/faults -q -ra -m 'not slow'

stack-then-fault-tests: stack-tests
	$(MAKE) --no-print-directory fault-tests

unit: $(VENV)/.installed asyncapi-schema
	$(PY) -m pytest tests/unit -q

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) scripts/docs --check
	$(PY) scripts/check_deps.py
	$(PY) scripts/sizes.py
	$(PY) scripts/subjects.py

# docs/configuration.md from Settings, docs/benchmarks.md from bench/results/ (scripts/docs/).
docs: $(VENV)/.installed
	$(PY) scripts/docs

schema: $(VENV)/.installed
	$(VENV)/bin/orchestrator schema export --dir schemas

# The official AsyncAPI 3.0.0 JSON Schema that tests/unit/test_asyncapi.py validates against (cached).
asyncapi-schema:
	bash scripts/fetch-asyncapi-schema.sh >/dev/null

# Everything on one node, then the cluster figures (bench-cluster below).
bench: up $(VENV)/.installed
	$(PY) bench/run.py
	$(MAKE) --no-print-directory bench-cluster

# The cluster figures (bench/cluster.py): two workers up, the section, the workers down again.
bench-cluster: up $(VENV)/.installed
	bash scripts/cluster-up.sh 2
	$(PY) bench/run.py --only cluster; status=$$?; bash scripts/cluster-down.sh; exit $$status

# The test cluster: CLUSTER_WORKERS extra engines on this machine as swarm workers (scripts/cluster.sh).
CLUSTER_WORKERS ?= 2
cluster-up: up
	bash scripts/cluster-up.sh $(CLUSTER_WORKERS)

cluster-down:
	bash scripts/cluster-down.sh

# tests/cluster on a manager and two workers (not in `make test`: docs/development.md). Its sites and
# nodes carry their own label (CLUSTER_TEST_LABEL), so the sites of tests running beside it stay on
# the manager. The cluster goes down afterwards whatever the outcome.
CLUSTER_TEST_LABEL ?= director.cluster-test
test-cluster: up $(VENV)/.installed
	$(MAKE) --no-print-directory cluster-tests

cluster-tests:
	SITE_NODE_LABEL=$(CLUSTER_TEST_LABEL) bash scripts/cluster-up.sh 2
	TEST_WORKER=8 CLUSTER_TEST_LABEL=$(CLUSTER_TEST_LABEL) $(PY) -m pytest tests/cluster -q -ra -m cluster; \
		status=$$?; bash scripts/cluster-down.sh; exit $$status

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
