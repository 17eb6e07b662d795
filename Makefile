# Every target does its own set-up from a clean clone; running one twice is harmless.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := .venv/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
# The suite's second pass runs on these (CI and this machine have them on loopback).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tokenhub
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run serve migrate test test-embedded test-scale bench bench-peer worker beat check

install: .venv/.installed

.venv/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

migrate: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0

run: migrate
	$(PY) manage.py seed_demo --port $(PORT)
	TOKENHUB_ENV=$${TOKENHUB_ENV:-dev} LOG_FORMAT=$${LOG_FORMAT:-console} $(PY) -m uvicorn relay.asgi:application --host $(HOST) --port $(PORT) --loop uvloop --http httptools --no-access-log

# Production-style: several workers (needs DATABASE_URL=postgres://... and REDIS_URL).
# Metrics of every worker are summed through PROMETHEUS_MULTIPROC_DIR (emptied at each start).
serve: migrate
	rm -rf var/prometheus && mkdir -p var/prometheus
	PROMETHEUS_MULTIPROC_DIR=var/prometheus $(PY) -m uvicorn relay.asgi:application --host $(HOST) --port $(PORT) --workers $${WEB_WORKERS:-2} --loop uvloop --http httptools --no-access-log

# The whole suite twice: on the embedded default (SQLite, in-process cache and limits), then on
# PostgreSQL + Redis. The second pass fails, never skips, when they cannot be reached.
test: test-embedded test-scale

test-embedded: install
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest

test-scale: install
	$(PY) scripts/wait_services.py "$(TEST_DATABASE_URL)" "$(TEST_REDIS_URL)"
	DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" $(PY) -m pytest

bench: migrate .venv/.bench-installed
	$(PY) bench/run.py $(BENCH_ARGS)

.venv/.bench-installed: pyproject.toml .venv/.installed
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

# LiteLLM's proxy in an environment of its own, measured in the same run as TokenHub.
bench-peer: migrate .venv/.bench-installed bench/.peer/litellm/.installed
	$(PY) bench/run.py --peer litellm $(BENCH_ARGS)

bench/.peer/litellm/.installed:
	$(PYTHON) -m venv bench/.peer/litellm
	bench/.peer/litellm/bin/pip install -q 'litellm[proxy]==1.106.2'
	touch $@

worker: migrate
	$(PY) -m celery -A relay worker -l info

beat: migrate
	$(PY) -m celery -A relay beat -l info

check: install
	$(PY) manage.py check

# Scale-out on one machine, without Docker (docs/operations.md): two web processes on PORT and
# PORT+1, a Celery worker and one beat, all on DATABASE_URL (PostgreSQL) and REDIS_URL.
# Ctrl-C stops them all.
.PHONY: scale
scale: migrate
	@test -n "$$DATABASE_URL" && test -n "$$REDIS_URL" || { echo "make scale needs DATABASE_URL (PostgreSQL) and REDIS_URL" >&2; exit 2; }
	@rm -rf var/prometheus && mkdir -p var/prometheus
	@export PROMETHEUS_MULTIPROC_DIR=var/prometheus; trap 'kill $$(jobs -p) 2>/dev/null; wait' INT TERM EXIT; \
	$(PY) -m uvicorn relay.asgi:application --host $(HOST) --port $(PORT) --loop uvloop --http httptools --no-access-log & \
	$(PY) -m uvicorn relay.asgi:application --host $(HOST) --port $$(( $(PORT) + 1 )) --loop uvloop --http httptools --no-access-log & \
	$(PY) -m celery -A relay worker --loglevel INFO --concurrency 2 & \
	$(PY) -m celery -A relay beat --loglevel INFO --schedule var/celerybeat-schedule & \
	wait
