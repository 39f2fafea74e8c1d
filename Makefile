# The two commands of the README: `make demo` and `make test`. Both set up the virtualenv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/fizy

.PHONY: demo test

$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	DEBUG=$${DEBUG:-true} $(VENV)/bin/python manage.py demo

test: $(STAMP)
	bash .ci/services
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(VENV)/bin/pytest $(PYTEST_ARGS)
