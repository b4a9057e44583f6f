# The two commands of the README: `make run` and `make test`. Both install whatever is missing
# (idempotently, with progress) before they do their work.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_FOR_VENV ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
PROTOS := $(shell find proto -name '*.proto')
BUF := node_modules/.bin/buf

.PHONY: help install run demo test lint bench chaos image migrate generate lock clean

help:
	@echo "make run    install what is missing, then run the mesh until Ctrl-C"
	@echo "            (GOVMESH_SCALE=approvals-worker=2,records-api=2 runs more processes of a kind)"
	@echo "            (and a Prometheus at 127.0.0.1:9090 scraping them; GOVMESH_PROMETHEUS=0 leaves it out)"
	@echo "make demo   the seed's stories told by the mesh that \`make run\` is running (start that first, in another terminal), its figures beside the seed's"
	@echo "make test   install what is missing, then run linters and the whole suite"
	@echo "make lint   ruff, mypy, buf lint and buf breaking only"
	@echo "make chaos  every fault (broker, worker and api kill -9, the database gone 30 s, poison messages, doubled and reordered deliveries) on SQLite and PostgreSQL under load, then a 30-minute soak: lost, doubled and stuck counted (about 50 minutes)"
	@echo "make image  the one container image (deploy/image/Containerfile) from a Debian base made here, then its contents checked without running it"
	@echo "make bench  benchmarks beside bare baselines (gRPC latency, event publication, py-amqp against pika, case decisions, offered load and scale-out, crowd ingestion and level latency, proofs under concurrency and a million-entry access log, a million people seeded, 53 minutes of it: about 1.5 hours), then the verdict on every target"

$(STAMPS)/venv:
	@echo "==> creating the virtual environment $(VENV) with $(PYTHON_FOR_VENV)"
	@$(PYTHON_FOR_VENV) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "govmesh needs Python 3.11; set PYTHON_FOR_VENV=/path/to/python3.11")'
	@$(PYTHON_FOR_VENV) -m venv $(VENV)
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/packages: $(STAMPS)/venv pyproject.toml requirements.lock
	@echo "==> installing pinned Python packages (requirements.lock)"
	@$(BIN)/pip install --disable-pip-version-check --progress-bar off -q -c requirements.lock "pip==24.3.1"
	@set -o pipefail; $(BIN)/pip install --disable-pip-version-check --progress-bar off -c requirements.lock -e '.[dev]' \
		| { grep -E '^(Collecting|Successfully)' || true; }
	@touch $@

