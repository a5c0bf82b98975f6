# Two commands do everything on a fresh machine:  make demo  (the whole pipeline on the embedded data)  and  make test.
# Each installs what it needs and is safe to run twice.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed

.PHONY: demo test setup fashion-mnist inplace-abn lint clean-demo app

demo: setup fashion-mnist
	bash scripts/demo.sh

test: setup fashion-mnist
	bash scripts/install_browser.sh
	-bash scripts/install_inplace_abn.sh --if-possible
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto tests  # one process per core, one thread each

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

fashion-mnist:
	bash scripts/install_fashion_mnist.sh

inplace-abn: setup
	bash scripts/install_inplace_abn.sh

app: setup
	$(PY) -m streamlit run app.py -- --checkpoint $${CHECKPOINT:-outputs/demo/run/checkpoints/best.pt}

lint: setup
	$(PY) -m ruff check .

clean-demo:
	rm -rf data/demo outputs/demo
