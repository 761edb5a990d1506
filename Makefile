# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first;
# re-running them is fast because setup is skipped while requirements and pyproject are unchanged.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hacm-installed

.PHONY: setup chromium slurm demo test test-fast bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --prefix $(VENV) --name hacm --display-name "Python (hacm)" >/dev/null
	touch $(STAMP)

# Debian's chromium is the only browser here (kaleido figures, the JupyterLab browser test).
# Never `playwright install`: there is no network for it.
chromium:
	@bash .ci/install-chromium

# Debian's slurm-wlm and munge: the Slurm executor's tests run them as a one-node cluster.
slurm:
	@bash .ci/install-slurm

setup: $(STAMP) chromium slurm

demo: setup
	$(VENV)/bin/hacm demo

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow and not browser and not notebook and not ddp"

bench: setup
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_explorer.py

clean:
	rm -rf runs reports/demo .pytest_cache
