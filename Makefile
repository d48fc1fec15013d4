# tally: the handful of verbs a developer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# uv from PATH, or the module pip installed when PATH has no uv.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST = $(UV) run --frozen pytest

# make load: headless Locust against a running stack (make up first).
LOAD_HOST ?= http://localhost:$(or $(HTTP_PORT),8080)
USERS ?= 50
SPAWN_RATE ?= 10
DURATION ?= 30s
# Where make load writes its HTML report and CSV stats.
REPORTS ?= $(CURDIR)/loadtest/reports

# make backup / make restore BACKUP=...: snapshots of Redis in BACKUP_DIR (README, "Back up
# and restore"); made here first, so the folder is yours and not Docker's.
export BACKUP_DIR ?= ./backups

# make swarm-up: the stack on a Docker Swarm (README, "Beyond one host"). TALLY_STACK names
# the stack and prefixes its secrets; OBSERVABILITY=1 adds Prometheus, the exporters,
# Grafana and Tempo; HA=1 runs Redis that fails over (compose.ha.yaml's topology);
# REGISTRY=host:port puts the app image there (make push) for every node.
export TALLY_STACK ?= tally
SWARM_TOPOLOGY = $(if $(HA),-ha)
SWARM_FILES = -c ops/swarm/stack$(SWARM_TOPOLOGY).yaml \
	$(if $(OBSERVABILITY),-c ops/swarm/observability$(SWARM_TOPOLOGY).yaml)
ifdef REGISTRY
export TALLY_IMAGE := $(REGISTRY)/tally-app
endif

.PHONY: help install test test-fast test-unit test-integration test-stack test-static test-config test-load test-faults test-browser screenshots install-browser reliability bench bench-records soak lint format docs dashboards slo load up down logs ps \
	test-swarm test-cluster swarm-stack swarm-secrets swarm-preflight swarm-up swarm-down push backup restore deploy nginx-reload rotate-secrets

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install the locked Python dependencies into .venv (installs uv if missing)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen

# Each tier is a folder of tests/ and runs by its path, so a run collects no other tier's
# conftest; what a tier needs beyond Python (Chromium, a swarm) its target or its own
# fixtures bring.
test: install lint install-browser ## every tier (what CI runs): lint, unit, static, config, integration, stack, browser, load, faults, swarm, cluster
	$(PYTEST) tests/unit tests/static tests/config tests/integration tests/stack tests/browser tests/load tests/faults tests/swarm tests/cluster

test-fast: install lint ## lint, unit and static: no Docker at all, well under two minutes
	$(PYTEST) tests/unit tests/static

install-browser: ## Debian's Chromium for the browser tier (apt, as root), when missing
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
		|| { echo "Chromium is missing: sudo make install-browser installs Debian's" >&2; exit 1; }; \
		apt-get update -qq && apt-get install -y -qq chromium; }

test-unit: install ## unit tests only (no Docker needed)
	$(PYTEST) tests/unit

test-static: install ## the repository's files checked with no Docker: generated files, copies, dashboards, hadolint
	$(PYTEST) tests/static

test-config: install ## the configuration as the pinned tools read it: compose/stack config, nginx -t, promtool, amtool (Docker, no stack)
	$(PYTEST) tests/config

test-integration: install ## the app against a real Redis in Docker
	$(PYTEST) tests/integration

test-stack: install ## the compose stack end to end
	$(PYTEST) tests/stack

test-faults: install ## faults under load (replica killed, restarts, Redis killed/paused, nginx reload)
	$(PYTEST) tests/faults

test-swarm: install ## the stack on a single-node Docker Swarm: scale, rolling update, rollback (joins a swarm for the run)
	$(PYTEST) tests/swarm

test-cluster: install ## three Docker hosts on this machine (as root): the HA stack across them, node loss, partitions
	$(PYTEST) tests/cluster

reliability: test-faults ## run the faults; their tables go to docs/results/reliability.md

test-browser: install install-browser ## the pages in headless Chromium through nginx (installs it when missing)
	$(PYTEST) tests/browser

screenshots: install install-browser ## regenerate the README's screenshots in docs/img/
	SCREENSHOTS_DIR=$(CURDIR)/docs/img $(PYTEST) tests/browser

test-load: install ## the Locust suite against the stack, and proof that its checks can fail
	$(PYTEST) tests/load

lint: install ## ruff and mypy --strict
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy service tests bench loadtest ops