$(STAMPS)/buf: package.json package-lock.json
	@command -v npm >/dev/null || { echo "==> npm is missing: installing Debian's npm (buf ships through npm)"; \
		apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
	@echo "==> installing buf (npm @bufbuild/buf)"
	@npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/generated: $(STAMPS)/packages $(PROTOS) scripts/generate_code.py
	@echo "==> generating Python code from proto/"
	@$(BIN)/python scripts/generate_code.py >/dev/null 2>&1 || $(BIN)/python scripts/generate_code.py
	@touch $@

# The tools taken from Debian, each installed once where it is missing (scripts/ensure-tool).
$(STAMPS)/promtool:
	@scripts/ensure-tool promtool prometheus "to check deploy/prometheus"
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/kubectl:
	@scripts/ensure-tool kubectl kubernetes-client "to render deploy/kustomize"
	@mkdir -p $(STAMPS) && touch $@

# The README's walk-throughs (which the suite runs) read grpcurl's answers with jq.
$(STAMPS)/jq:
	@scripts/ensure-tool jq jq "for the README's walk-throughs"
	@mkdir -p $(STAMPS) && touch $@

install: $(STAMPS)/generated $(STAMPS)/buf $(STAMPS)/promtool $(STAMPS)/kubectl $(STAMPS)/jq

generate: $(STAMPS)/generated

migrate: install
	@$(BIN)/govmesh migrate

# Prometheus is a help, not a need: when it is missing and cannot be installed from here, the mesh
# runs without it (scripts/scaled_procfile.py then says how to get it, in one line).
run: $(STAMPS)/generated
	@scripts/ensure-broker
	@[ "$${GOVMESH_PROMETHEUS:-1}" = 0 ] || scripts/ensure-tool --optional prometheus prometheus "to scrape the mesh"
	@echo "==> applying database migrations"
	@$(BIN)/govmesh migrate
	@echo "==> starting the mesh (Ctrl-C stops every process)"
	@echo "    gRPC identity 127.0.0.1:50051, records :50052, approvals :50053, health :50054, crowd :50055"
	@echo "    metrics api :9101-9105, worker :9111-9115, crowd ingest :9125"
	@echo "    a token for grpcurl: $(BIN)/govmesh dev-token demo-portal"
	@mkdir -p var && $(BIN)/python scripts/scaled_procfile.py Procfile --prometheus-targets var/prometheus --with-prometheus \
		> var/Procfile.scaled
	@[ -z "$$GOVMESH_SCALE" ] || echo "    scaled ($$GOVMESH_SCALE): instance k of a kind serves metrics 100 * k above the ports above"
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -d . -f var/Procfile.scaled start

# A client of the running mesh (`make run` in another terminal): it reads the same environment.
demo: $(STAMPS)/generated
	@$(BIN)/govmesh demo $(DEMO_ARGS)

lint: install
	@echo "==> ruff"
	@$(BIN)/ruff check govmesh services tests scripts
	@echo "==> mypy"
	@$(BIN)/mypy
	@echo "==> buf lint"
	@$(BUF) lint proto
	@echo "==> buf breaking (against main)"
	@scripts/buf-breaking
	@echo "==> event catalogue (docs/events.asyncapi.yaml) matches proto/"
	@$(BIN)/python scripts/asyncapi.py --check
	@echo "==> Kubernetes manifests (deploy/kustomize) match their sources"
	@$(BIN)/python scripts/kubernetes.py --check
	@echo "==> promtool: scrape config, alert rules and their tests"
	@promtool check config deploy/prometheus/prometheus.yml >/dev/null \
		&& promtool check rules deploy/prometheus/alerts.yml >/dev/null \
		&& promtool test rules deploy/prometheus/alerts_test.yml >/dev/null \
		&& echo "    deploy/prometheus is valid and its alert tests pass"

# Two test processes (pytest-xdist), a file each at a time, so a file's module-wide mesh is made once:
# most of a mesh test is waiting for processes and messages, so two at once take about two thirds of
# the time on two cores. scripts/test-processes says how many: two when PostgreSQL takes the
# connections of two meshes at once (.ci/run sees to it), GOVMESH_TEST_PROCESSES=1 for one, in order.
test: lint
	@scripts/ensure-broker
	@processes=$$(scripts/test-processes); parallel=""; \
		[ "$$processes" -gt 1 ] && parallel="-n $$processes --dist loadfile"; \
		echo "==> the suite: unit, runtime and service tests (service tests on SQLite and PostgreSQL), $$processes test process(es)"; \
		$(BIN)/pytest -p no:cacheprovider --durations=15 $$parallel

# One run's figures go to bench/results/<UTC start>.json (tests/bench/results.py), kept in git;
# the run ends with the verdict: every target beside its figure, met or not (tests/bench/verdict.py).
bench: install
	@scripts/ensure-broker
	@export GOVMESH_BENCH_RUN=$$(date -u +%Y%m%dT%H%M%SZ); \
		$(BIN)/python -m tests.bench.identity && $(BIN)/python -m tests.bench.amqp \
		&& $(BIN)/python -m tests.bench.approvals \
		&& $(BIN)/python -m tests.bench.approvals --database postgresql --offered 50 --offered-seconds 60 \
		&& $(BIN)/python -m tests.bench.crowd \
		&& $(BIN)/python -m tests.bench.records --database sqlite \
		&& $(BIN)/python -m tests.bench.records --database postgresql --api-processes 1 2 \
		&& $(BIN)/python -m tests.bench.watchers \
		&& $(BIN)/python -m tests.bench.population --subjects 1000000; \
		status=$$?; $(BIN)/python -m tests.bench.verdict; exit $$status

# Faults go to a RabbitMQ node and a PostgreSQL cluster of the run's own (tests/chaos/infra.py);
# the counts go to chaos/results/<UTC start>.json (tests/chaos/__main__.py), kept in git.
chaos: install
	@scripts/ensure-broker
	@$(BIN)/python -m tests.chaos --seconds 60 --soak-minutes $${GOVMESH_SOAK_MINUTES:-30}
	@echo "==> hostile input: every gRPC method, $${GOVMESH_PROPERTY_EXAMPLES:-500} mutated requests each"
	@GOVMESH_PROPERTY_EXAMPLES=$${GOVMESH_PROPERTY_EXAMPLES:-500} $(BIN)/pytest -p no:cacheprovider -q tests/property

# The base comes from Debian's packages (mmdebstrap), cached; podman build, then the image's root
# filesystem is mounted and checked by chroot as its own user (podman run is refused in this sandbox).
image:
	scripts/build-image

lock:
	@{ head -3 requirements.lock; { $(BIN)/pip freeze --exclude-editable; $(BIN)/pip list --format=freeze | grep "^setuptools=="; } | sort -fu; } > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) $(STAMPS) node_modules var
	find govmesh -name '*_pb2*.py*' -delete
