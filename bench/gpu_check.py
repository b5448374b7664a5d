"""make gpu-check: on a CUDA machine, whether the main use works and how fast, in a few minutes.

    .venv/bin/python bench/gpu_check.py                      # needs CUDA; exit 2 without it
    .venv/bin/python bench/gpu_check.py --device cpu --quick # the same, tiny, on a CPU (the tests)

1. The pipeline at tiny scale on real Fashion-MNIST pictures, each script as a user runs it: PCA
   fit on the device, pretraining with a bottom-25% target under bf16 autocast, fused AdamW and
   --compile (again under fp16 with loss scaling, and under torchrun --nproc_per_node 1), linear
   probe, fine-tune; then what a GPU run writes, read back: a stop (mid-epoch checkpoints) and its
   resume, the checkpoint's band picture and monitor, its export; and a supervised run on the
   bottom band with MixUp, CutMix and a val split.
2. The time of a CIFAR-10-shaped PCA fit (50,000 x 3,072) on the device.
3. ViT-Tiny pretraining throughput on CIFAR-shaped images at batch 512, bottom-25% target, eager
   and compiled: images/s and peak device memory.
It ends with a summary to paste into the README.
"""
import os
import subprocess
import sys
import tempfile
import time

import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cli  # noqa: E402
import data  # noqa: E402
import pca_project  # noqa: E402
import pretrain  # noqa: E402
from bench_pca import cifar_shaped  # noqa: E402
from checkpoints import build_model  # noqa: E402


def write_folder(root, n_train, n_test):
    """Real Fashion-MNIST pictures as an image folder, n per class and split."""
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = data.load("fashion-mnist", split, os.path.join(root, "..", "fashion-mnist"))
        for c in range(10):
            os.makedirs(os.path.join(root, split, str(c)), exist_ok=True)
            for i, j in enumerate((y == c).nonzero()[:n, 0].tolist()):
                Image.fromarray(x[j, 0].numpy()).save(os.path.join(root, split, str(c), f"{i}.png"))


def pipeline(device, quick, work):
    """[(step, seconds, None or the error's last line)] for each script run."""
    write_folder(os.path.join(work, "data"), 20 if quick else 200, 5 if quick else 50)
    common = ["--dataset", "folder", "--data-dir", os.path.join(work, "data"), "--image-size", "28",
              "--device", device]
    tiny = ["--patch-size", "4", "--dim", "32", "--depth", "2", "--heads", "2"]
    mae = [*tiny, "--decoder-dim", "32", "--decoder-depth", "1", "--decoder-heads", "2",
           "--batch-size", "64", "--epochs", "2", "--warmup-epochs", "1", "--blr", "1e-3",
           "--target", "bottom", "--pct", "25", "--amp"]
    fast = [] if quick else ["--compile"]  # compiling takes minutes on a CPU
    pre = os.path.join(work, "pre", "ckpt.pt")
    steps = [
        ("PCA fit on the device",
         ["pca_project.py", *common, "--out", os.path.join(work, "pca.png")]),
        ("pretrain, autocast's default (bf16; fp16 before Ampere), fused AdamW"
         + (", compiled" if fast else ""),
         ["pretrain.py", *common, *mae, *fast, "--out", os.path.join(work, "pre")]),
        ("pretrain, fp16 with loss scaling (the default before Ampere)",
         ["pretrain.py", *common, *mae, "--amp-dtype", "fp16",
          "--out", os.path.join(work, "fp16")]),
        ("pretrain under torchrun",
         ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
          "pretrain.py", *common, *mae, "--out", os.path.join(work, "ddp")]),
        ("linear probe", ["linprobe.py", *common, "--ckpt", pre, "--epochs", "2", "--amp",
                          "--out", os.path.join(work, "lp")]),
        ("fine-tune", ["finetune.py", *common, "--ckpt", pre, "--epochs", "2", "--batch-size", "64",
                       "--amp", *fast, "--out", os.path.join(work, "ft")]),
        # what a GPU run writes, read back: a stop with mid-epoch checkpoints and its resume, the
        # checkpoint's band picture and monitor, its export
        ("pretrain, stopped after epoch 1 (checkpoints every 2 steps)",
         ["pretrain.py", *common, *mae, "--stop-epoch", "1", "--ckpt-every", "2",
          "--out", os.path.join(work, "stopped")]),
        ("pretrain, resumed",
         ["pretrain.py", *common, *mae, "--resume", "--out", os.path.join(work, "stopped")]),
        ("band picture and monitor of the checkpoint",
         ["pca_project.py", "--ckpt", pre, "--device", device,
          "--out", os.path.join(work, "ckpt.png")]),
        ("export for timm", ["export.py", pre, os.path.join(work, "encoder-timm.pt")]),
        ("supervised on the bottom band, MixUp, CutMix, a val split",
         ["finetune.py", *common, "--init", "none", *tiny, "--input", "bottom", "--pct", "25",
          "--mixup", "0.8", "--cutmix", "1.0", "--val-split", "0.1", "--epochs", "1",
          "--batch-size", "64", "--amp", "--out", os.path.join(work, "band")]),
    ]
    done = []
    for name, cmd in steps:
        t0 = time.time()
        p = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True)
        error = (None if p.returncode == 0
                 else f"exit {p.returncode}: " + (p.stderr.strip().splitlines() or [""])[-1])
        done.append((name, time.time() - t0, error))
        print(f"  {name}: {'ok' if error is None else 'FAILED ' + error} ({done[-1][1]:.0f} s)",
              flush=True)
    return done


