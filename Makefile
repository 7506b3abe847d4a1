# The commands of Coverslip: `make serve` and `make test` install what they need first.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests start for real.
DEBS   := postgresql redis-server nginx apache2 chromium libmagic1
BENCH_DEBS := apache2-utils wrk nginx iipimage-server

.PHONY: serve test lint docs bench debs assets clean

OSD    := src/coverslip/web/static/vendor/openseadragon

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The viewer's OpenSeadragon comes from the npm registry and is served as a static file.
$(OSD)/openseadragon.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(OSD)
	cp -r node_modules/openseadragon/build/openseadragon/openseadragon.min.js node_modules/openseadragon/build/openseadragon/images $(OSD)/
	touch $@

assets: $(OSD)/openseadragon.min.js

debs:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

serve: $(STAMP) assets
	$(VENV)/bin/coverslip user ensure-admin
	$(VENV)/bin/coverslip demo --if-empty
	$(VENV)/bin/coverslip serve

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

docs: $(STAMP)
	$(VENV)/bin/coverslip config docs > docs/configuration.md

test: $(STAMP) assets debs lint
	$(VENV)/bin/pytest -n 2 -q

bench: $(STAMP)
	@missing=$$(for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
