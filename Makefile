# `make demo` and `make test` each create .venv when it is missing (with the newest Python >= 3.11
# that actually runs here), install the project and its test extras, then run.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= 2
# A static path (.pth) instead of setuptools' import hook, so type checkers (mypy, pyright) find
# the package in this editable install; plain `-e .` if a setuptools without compat mode refuses.
EDITABLE_FLAGS := --config-settings editable_mode=compat

.PHONY: demo test test-quick clean

$(PY):
	@py=""; for c in python3.13 python3.12 python3.11 python3; do \
	  if $$c -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then py=$$c; break; fi; \
	done; \
	if [ -z "$$py" ]; then echo "need Python >= 3.11 on PATH" >&2; exit 1; fi; \
	echo "creating $(VENV) with $$($$py --version)"; $$py -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@# The filter hides setuptools' "Editable installation" banner (a warning it uses to inform).
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[test]' $(EDITABLE_FLAGS) || \
	  PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/census_wide_and_deep.py

test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

# Everything except the multi-process / long tests, for quick iteration.
test-quick: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
