"""Three errors a band figure can carry, each against a reference that knows the answer.

    .venv/bin/python bench/band_errors.py [--folder data/cifar10-jpeg]

1. What a guess holding only the image's top-75% band is credited with, per band, by the band
   monitor's arithmetic applied inside the masked patches only (the way before issue 21) and on
   the whole image (today's): the guess knows nothing of the two low bands, so the right figure
   there is 0. Random masking 0.75, 1,000 test images, the train split's PCA, patch 2, 4 and 8.
2. The error a bottom-25% target picks up when made under bf16 autocast or a lowered float32 matmul
   precision, and with pca_project.exact_float32 (what pca_project.to_band uses), against float64:
   |target - float64 target| / |float64 target - mean| over 512 train images.
3. What a norm-pix guess holding only the normalised shape of one band (top 75% or bottom 25%) in
   every patch is credited with once made pixels with each patch's own mean and scale, measured
   against the mean image and against each patch flat at its own mean (the two readings of
   earlier code): the right figure is 0 in every band the guess does not hold. Today the monitor
   gives a norm-pix model no figure. Patch 2 and 4.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import model  # noqa: E402
import dataset_pca  # noqa: E402
import monitor  # noqa: E402
import pca_project  # noqa: E402


def shares(truth, given, guess, pcs):
    """The band monitor's arithmetic on any images: per band,
    1 - |guess - truth|^2 / |given - truth|^2."""
    err = monitor.band_variance(guess - truth, pcs)
    var = monitor.band_variance(given - truth, pcs)
    names = [name for name, _ in pcs["bands"]]
    return ", ".join(f"{name} {1 - (e / v).item():.3f}" for name, e, v in zip(names, err, var))


def tiny_mae(patch, **kwargs):
    return model.MAE(image_size=32, patch_size=patch, channels=3, dim=32, depth=1, heads=2,
                     decoder_dim=32, decoder_depth=1, decoder_heads=2, **kwargs)


def monitor_leak(fit, x_test):
    x = x_test[torch.linspace(0, len(x_test) - 1, 1000).long()].float() / 255
    pcs = pca_project.on_device(fit, "cpu", bands=pca_project.spectrum_bands(fit, [10, 25]))
    mean = pcs["mean"].view_as(x[0])
    top_band = pca_project.on_device(fit, "cpu", pca_project.band_slice(fit, "top", 75))
    top = pca_project.to_band(x, top_band)
    for patch in (2, 4, 8):
        mae = tiny_mae(patch)
        mask = mae.split(mae.mask_scores(len(x), "cpu", torch.Generator().manual_seed(0)))[2]
        m = mae.unpatchify(mask[..., None].expand(-1, -1, patch * patch * 3))  # 1: masked
        windowed = shares(x, x * (1 - m) + mean * m, x * (1 - m) + top * m, pcs)
        whole = shares(x, mean.expand_as(x), top, pcs)
        for name, figures in (("masked patches only", windowed), ("whole image", whole)):
            print(f"patch {patch}, {name:19}: {figures}")


def norm_pix_leak(fit, x_test):
    x_uint8 = x_test[torch.linspace(0, len(x_test) - 1, 1000).long()]
    x = x_uint8.float() / 255
    pcs = pca_project.on_device(fit, "cpu", bands=pca_project.spectrum_bands(fit, [10, 25]))
    mean = pcs["mean"].view_as(x[0]).expand_as(x)
    for patch in (2, 4):
        mae = tiny_mae(patch, norm_pix_loss=True)
        patches = mae.patchify(x)
        own_means = mae.unpatchify(patches.mean(-1, keepdim=True).expand_as(patches))
        for target, pct in (("top", 75), ("bottom", 25)):
            band = pca_project.on_device(fit, "cpu", pca_project.band_slice(fit, target, pct))
            part = pca_project.to_band(x, band)
            shape = model.normalize_patches(mae.patchify(part))  # the band's shape, per patch
            guess = monitor.in_pixels(mae, shape, x)  # with each patch's own mean and scale
            references = (("against the mean image", mean), ("against patch means", own_means))
            for name, given in references:
                label = f"{target} {pct}% shape, {name}"
                print(f"patch {patch}, {label:45}: {shares(x, given, guess, pcs)}")
        print(f"patch {patch}, today: {monitor.band_monitor(mae, x_uint8, pcs)} (no figure)")


def target_precision(fit, x_train):
    x = x_train[:512].float() / 255
    band = pca_project.band_slice(fit, "bottom", 25)
    pcs = pca_project.on_device(fit, "cpu", band)
    V, mean = fit["eigvecs"][:, band], fit["mean"]
    exact = (x.double().flatten(1) - mean) @ V @ V.T

    def error(target):
        return ((target.double().flatten(1) - mean - exact).norm() / exact.norm()).item()

    def plain(x):  # to_band's arithmetic without exact_float32
        return x.flatten(1) - ((x.flatten(1) - pcs["mean"]) @ pcs["side"]) @ pcs["side"].T

    print(f"float32:                            {error(plain(x)):.2e}")
    with torch.autocast("cpu", torch.bfloat16):
        print(f"bf16 autocast:                      {error(plain(x)):.2e}")
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # bf16 matmuls on a CPU with AMX; TF32 on CUDA
    print(f"matmul precision medium:            {error(plain(x)):.2e}")
    with torch.autocast("cpu", torch.bfloat16):
        print(f"to_band under both (exact_float32): {error(pca_project.to_band(x, pcs)):.2e}")
    torch.set_float32_matmul_precision(before)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="data/cifar10-jpeg",
                   help="an image folder of 32 px pictures")
    args = p.parse_args()
    fit, _ = dataset_pca.load_or_fit("folder", args.folder, 32)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print("1. the band monitor's figures for a guess of the top-75% band alone")
    monitor_leak(fit, data.load("folder", "test", args.folder, 32)[0])
    print("2. a bottom-25% target's error")
    target_precision(fit, data.load("folder", "train", args.folder, 32)[0])
    print("3. the figures earlier readings gave a norm-pix guess of one band's shape")
    norm_pix_leak(fit, data.load("folder", "test", args.folder, 32)[0])


if __name__ == "__main__":
    main()
