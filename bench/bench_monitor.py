"""The band monitor's cost against an epoch of training, side by side in one run: the CIFAR-10
study's model (ViT 128x6, patch 4, decoder 128x2, random masking 0.75, batch 256, 195 steps an
epoch), the monitor on its 1,000 fixed test images, bottom-25% target.

    .venv/bin/python bench/bench_monitor.py [--folder data/cifar10-jpeg] [--steps 10]

An epoch is timed as --steps training steps, scaled to the epoch's 195; monitor and steps are
interleaved, so that both see the same machine.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import dataset_pca  # noqa: E402
import monitor  # noqa: E402
import pca_project  # noqa: E402
import pretrain  # noqa: E402
from checkpoints import build_model  # noqa: E402

STUDY = ["--patch-size", "4", "--dim", "128", "--depth", "6", "--heads", "4", "--decoder-dim",
         "128", "--decoder-depth", "2", "--decoder-heads", "4", "--target", "bottom", "--pct", "25"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="data/cifar10-jpeg",
                   help="an image folder of 32 px pictures")
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    cfg = vars(pretrain.get_args(STUDY)) | {"image_shape": [3, 32, 32]}
    model = build_model(cfg, (3, 32, 32))
    fit, _ = dataset_pca.load_or_fit("folder", args.folder, 32)
    x_train, _ = data.load("folder", "train", args.folder, 32)
    x_test, _ = data.load("folder", "test", args.folder, 32)
    x_monitor = x_test[torch.linspace(0, len(x_test) - 1, 1000).long()]
    band = pca_project.band_slice(fit, "bottom", 25)
    pcs = pca_project.on_device(fit, "cpu", band, pca_project.spectrum_bands(fit, [10, 25]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=True)

    def steps():
        model.train()
        for i in range(args.steps):
            x, target = data.make_batch(x_train[i * 256:(i + 1) * 256], "crop", pcs)
            loss = model(x, target)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    times = {"steps": [], "monitor": []}
    for _ in range(3):
        for name, fn in (("steps", steps),
                         ("monitor", lambda: monitor.band_monitor(model, x_monitor, pcs))):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    epoch = min(times["steps"]) / args.steps * 195
    monitor = min(times["monitor"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"an epoch of training {epoch:.1f} s (from {args.steps} steps), the band monitor "
          f"{monitor:.2f} s: {monitor / epoch:.1%} of an epoch (goal <= 10%)")


if __name__ == "__main__":
    main()
