# The two set-up commands: `make dev` (the whole backend on the local stack) and `make test` (every test).
# Both create their own virtual environments from the pinned requirement files.
PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
BROWSER_TOOLS := tests/browser/node_modules/.installed
PROVIDER_SCHEMA := tests/terraform/provider-schema/node_modules/.installed

.PHONY: dev test lint bench load record venv clean

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt constraints-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt -c constraints-checkov.txt
	touch $@

# Chromium (Debian's package) and axe-core for the portal's browser tests: installed, or a clear stop.
$(BROWSER_TOOLS): tests/browser/package.json tests/browser/package-lock.json tests/browser/install.sh
	sh tests/browser/install.sh
	touch $@

# The google provider's schema for the Terraform checks (@cdktf/provider-google's .jsii, npm, pinned).
$(PROVIDER_SCHEMA): tests/terraform/provider-schema/package.json tests/terraform/provider-schema/package-lock.json tests/terraform/provider-schema/install.sh
	sh tests/terraform/provider-schema/install.sh
	touch $@

venv: $(VENV)/.installed

dev: $(VENV)/.installed
	$(PY) -m local

test: lint $(CHECKOV_VENV)/.installed $(BROWSER_TOOLS) $(PROVIDER_SCHEMA)
	@command -v chromium >/dev/null || { echo "chromium is missing: run 'sh tests/browser/install.sh'" >&2; exit 1; }
	$(PY) -m pytest

# Lint and type checks (pyproject.toml): seconds; `make test` runs them first.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The record of processing (GDPR Art. 30(2)), generated from the data model and configuration.
record: $(VENV)/.installed
	$(PY) -m shared.processing_record > docs/record-of-processing.md

bench: $(VENV)/.installed
	$(PY) -m benchmarks

# The capacity load test (a few minutes; not part of `make test`): docs/capacity.md.
load: $(VENV)/.installed
	$(PY) -m loadtest

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .local-stack tests/browser/node_modules tests/terraform/provider-schema/node_modules test-artifacts