def throughput(device, quick, x, pcs):
    """[(mode, images/s, peak device GiB or None)] of ViT-Tiny pretraining steps at batch 512."""
    cfg = vars(pretrain.get_args(["--patch-size", "2"]))
    batch, steps = (8, 2) if quick else (512, 20)
    rows = []
    for mode in ("eager",) if quick else ("eager", "compiled"):
        torch.manual_seed(0)
        model = build_model(cfg, (3, 32, 32)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=True)
        step_model = torch.compile(model) if mode == "compiled" else model
        autocast = torch.autocast(device.type, torch.bfloat16)

        def step(i):
            u = torch.rand(batch, 5, device=device)
            inp, target = data.make_batch(x[i * batch % (len(x) - batch):][:batch], "crop", pcs, u)
            with autocast:  # pretrain.py's forward, backward and step
                loss = step_model(inp, target)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()
        for i in range(3):  # warm-up (and compilation)
            step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i in range(steps):
            loss = step(i)
        loss.item()  # waits for the device
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        rows.append((mode, steps * batch / seconds, peak))
        print(f"  ViT-Tiny pretraining, {mode}: {rows[-1][1]:,.0f} images/s"
              + (f", peak {peak:.1f} GiB" if peak else ""), flush=True)
    return rows


def main():
    p = cli.Parser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, no compile: the CPU test of this script")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: make gpu-check needs a CUDA GPU and this machine has none", file=sys.stderr)
        sys.exit(2)
    device = cli.device(args.device)
    card = (torch.cuda.get_device_name() if device.type == "cuda"
            else f"CPU ({torch.backends.cpu.get_cpu_capability()})")
    print(f"gpu-check on {card}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as work:  # every file it writes, never the caller's ./data
        print("1. the pipeline at tiny scale", flush=True)
        steps = pipeline(args.device, args.quick, work)
        print("2. CIFAR-10-shaped PCA fit on the device", flush=True)
        x = cifar_shaped(2000 if args.quick else 50000, os.path.join(work, "fashion-mnist"))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    fit = pca_project.fit(x, device=device)
    fit_seconds = time.time() - t0
    print(f"  {len(x):,} x 3,072 fitted in {fit_seconds:.1f} s", flush=True)
    print("3. ViT-Tiny pretraining throughput (bf16 autocast, fused AdamW, bottom-25% target)",
          flush=True)
    rows = throughput(device, args.quick, x.to(device),
                      pca_project.on_device(fit, device, pca_project.band_slice(fit, "bottom", 25)))
    failed = [name for name, _, error in steps if error]
    print(f"\nSummary ({card}, torch {torch.__version__}, `make gpu-check`):")
    print(f"- pipeline (PCA fit, pretrain bf16 + fused AdamW{'' if args.quick else ' + compile'}, "
          "torchrun x 1, linear probe, fine-tune, stop and resume, band picture, export, "
          "band fine-tune): "
          + ("all ok" if not failed else "FAILED: " + ", ".join(failed)))
    print("- ViT-Tiny MAE pretraining, CIFAR-shaped, patch 2, batch "
          + ("8" if args.quick else "512") + ": "
          + "; ".join(f"{mode} {ips:,.0f} images/s" + (f", peak {peak:.1f} GiB" if peak else "")
                      for mode, ips, peak in rows))
    print(f"- PCA fit of {len(x):,} x 3,072 on the device: {fit_seconds:.1f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    cli.main_guard(main, resumable=False)
