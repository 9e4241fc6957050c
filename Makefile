# lbsync Makefile.
# Packaging targets (docs/operations-packaging.md): deb, wheel, check-unit, test-deb,
# test-migration, test-sandbox.
# Build dependencies: packaging/build-deps.sh (Debian 12, as root).
# Other targets (setup, test, ...) are added below by their owners.

PYTHON ?= /usr/bin/python3

.PHONY: deb wheel check-unit test-deb test-migration test-sandbox

## deb: dist/lbsync_<version>_all.deb, checked with lintian
deb:
	sh packaging/build-deb.sh

## wheel: dist/lbsync-<version>-py3-none-any.whl and dist/lbsync-<version>.tar.gz
## (no isolation: builds with Debian's python3-setuptools and python3-wheel)
wheel:
	$(PYTHON) -m build --no-isolation --outdir dist .

## check-unit: systemd-analyze verify + security (each unit at most its exposure limit)
check-unit:
	sh systemd/check-unit.sh

## test-deb: build, install, check, purge the .deb on this (disposable) machine
test-deb:
	sh packaging/test-deb.sh

## test-migration: the upgrade from the 0.1 layout, made by hand, to the built .deb
## (disposable machine, root; installs and purges the .deb)
test-migration:
	sh packaging/test-migration.sh

## test-sandbox: run the units' sandboxes under a real systemd in namespaces
## (disposable machine, root; installs and purges the .deb)
test-sandbox:
	sh packaging/test-sandbox.sh

# --- development (README): scripts/test and scripts/demo do the same without make ----------

.PHONY: setup test demo

## setup: apt packages (nginx, Debian's python3 libraries) and .venv with the newest releases
setup:
	sh scripts/dev-setup.sh

## test: everything CI runs: lint, the suite on .venv and on Debian's python3, unit checks
test:
	sh scripts/test

## demo: the built-in demo cluster
demo:
	sh scripts/demo
