# ringlog: `make test` and `make demo` work on a fresh machine with Python 3.11 and a C compiler.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench bench-micro lint build debug clean stress

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "python3.11 not found; using python3"; }
	@($(PYTHON) -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV))
	-$(PY) -m pip install -q --upgrade pip  # a newer pip is nice to have, not needed

# Reinstall when the build inputs change; editable, so src/ is the package.
$(STAMP): $(PY) pyproject.toml setup.py $(shell find ext -name '*.pyx' -o -name '*.pxd' -o -name '*.h' -o -name '*.pxi' 2>/dev/null)
	$(PY) -m pip install -q -e '.[test,bench,cluster,metrics]'
	@touch $(STAMP)

# An extra's requirements (lint tools, benchmark peers) as pyproject.toml lists them,
# installed once and without rebuilding the package: `make test` needs neither.
$(VENV)/.extra-%: $(PY) pyproject.toml
	$(PY) -m pip install -q $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['$*']))")
	@touch $@

build: $(STAMP) $(VENV)/.extra-lint $(VENV)/.extra-bench

test: $(STAMP)
	$(PY) -m pytest -q -x -p no:cacheprovider tests

stress: $(STAMP)
	$(PY) -m pytest -q -m stress tests

demo: $(STAMP)
	$(PY) -m ringlog demo

bench: $(STAMP) $(VENV)/.extra-bench
	$(PY) -m ringlog.bench all --runs 3 --json docs/benchmarks.json --report docs/benchmarks.md --command-text "make bench"

bench-micro: $(STAMP) $(VENV)/.extra-bench
	$(PY) -m pytest -q -p no:cacheprovider bench/ --benchmark-only --benchmark-json=docs/bench-micro.json

lint: $(STAMP) $(VENV)/.extra-lint
	$(VENV)/bin/ruff check src tests bench
	PATH=$(VENV)/bin:$$PATH cython-lint ext
	$(VENV)/bin/mypy  # src/ringlog, modules and stubs ([tool.mypy] in pyproject.toml)

debug: $(PY)
	RINGLOG_DEBUG=1 $(PY) -m pip install -q -e '.[test,bench]'
	@rm -f $(STAMP)

clean:
	rm -rf build $(VENV) src/*.egg-info
	find src ext -name '*.so' -delete -o -name '*.c' -path 'ext/*' -delete -o -name '*.html' -path 'ext/*' -delete
