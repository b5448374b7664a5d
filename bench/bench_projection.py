"""One batch's band target, today's way against the smaller side, side by side in one run.

    .venv/bin/python bench/bench_projection.py [--folder data/cifar10-jpeg] [--device cuda]
        [--batch-size 512]

Today's way projects onto the band with the band's own eigenvectors: ((x - mu) V) V^T + mu, and for
a bottom-25% band V holds nearly every component. The bands partition the space, so
pca_project.to_band goes through the smaller side instead: x - ((x - mu) W) W^T with W the few top
components. Two real-image fits: CIFAR-shaped (50,000 x 32x32x3, the covariance route) and
STL-shaped (5,000 x 96x96x3, STL-10's labelled train size, the Gram route), both made of real
Fashion-MNIST pictures (resized, three channels: the image and two flips).
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import pca_project  # noqa: E402


def real_images(n, size):
    """Real Fashion-MNIST pictures as uint8 (N, 3, size, size)."""
    x, _ = data.load("fashion-mnist", "train")
    x = F.interpolate(x[:n].float(), size=size, mode="bilinear",
                      align_corners=False).round().clamp(0, 255)
    return torch.cat([x, x.flip(3), x.flip(2)], 1).to(torch.uint8)


def timed(fn, device, reps):
    """(seconds of the fastest of reps calls, the result, peak device bytes on CUDA else None)."""
    best, out = float("inf"), None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out, torch.cuda.max_memory_allocated() if device.type == "cuda" else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--folder", help="also an image folder of natural images at 32x32 "
                                    "(e.g. the CIFAR-10 JPEG copy)")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device} "
          f"({torch.cuda.get_device_name() if device.type == 'cuda' else torch.backends.cpu.get_cpu_capability()})")
    cases = [(f"{size}x{size}x3", lambda n=n, size=size: real_images(n, size))
             for n, size in ((5000, 96), (50000, 32))]
    if args.folder:
        cases.append((f"32x32x3 of {args.folder}",
                      lambda: data.load("folder", "train", args.folder, 32)[0]))
    for shape, images in cases:
        x = images()
        n = len(x)
        t0 = time.time()
        fit = pca_project.fit(x, device=device)
        print(f"{shape}: PCA of {n:,} images fitted in {time.time() - t0:.0f} s")
        band = pca_project.band_slice(fit, "bottom", 25)
        batch = x[:args.batch_size].to(device).float() / 255
        mean = fit["mean"].to(device, torch.float32)
        # what a run held on its device before
        old_V = fit["eigvecs"][:, band].to(device, torch.float32)
        t_old, want, mem_old = timed(lambda: ((batch.flatten(1) - mean) @ old_V) @ old_V.T + mean,
                                     device, args.reps)
        held_old, shape_old = old_V.numel() * 4, old_V.shape
        del old_V  # one basis on the device at a time, for the peak memory
        pcs = pca_project.on_device(fit, device, band)
        del fit
        t_new, got, mem_new = timed(lambda: pca_project.to_band(batch, pcs).flatten(1), device,
                                    args.reps)
        held_new = pcs["side"].numel() * 4
        print(f"  bottom 25% = {shape_old[1]:,} of {shape_old[0]:,} components; the other side: "
              f"{pcs['side'].shape[1]:,}")
        print(f"  one batch of {len(batch)}: band eigenvectors {t_old * 1e3:.1f} ms, "
              f"smaller side {t_new * 1e3:.2f} ms; "
              f"basis held {held_old / 2**20:,.1f} MiB -> {held_new / 2**20:,.2f} MiB "
              f"({held_new / held_old:.2%} of today's)"
              + (f"; peak device memory {mem_old / 2**20:,.0f} -> {mem_new / 2**20:,.0f} MiB"
                 if mem_old else ""))
        print(f"  largest difference between the targets: {(got - want).abs().max().item():.1e}")
        print(f"projection speed-up {shape} bottom 25%: {t_old / t_new:.0f}x")
        del pcs


if __name__ == "__main__":
    main()
