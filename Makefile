# Two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both create the virtual environment from scratch with pinned versions.
PY ?= $(shell command -v python3.11 || command -v python3)
PY_WANT := 3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= data
PORT ?= 8000

.PHONY: demo test bench env check-python clean

# The lock pins wheels for Python 3.11 only: check the interpreter before creating anything,
# so a wrong one fails in a second instead of after installing the whole lock.
define CHECK_PYTHON
found=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
if [ "$$found" != "$(PY_WANT)" ]; then \
  echo "error: this project needs Python $(PY_WANT); PY='$(PY)' is $${found:-not a working Python}." >&2; \
  echo "Get 3.11 and name it with PY=, e.g.:" >&2; \
  echo "  sudo apt-get install python3.11 python3.11-venv   (Debian/Ubuntu; deadsnakes PPA on older Ubuntu)" >&2; \
  echo "  pyenv install 3.11 && PY=\"\$$(pyenv prefix 3.11)/bin/python3.11\" make $(MAKECMDGOALS)" >&2; \
  echo "  uv python install 3.11 && PY=\"\$$(uv python find 3.11)\" make $(MAKECMDGOALS)" >&2; \
  echo "  PY=/path/to/python3.11 make $(MAKECMDGOALS)" >&2; \
  exit 2; \
fi
endef

env: $(STAMP)

check-python:
	@$(CHECK_PYTHON)

$(STAMP): pyproject.toml requirements.lock
	@$(CHECK_PYTHON)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	$(BIN)/behavior --data-dir $(DATA_DIR) demo --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/behavior bench

clean:
	rm -rf $(VENV) build *.egg-info
