# Two commands do all set-up:  `make demo` (the main job) and `make test`.
# Both create .venv and install what they need on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
EXTRAS  ?= dev,cuda,jax,dask,plot,progress

.PHONY: demo test bench figures clean graphviz

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[$*]"
	touch $@

graphviz:  ## Graphviz's `dot` renders the pictures (Debian: apt-get install graphviz)
	@command -v dot >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) ; } \
	  || echo "note: install Graphviz (apt-get install graphviz) to render pictures; .dot files work without it"

demo: graphviz $(VENV)/.installed-dev
	$(BIN)/unfold demo

test: graphviz $(VENV)/.installed-$(EXTRAS)
	$(BIN)/python -m pytest tests

bench: $(VENV)/.installed-dev
	$(BIN)/pip install -q "torch==2.13.0" jax threadpoolctl || true
	$(BIN)/python benchmarks/cpu.py

figures: graphviz $(VENV)/.installed-dev
	$(BIN)/python examples/figures/make_figures.py

clean:
	rm -rf $(VENV) demo-out build .pytest_cache .hypothesis
