# make demo: set up (virtualenv, Fashion-MNIST from Debian) and run the offline demo on CPU.
# make test: the same set-up, then the test suite.
PY := .venv/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist

# A small MAE (0.3M parameters) on real Fashion-MNIST, bottom-25% target: a few minutes on 2 cores.
DEMO := --dataset fashion-mnist --target bottom --pct 25 --patch-size 4 --dim 64 --depth 4 --heads 4 \
	--decoder-dim 64 --decoder-depth 2 --decoder-heads 4 --epochs 3 --warmup-epochs 1 --batch-size 256 \
	--blr 1.5e-3 --eval-every 1 --out runs/demo --resume

demo: .venv/ready $(FASHION_MNIST)
	$(PY) pca_project.py --dataset fashion-mnist --pct 25
	$(PY) pretrain.py $(DEMO)
	$(PY) linprobe.py --ckpt runs/demo/ckpt.pt --epochs 30 --warmup-epochs 3 --out runs/demo/linprobe

# Laptop scale (2 CPU cores, ~50 min): Balestriero & LeCun's supervised-on-a-band experiment and
# MAE pretraining with the original, bottom-25% and top-75% targets, and with PCA masking
# (original and bottom-25% targets), on Fashion-MNIST.
VIT := --patch-size 4 --dim 64 --depth 4 --heads 4
MAE := $(VIT) --decoder-dim 64 --decoder-depth 2 --decoder-heads 4 --epochs 5 --warmup-epochs 1 \
	--batch-size 256 --blr 1.5e-3 --eval-every 5 --resume
SUP := --dataset fashion-mnist --init none $(VIT) --epochs 2 --warmup-epochs 1 --batch-size 256 --resume
laptop: .venv/ready $(FASHION_MNIST)
	$(PY) finetune.py $(SUP) --out runs/laptop/sup-original
	for band in "bottom --pct 25" "top --pct 75" "bottom --pct 10" "top --pct 90"; do \
	  $(PY) finetune.py $(SUP) --input $$band --out runs/laptop/sup-$$(echo $$band | tr -d ' -' | sed s/pct//) || exit 1; done
	for target in "original" "bottom --pct 25" "top --pct 75" "original --masking pca" "bottom --pct 25 --masking pca"; do \
	  out=runs/laptop/mae-$$(echo $$target | tr -d ' -' | sed 's/pct//; s/masking//'); \
	  $(PY) pretrain.py --dataset fashion-mnist --target $$target $(MAE) --out $$out || exit 1; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt --epochs 30 --warmup-epochs 3 --out $$out/linprobe || exit 1; done
	$(PY) report.py runs/laptop

# The original and bottom-25% MAE runs of `laptop` with 20 pretraining epochs (~50 min).
MAE20 := $(VIT) --decoder-dim 64 --decoder-depth 2 --decoder-heads 4 --epochs 20 --warmup-epochs 2 \
	--batch-size 256 --blr 1.5e-3 --eval-every 20 --resume
laptop20: .venv/ready $(FASHION_MNIST)
	for target in "original" "bottom --pct 25"; do \
	  out=runs/laptop/mae20-$$(echo $$target | tr -d ' -' | sed s/pct//); \
	  $(PY) pretrain.py --dataset fashion-mnist --target $$target $(MAE20) --out $$out || exit 1; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt --epochs 30 --warmup-epochs 3 --out $$out/linprobe || exit 1; done
	$(PY) report.py runs/laptop

test: .venv/ready $(FASHION_MNIST)
	$(PY) -m pytest -q tests

# Break the method in named ways (tests/mutants.py) and check that a test fails for each.
mutants: .venv/ready $(FASHION_MNIST)
	$(PY) tests/mutants.py

bench: .venv/ready $(FASHION_MNIST)
	$(PY) bench/bench_pca.py
	$(PY) bench/bench_projection.py
	$(PY) bench/bench_pretrain.py

# On a CUDA machine: the pipeline on the GPU, ViT-Tiny throughput and a PCA fit, then a summary (exit 2 without CUDA).
gpu-check: .venv/ready $(FASHION_MNIST)
	$(PY) bench/gpu_check.py

.venv/ready: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.txt pytest
	touch $@

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist

.PHONY: demo test mutants bench gpu-check laptop laptop20
