"""What a band holds of the variance of the inputs a model trains on, against what its name says,
side by side: for each --aug, each band of the monitor (top 75%, 10-25%, bottom 10%) and the
bottom 25%, the band's nominal share (of the fitted images' variance) and its share of 5,000
augmented train images, with the PCA fitted on the stored images (before the fix) and on the
training views (dataset_pca.training_views, what pretrain.py fits now).

    .venv/bin/python bench/bench_band_share.py [--folder data/cifar10-jpeg] [--dataset folder]

A band target is right when the two shares agree: its name then says what the model is asked
to rebuild.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import dataset_pca  # noqa: E402
import pca_project  # noqa: E402

BANDS = (("top 75%", "top", 75), ("10-25%", None, None), ("bottom 10%", "bottom", 10),
         ("bottom 25%", "bottom", 25))


def band(fit, target, pct):
    if target is not None:
        return pca_project.band_slice(fit, target, pct)
    return slice(pca_project.band_slice(fit, "bottom", 10).stop,
                 pca_project.band_slice(fit, "bottom", 25).stop)  # the monitor's middle band


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="folder", help="as the scripts' --dataset")
    p.add_argument("--folder", default="data/cifar10-jpeg", help="the data folder (--data-dir)")
    p.add_argument("--images", type=int, default=5000, help="train images measured")
    args = p.parse_args()
    x, _ = data.load(args.dataset, "train", args.folder, 32)
    sample = x[torch.linspace(0, len(x) - 1, min(args.images, len(x))).long()].float() / 255
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"{args.dataset} at {args.folder}, {len(sample):,} of {len(x):,} train images")
    print(f"{'aug':5} {'band':11} | {'fitted on the stored images':>29} | "
          f"{'fitted on the training views':>29}")
    print(f"{'':17} | {'nominal':>9} {'inputs':>9} {'ratio':>9} | "
          f"{'nominal':>9} {'inputs':>9} {'ratio':>9}")
    for aug in data.AUGMENTATIONS:
        u = torch.rand(len(sample), 5, generator=torch.Generator().manual_seed(1))  # fresh draws
        views = data.augment(sample, aug, u)
        fits = [dataset_pca.load_or_fit(args.dataset, args.folder, 32, aug=a)[0]
                for a in ("none", aug)]
        for name, target, pct in BANDS:
            cells = []
            for fit in fits:
                b = band(fit, target, pct)
                nominal = float(pca_project.variance_share(fit)[b].sum())
                inputs = pca_project.band_share(views, pca_project.on_device(fit, "cpu", b))
                cells.append(f"{100 * nominal:8.2f}% {100 * inputs:8.2f}% {inputs / nominal:9.3f}")
            print(f"{aug:5} {name:11} | {cells[0]} | {cells[1]}")


if __name__ == "__main__":
    main()
