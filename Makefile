# lbsync Makefile.
# Packaging targets (docs/operations-packaging.md): deb, wheel, check-unit, test-deb,
# test-sandbox.
# Build dependencies: packaging/build-deps.sh (Debian 12, as root).
# Other targets (setup, test, ...) are added below by their owners.

PYTHON ?= /usr/bin/python3

.PHONY: deb wheel check-unit test-deb test-sandbox

## deb: dist/lbsync_<version>_all.deb, checked with lintian
deb:
	sh packaging/build-deb.sh

## wheel: dist/lbsync-<version>-py3-none-any.whl and dist/lbsync-<version>.tar.gz
## (no isolation: builds with Debian's python3-setuptools and python3-wheel)
wheel:
	$(PYTHON) -m build --no-isolation --outdir dist .

## check-unit: systemd-analyze verify + security (exposure at most 2.5)
check-unit:
	sh systemd/check-unit.sh

## test-deb: build, install, check, purge the .deb on this (disposable) machine
test-deb:
	sh packaging/test-deb.sh

## test-sandbox: run lbsync.service's sandbox under a real systemd in namespaces
## (disposable machine, root; installs and purges the .deb)
test-sandbox:
	sh packaging/test-sandbox.sh

# --- development: setup, lint, tests (README: `make test`) ----------------------------------

.PHONY: setup lint test-py test-debian-py test

VENV := .venv/bin

## setup: apt packages (nginx, Debian's python3 libraries) and .venv with the newest releases
setup:
	sh scripts/dev-setup.sh

## lint: ruff and mypy (strict) on the package
lint: setup
	$(VENV)/ruff check lbsync tests
	$(VENV)/mypy

## test-py: the test suite on the newest PyPI releases (.venv)
test-py: setup
	$(VENV)/python -m pytest -q

## test-debian-py: the same suite on Debian 12's python3 and its own library versions
test-debian-py: setup
	PYTHONPATH=$(CURDIR) /usr/bin/python3 -m pytest -q -p no:cacheprovider

## test: everything CI runs: lint, both test runs, the systemd unit checks
test: lint test-py test-debian-py check-unit
