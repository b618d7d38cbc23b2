# Set-up is part of every target: a fresh clone needs only `make serve` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The oldest Python the package supports (pyproject.toml's requires-python).
NEED := (3, 11)
VERSION_OK := import sys; sys.exit(0 if sys.version_info[:2] >= $(NEED) else 1)

.PHONY: serve test lint bench clean FORCE

# A .venv whose interpreter is too old, or gone (its Python was removed or upgraded),
# is made again instead of failing on every run until someone thinks of `make clean`.
ifneq ($(wildcard $(VENV)),)
ifneq ($(shell $(BIN)/python -c '$(VERSION_OK)' >/dev/null 2>&1 && echo ok),ok)
$(BIN)/python $(STAMP): FORCE
endif
endif

$(BIN)/python:
	@$(PYTHON) -c '$(VERSION_OK)' >/dev/null 2>&1 || { \
	  echo "nanobot: make needs Python >= 3.11, but $(PYTHON) is $$($(PYTHON) --version 2>&1 | head -n 1); name another: make PYTHON=python3.12 ..." >&2; \
	  exit 2; }
	@if [ -d $(VENV) ]; then \
	  echo "nanobot: $(VENV) was made by another Python (too old or gone); making it again with $(PYTHON)"; \
	  rm -rf $(VENV); fi
	@echo "nanobot: creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's metadata changes. pip's own progress is shown:
# the first install takes a minute or two, and silence looked like a hang.
$(STAMP): pyproject.toml | $(BIN)/python
	@echo "nanobot: installing nanobot-api and its dev tools into $(VENV) (1-2 minutes the first time)"
	$(BIN)/python -m pip install --upgrade --progress-bar off pip
	$(BIN)/python -m pip install --progress-bar off -e ".[dev]"
	touch $(STAMP)
	@echo "nanobot: set-up done"

serve: $(STAMP)
	$(BIN)/nanobot serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

FORCE:
