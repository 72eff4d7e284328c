# iotiam: `make run` starts the control plane on its embedded defaults,
# `make test` runs the whole suite. Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA_DIR ?= $(HOME)/.local/share/iotiam
PYTEST_ARGS ?=

.PHONY: install plugin run test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) plugin

# the Mosquitto authorization plugin (`iotiam init --broker-auth plugin`), built from its
# source when the headers are there (Debian: mosquitto-dev, libmosquitto-dev); without
# them the broker builds it on first use, or says what to install
PLUGIN_SRC := src/iotiam/broker/plugin/iotiam_auth.c
PLUGIN_SO  := src/iotiam/broker/plugin/iotiam_auth.so
plugin:
	@if [ -f /usr/include/mosquitto_broker.h ]; then $(MAKE) --no-print-directory $(PLUGIN_SO); \
	else echo "mosquitto-dev headers missing: the broker plugin is not built"; fi

$(PLUGIN_SO): $(PLUGIN_SRC)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $<

run: install
	@# init is idempotent: it creates what is missing and never replaces keys
	$(BIN)/iotiam --data-dir "$(DATA_DIR)" init
	@echo ""
	@echo "CLI: $(BIN)/iotiam --help   (or: source $(BIN)/activate; iotiam device add dev-1 --type sensor)"
	@echo ""
	$(BIN)/iotiam --data-dir "$(DATA_DIR)" serve

lint: install
	$(BIN)/ruff check src tests benchmarks

typecheck: install
	$(BIN)/mypy

# the suite starts `iotiam` hundreds of times: compiled once here, each start skips
# compiling the package (where PYTHONDONTWRITEBYTECODE keeps Python from caching it)
test: install lint typecheck
	$(BIN)/python -m compileall -q src/iotiam >/dev/null
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(PLUGIN_SO)