format: install ## apply ruff's formatting and fixes
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

docs: install ## write the README's settings tables and .env.example from the declarations
	$(UV) run --frozen python ops/configuration.py

dashboards: install ## regenerate ops/grafana/dashboards/*.json from ops/grafana/dashboards.py (and the Swarm files that name them)
	$(UV) run --frozen python ops/grafana/dashboards.py
	$(UV) run --frozen python ops/swarm/render.py

slo: install ## regenerate ops/prometheus/rules/slo.yml and its tests from ops/prometheus/slo.py (and the Swarm files that name them)
	$(UV) run --frozen python ops/prometheus/slo.py
	$(UV) run --frozen python ops/swarm/render.py

load: install ## headless load test (USERS, SPAWN_RATE, DURATION, LOAD_HOST); reports in loadtest/reports/ (REPORTS)
	mkdir -p $(REPORTS)
	cd loadtest && $(UV) run --frozen locust -f locustfile.py --headless --only-summary \
		-u $(USERS) -r $(SPAWN_RATE) -t $(DURATION) --host $(LOAD_HOST) \
		--html $(REPORTS)/report.html --csv $(REPORTS)/stats

bench: install ## tally vs bare Quart, Flask and FastAPI under wrk, then bench-records; bench/results/
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)
	$(UV) run --frozen python bench/run.py
	$(UV) run --frozen python bench/run.py --records

bench-records: install ## Redis memory of exactly-once records at the peak rate (RECORDS_SECONDS, 600); bench/results/records.md
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)
	$(UV) run --frozen python bench/run.py --records

soak: install ## tally under load for SOAK_SECONDS (300): RSS growth per replica; bench/results/soak.md
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)
	$(UV) run --frozen python bench/run.py --soak

up: ## start the stack (build, wait for health)
	docker compose up -d --build --wait

down: ## stop the stack, keep the count
	docker compose down

logs: ## follow the stack's logs
	docker compose logs -f

ps: ## list the stack's containers
	docker compose ps

backup: ## a snapshot of the running Redis into BACKUP_DIR, with its sha256 and count beside it
	@mkdir -p "$(BACKUP_DIR)"
	@docker compose run --rm --no-deps -T backup python /opt/backup/backup.py once

restore: ## check BACKUP=..., then put it into Redis's volume in place of its data
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=backups/tally-<time>.rdb"; exit 2; }
	@$(UV) run --frozen --quiet python ops/backup/restore.py "$(BACKUP)"

swarm-stack: install ## regenerate ops/swarm/*.yaml from the compose files and ops/swarm/swarm.yaml
	$(UV) run --frozen python ops/swarm/render.py

swarm-secrets: install ## create the Swarm stack's secrets from random bytes (kept when they exist)
	$(UV) run --frozen python ops/swarm/secrets.py

swarm-preflight: install ## check this swarm can run the stack (a manager, node labels, a registry)
	$(UV) run --frozen python ops/swarm/preflight.py check $(SWARM_FILES)

swarm-up: swarm-preflight swarm-secrets ## build the app image (unless REGISTRY), deploy, wait (SWARM_UP_TIMEOUT)
	$(if $(REGISTRY),,docker compose build app)
	docker stack deploy --detach=true $(SWARM_FILES) $(TALLY_STACK)
	$(UV) run --frozen python ops/swarm/preflight.py wait $(TALLY_STACK)

swarm-down: ## remove the Swarm stack (its volume keeps the count, its secrets stay)
	docker stack rm $(TALLY_STACK)
	@# Its networks go in the background; a deploy before they are gone fails.
	@until [ -z "$$(docker network ls -q -f label=com.docker.stack.namespace=$(TALLY_STACK))" ]; do sleep 1; done

push: ## build the app image and push it to REGISTRY (every Swarm node pulls it from there)
	@test -n "$(REGISTRY)" || { echo "usage: REGISTRY=registry.example.com:5000 make push"; exit 2; }
	docker compose build app
	docker compose push app

deploy: ## ship the app image (TALLY_VERSION) to every replica, one at a time, no failed request
	$(UV) run --frozen python ops/deploy.py

nginx-reload: ## re-render nginx's config, check it (nginx -t) and reload it, no failed request
	docker compose exec -T nginx sh -s < ops/nginx/reload.sh

rotate-secrets: ## a new password for every Redis user, clients moved over, old ones removed: no failed request
	$(UV) run --frozen python ops/rotate_secrets.py
