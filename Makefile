# Two commands for a fresh machine (Python >= 3.11 with venv):
#   make demo   set up .venv, then run the seed's examples on a local store with 4 workers
#   make test   set up .venv with the test tools, then lint, type-check and run the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench figures graphs screenshots clean

$(BIN)/doves: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[postgres,dev]'
	@touch $@

demo: $(BIN)/doves
	$(BIN)/doves demo

lint: $(BIN)/doves
	$(BIN)/ruff check martian_doves tests bench scripts

typecheck: $(BIN)/doves
	$(BIN)/mypy

# The suite runs in PYTEST_WORKERS processes (pytest-xdist; 0: in this one, the default). Most tests
# wait on real worker processes, PostgreSQL or a browser rather than compute, so PYTEST_WORKERS=3
# finishes sooner on two cores; but on a loaded machine a few tests that time real processes then
# miss their hang guards, so CI runs the suite in one process. PYTEST_ARGS comes last: `-n 0` there wins.
PYTEST_WORKERS ?= 0
pytest: $(BIN)/doves
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test: lint typecheck pytest

# The peers' workload on a fresh folder store (BENCH_ARGS='postgresql://... --runs 3' for others).
bench: $(BIN)/doves
	$(BIN)/doves bench --runs 3 $(BENCH_ARGS)

# The README's performance figures in docs/bench/, measured again (scripts/bench_figures.sh says how long
# and which knobs it has: BENCH_PG=, MEMORY_TRANSITIONS=, ...). Installs matplotlib (the bench extra) for the PNGs.
figures: $(BIN)/doves
	$(BIN)/pip install --quiet -e '.[postgres,dev,bench]'
	bash scripts/bench_figures.sh

# The README's state graphs and their pictures in docs/graphs/, drawn again by doves graph.
graphs: $(BIN)/doves
	$(BIN)/python tests/unit/readme_graphs.py

# The README's pictures of the dashboard, in Debian's headless Chromium (apt-get install chromium chromium-driver).
screenshots: $(BIN)/doves
	$(BIN)/python scripts/dashboard_screenshots.py docs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
