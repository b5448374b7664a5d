"""Host memory of a large PCA, side by side in one run: the Gram-route fit before and after it
formed its basis a block at a time, and what a run holds of a cached fit read whole against
mapped (what issue 22 asks of a 96-px STL-10 run, at a size this machine allows).

    .venv/bin/python bench/bench_pca_memory.py --folder data/cifar10-jpeg --size 48

Real pictures: the folder's test split resized to --size px, the first --n of them (N < D: the
Gram route, as STL-10's 5,000 labelled images at 96 px take). Each measurement runs in a fresh
process and reports its peak resident memory (ru_maxrss) and, for a run, its resident anonymous
and file-backed memory once it holds what it uses (a bottom-25% band and the band monitor)."""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, ROOT)
import data, pca_project
what, folder, size, n, cache = sys.argv[1:6]
def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) / 2**20 for k in ("RssAnon", "RssFile")}  # GiB
if what in ("fit-before", "fit-now"):
    x = data.load("folder", "test", folder, int(size))[0][:int(n)]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if what == "fit-now":
        pca = pca_project.fit(x, device="cpu")
    else:  # the code before: the complete QR, then a concatenated copy of the basis
        xc = x.flatten(1).double() / 255
        xc -= xc.mean(0)
        lam, u = torch.linalg.eigh(xc @ xc.T)
        keep = lam > lam[-1] * len(x) * torch.finfo(torch.float64).eps
        v = xc.T @ (u[:, keep] / lam[keep].sqrt())
        null = torch.linalg.qr(v, mode="complete").Q[:, v.shape[1]:]
        pca = {"eigvecs": torch.cat([null, v], 1)}
    if cache != "-":
        torch.save(pca | {"dataset": "folder", "shape": tuple(x.shape[1:]), "stamp": ""}, cache)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"peak_gib": peak - base, "basis_gib": pca["eigvecs"].numel() * 8 / 2**30}))
else:  # a run: the cached fit read whole (before) or mapped (now), then what it keeps
    base = status()  # the interpreter and torch's libraries
    fit = torch.load(cache, weights_only=True, mmap=what == "run-now")
    band = pca_project.band_slice(fit, "bottom", 25)
    pcs = pca_project.on_device(fit, "cpu", band, pca_project.spectrum_bands(fit, [10, 25]))
    used = pcs["side"].shape[1] + pcs["watch"].shape[1]  # the components it reads
    print(json.dumps({k: v - base[k] for k, v in status().items()} | {"used": used}))
""".replace("ROOT", repr(ROOT))


def child(*args):
    p = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="data/cifar10-jpeg")
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--n", type=int, default=2000)
    args = p.parse_args()
    d = 3 * args.size ** 2
    cache = os.path.join(args.folder, "cache", f"bench-pca-{args.size}px.pt")
    print(f"{args.n:,} real pictures at {args.size} px: D = {d:,}, "
          f"a basis of {d * d * 8 / 2**30:.2f} GiB")
    before = child("fit-before", args.folder, args.size, args.n, "-")
    now = child("fit-now", args.folder, args.size, args.n, cache)
    print(f"Gram-route fit, peak host memory above the images: before {before['peak_gib']:.2f} GiB "
          f"({before['peak_gib'] / before['basis_gib']:.1f} bases), now {now['peak_gib']:.2f} GiB "
          f"({now['peak_gib'] / now['basis_gib']:.1f} bases)")
    whole, mapped = child("run-before", "-", 0, 0, cache), child("run-now", "-", 0, 0, cache)
    print("a run holding a bottom-25% band and the band monitor: "
          f"cache read whole {whole['RssAnon']:.2f} GiB anonymous; "
          f"mapped {mapped['RssAnon']:.2f} GiB anonymous + {mapped['RssFile']:.2f} GiB of file "
          "pages (shared between processes, given back under pressure): "
          f"the {mapped['used']:,} components it uses, {mapped['used'] * d * 8 / 2**30:.3f} GiB")
    os.remove(cache)


if __name__ == "__main__":
    main()
