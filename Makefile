# The two commands of the README: `make demo` and `make test`. Both set up the virtualenv first:
# the demo installs what the product runs on (requirements.txt), the tests add their tools
# (requirements-dev.txt).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
RUNTIME_STAMP := $(VENV)/.installed-runtime-$(shell sha1sum requirements.txt | cut -c1-12)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/fizy

.PHONY: demo test lint

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-runtime-* && touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-dev-* $(VENV)/.installed-runtime-* && touch $@ $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	DEBUG=$${DEBUG:-true} $(VENV)/bin/python manage.py demo

# The import direction of the house (.importlinter); a back-edge fails the build.
lint: $(DEV_STAMP)
	$(VENV)/bin/lint-imports

# axe-core (pinned in tests/e2e/package.json) is injected into pages by the accessibility checks.
AXE := tests/e2e/node_modules/axe-core/axe.min.js
$(AXE): tests/e2e/package.json tests/e2e/package-lock.json
	npm ci --prefix tests/e2e --no-audit --no-fund --silent

# The tests whose work goes through the task queue (dispatch, settlement, the watchdog, the
# reliability scenarios) run again with every task travelling through each real django-q2 broker:
# the ORM broker and Redis (FIZY_TEST_BROKER, fizy/tests/queue.py). The first run already starts
# real qclusters on both brokers (tests/reliability/test_worker_killed.py).
BROKER_TESTS ?= fulfillment/tests/test_dispatch.py fulfillment/tests/test_dispatch_ends.py \
	fulfillment/tests/test_payments.py fulfillment/tests/test_watchdog.py tests/reliability \
	--ignore=tests/reliability/test_worker_killed.py -m "not browser"

test: lint $(AXE)
	bash .ci/services
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(VENV)/bin/pytest $(PYTEST_ARGS)
	FIZY_TEST_BROKER=orm DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(VENV)/bin/pytest $(BROKER_TESTS)
	FIZY_TEST_BROKER=redis DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(VENV)/bin/pytest $(BROKER_TESTS)
