# make demo: set up (virtualenv, Fashion-MNIST from Debian) and run the offline demo on CPU.
# make test: the same set-up, then the test suite.
PY := .venv/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist

demo: .venv/ready $(FASHION_MNIST)
	$(PY) pca_project.py --dataset fashion-mnist --pct 25

test: .venv/ready $(FASHION_MNIST)
	$(PY) -m pytest -q tests

bench: .venv/ready $(FASHION_MNIST)
	$(PY) bench/bench_pca.py

.venv/ready: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.txt pytest
	touch $@

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist

.PHONY: demo test bench
