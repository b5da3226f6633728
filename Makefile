# Two entry points: `make demo` (the main job on synthetic data) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo

.PHONY: demo test clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m mgvton_jax.train --config configs/pipeline.py:tiny --workdir $(DEMO_DIR)

test: $(VENV)/.installed
	$(PY) -m ruff check mgvton_jax tests benchmarks configs
	$(PY) -m pytest -n 2 --dist worksteal; status=$$?; \
	if [ $$status -eq 5 ]; then echo 'error: pytest collected no tests (exit 5)' >&2; fi; \
	exit $$status

clean:
	rm -rf $(VENV) runs
