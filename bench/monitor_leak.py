"""What a guess holding only the image's top-75% band is credited with, per band, by the band monitor
measured inside the masked patches only (the way before issue 21) and on the whole image (today's).

    .venv/bin/python bench/monitor_leak.py [--folder data/cifar10-jpeg]

The guess knows nothing of the two low bands, so the right figure there is 0. Random masking 0.75,
1,000 test images, the train split's PCA; patch 2, 4 and 8 at 32 px.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import model  # noqa: E402
import pca_project  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="data/cifar10-jpeg", help="an image folder of 32 px pictures")
    args = p.parse_args()
    fit, _ = pca_project.load_or_fit("folder", args.folder, 32)
    x_test, _ = data.load("folder", "test", args.folder, 32)
    x = x_test[torch.linspace(0, len(x_test) - 1, 1000).long()].float() / 255
    pcs = pca_project.on_device(fit, "cpu", bands=pca_project.spectrum_bands(fit, [10, 25]))
    mean = pcs["mean"].view_as(x[0])
    top = pca_project.to_band(x, pca_project.on_device(fit, "cpu", pca_project.band_slice(fit, "top", 75)))
    for patch in (2, 4, 8):
        mae = model.MAE(image_size=32, patch_size=patch, channels=3, dim=32, depth=1, heads=2, decoder_dim=32,
                        decoder_depth=1, decoder_heads=2)
        mask = mae.split(mae.mask_scores(len(x), "cpu", torch.Generator().manual_seed(0)))[2]
        m = mae.unpatchify(mask[..., None].expand(-1, -1, patch * patch * 3))  # 1 on the masked patches
        windowed = pca_project.explained(x, x * (1 - m) + mean * m, x * (1 - m) + top * m, pcs)
        whole = pca_project.explained(x, mean.expand_as(x), top, pcs)
        for name, figures in (("masked patches only", windowed), ("whole image", whole)):
            print(f"patch {patch}, {name:19}: " + ", ".join(f"{band} {v:.3f}" for band, v in figures.items()))


if __name__ == "__main__":
    main()
