# The two commands of the README. Both create (once) and reuse the git-ignored .venv.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint format bench screenshots catalogue clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/parhelia tui --demo

# Two workers (pytest-xdist), each with its own PostgreSQL server and fake Modal servers; a
# worker that is done takes queued tests from the other (worksteal): a few tests take 30-60 s.
# `make test WORKERS=0` runs in one process.
WORKERS ?= 2

test: $(STAMP)
	$(BIN)/pytest -n $(WORKERS) --dist worksteal --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The view's statements compiled for the read commands' quick path (state/sqlite_catalogue.py,
# state/postgres_catalogue.py); after changing one in state/view_queries.py
# (tests/test_quick_store.py says when).
catalogue: $(STAMP)
	$(BIN)/python -m parhelia.state.view_queries

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/store.py --db auto
	$(BIN)/python bench/reconcile.py
	$(BIN)/python bench/reconcile.py --db auto
	$(BIN)/python bench/tui.py
	$(BIN)/python bench/tui.py --db auto

screenshots: $(STAMP)
	$(BIN)/python screenshots/make_screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info
