"""The error a bottom-25% target picks up when made under bf16 autocast or a lowered float32 matmul
precision, and with pca_project.exact_float32 (what pca_project.to_band uses), against float64.

    .venv/bin/python bench/target_precision.py [--folder data/cifar10-jpeg]

Error: |target - float64 target| / |float64 target - mean|, over 512 train images.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import pca_project  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="data/cifar10-jpeg", help="an image folder of 32 px pictures")
    args = p.parse_args()
    fit, _ = pca_project.load_or_fit("folder", args.folder, 32)
    x = data.load("folder", "train", args.folder, 32)[0][:512].float() / 255
    band = pca_project.band_slice(fit, "bottom", 25)
    pcs = pca_project.on_device(fit, "cpu", band)
    V, mean = fit["eigvecs"][:, band], fit["mean"]
    exact = (x.double().flatten(1) - mean) @ V @ V.T

    def error(target):
        return ((target.double().flatten(1) - mean - exact).norm() / exact.norm()).item()

    def plain(x):  # to_band's arithmetic without exact_float32
        return x.flatten(1) - ((x.flatten(1) - pcs["mean"]) @ pcs["side"]) @ pcs["side"].T

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"float32:                                 {error(plain(x)):.2e}")
    with torch.autocast("cpu", torch.bfloat16):
        print(f"bf16 autocast:                           {error(plain(x)):.2e}")
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # bf16 matmuls on a CPU with AMX; TF32 on CUDA
    print(f"matmul precision medium:                 {error(plain(x)):.2e}")
    with torch.autocast("cpu", torch.bfloat16):
        print(f"to_band under both (exact_float32):      {error(pca_project.to_band(x, pcs)):.2e}")
    torch.set_float32_matmul_precision(before)


if __name__ == "__main__":
    main()
