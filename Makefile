# Everything starts here. Each target creates .venv and installs what it needs, once.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

.PHONY: demo test test-slow bench bench-peer lint install lock clean chromium

$(STAMP): pyproject.toml constraints.txt requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# requirements.lock: the exact versions of everything installed (what CI tested), regenerated on purpose
lock: $(STAMP)
	{ echo "# Exact versions 'make install' installs (constraints on top of pyproject.toml's ranges), as CI tested them."; \
	  echo "# Regenerate after changing dependencies: make lock (then run make test). torch is pinned in constraints.txt."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -e '^-e' -e '^liveshelf' -e '^torch=='; } > requirements.lock

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/liveshelf demo

# The console's browser tests drive Debian's Chromium with Playwright; install it (and CJK fonts, so
# Chinese item titles render in screenshots) once if missing. Without them the browser tests skip.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) -a -d /usr/share/fonts/opentype/noto || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-noto-cjk \
	  >/dev/null || echo "chromium could not be installed: the browser tests will be skipped"; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH)

bench-peer: $(STAMP)
	bash benchmarks/peer/run.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build dist src/*.egg-info
