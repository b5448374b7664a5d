"""PCA of a dataset's pixels, and images rebuilt from a band of its spectrum (docs/method.md, 2).

    python pca_project.py --dataset cifar10 --pct 25

fits the PCA on the pretraining images only, never the test split (the views of --aug, as
pretrain.py does; cached next to the data), prints how many components the
bottom p% and top (100-p)% bands hold, and writes a grid: originals / bottom-p / top-(100-p).

As a library (this file imports nothing else of the project: copy it with model.py):
    pca = fit(x)                                     # x (N, C, H, W), uint8 or float in [0, 1]
    pcs = on_device(pca, device, band_slice(pca, "bottom", 25))   # what a run keeps on its device
    x_bottom = to_band(x, pcs)                       # x (float32) rebuilt from the band
"""
import contextlib
import math

import torch

def fit_bytes(n, d):
    """About the bytes fit() holds on its device for n views of d pixels, in float64: the Gram
    route (n < d) the centred data, its reflectors, the n x n product and its eigenvectors, and the
    basis; the covariance route the D x D covariance, the basis and eigh's workspace (about two
    more). STL-10's train+unlabeled flipped (210,000 views of 27,648 pixels): 24.5 GB."""
    if n < d:
        return 8 * (2 * n * d + 2 * n * n + d * d)
    return 8 * 4 * d * d


def fit(x, device=None, views=None, progress=None):
    """PCA of x's pixels: mean (D,), eigvals (D,) ascending, eigvecs (D, D) as columns (each
    column contiguous in memory), all float64. views(i, j), when given, turns images i..j-1 of x
    into the images the PCA is of (their training views: training_views), so many per image.
    progress(images done, images), when given, is called as the covariance's sums go."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    views = views or (lambda i, j: x[i:j])
    first = views(0, 1)
    n, shape = len(x) * len(first), tuple(x.shape[1:])
    d = math.prod(shape)
    if n < 2 or bool((x == x[:1]).all()):
        raise ValueError(f"the {len(x)} image(s) are all alike: a PCA of them would mean nothing")
    scale = 1 / 255 if first.dtype == torch.uint8 else 1.0
    if n < d:
        # Gram route: Xc Xc^T (N x N) has the same non-zero spectrum as Xc^T Xc, and here the
        # centred data in float64 (N x D) is smaller than the D x D covariance would be.
        xc = views(0, len(x)).to(device).flatten(1).double() * scale
        mean = xc.mean(0)
        xc -= mean
        lam, u = torch.linalg.eigh(xc @ xc.T)
        keep = lam > lam[-1] * n * torch.finfo(torch.float64).eps  # centred data has rank <= N - 1
        v = xc.T @ (u[:, keep] / lam[keep].sqrt())  # unit eigenvectors of Xc^T Xc
        del xc
        k = v.shape[1]
        # column-major, as eigh's: each component contiguous, so that a cache mapped from its file
        # reads only the pages of the components a run uses
        eigvecs = torch.empty(d, d, dtype=torch.float64, device=device).T
        eigvecs[:, d - k:] = v
        # The complement (the zero-variance directions) completes the basis of R^D: columns k..D
        # of the full Q of v's QR, formed a block at a time from its Householder reflectors, so
        # that the fit never holds a second D x D matrix (at 96 px, 6.1 GB each).
        reflectors, tau = torch.geqrf(v)
        del v
        for j in range(k, d, 1024):
            cols = torch.arange(j, min(j + 1024, d), device=device)
            unit = torch.zeros(d, len(cols), dtype=torch.float64, device=device)
            unit[cols, torch.arange(len(cols), device=device)] = 1
            eigvecs[:, cols - k] = torch.ormqr(reflectors, tau, unit)  # Q's columns j, j + 1, ...
        eigvals = torch.cat([lam.new_zeros(d - k), lam[keep]]) / (n - 1)
        return {"mean": mean.cpu(), "eigvals": eigvals.cpu(), "eigvecs": eigvecs.cpu(), "shape": shape}

    if first.dtype == torch.uint8 and device.type == "cpu":
        # Pixels minus 128 are integers in [-128, 127]: a float32 sum of 1,024 of their products
        # is at most 2^24 in size, so float32 matmuls over 1,024-row chunks are exact, and twice
        # as fast as float64 on a CPU. (On a GPU, TF32 settings could round them: float64 there.)
        dtype, offset, chunk = torch.float32, 128.0, 1024
    else:
        dtype, offset, chunk = torch.float64, 0.0, 4096
    total = torch.zeros(d, dtype=torch.float64, device=device)
    second = torch.zeros(d, d, dtype=torch.float64, device=device)
    step = chunk // len(first)  # images per chunk of views
    for i in range(0, len(x), step):  # memory bounded by a chunk: never a float64 copy of the data
        c = views(i, i + step).to(device).flatten(1).to(dtype) - offset
        total += c.sum(0, dtype=torch.float64)
        second += (c.T @ c).double()
        if progress:
            progress(min(i + step, len(x)), len(x))
    # Covariance from exact sums, in float64: (sum y y^T - N m m^T) / (N - 1) for y = x - offset,
    # in place (at 96 px each D x D matrix is 6.1 GB).
    cov = second.addr_(total, total, alpha=-1 / n).mul_(scale**2 / (n - 1))
    eigvals, eigvecs = torch.linalg.eigh(cov)
    mean = (total / n + offset) * scale
    return {"mean": mean.cpu(), "eigvals": eigvals.cpu(), "eigvecs": eigvecs.cpu(), "shape": shape}


def variance_share(pca):
    """Each component's share of the total variance (D,), ascending like the eigenvalues."""
    share = pca["eigvals"].clamp(min=0)  # eigh may return -1e-17 for a zero eigenvalue
    return share / share.sum()


def band_slice(pca, target, pct):
    """The components (a slice of the ascending eigenvectors) of the bottom-p% or top-p% variance
    band, by the exact band rule (docs/method.md, 2.3).

    bottom p: the smallest components whose cumulative variance share is <= p/100.
    top q: the complement of bottom (100 - q), so bottom p and top 100 - p partition the space.
    """
    if target not in ("bottom", "top"):
        raise ValueError(f"a band is bottom or top, not {target!r}")
    if not 0 < pct < 100:
        raise ValueError(f"a band's share is in (0, 100) percent, not {pct:g}")
    k = int((variance_share(pca).cumsum(0) <= (pct if target == "bottom" else 100 - pct) / 100).sum())
    return slice(0, k) if target == "bottom" else slice(k, len(pca["eigvals"]))


def band_name(pca, target, pct):
    """How the scripts name a band: "bottom 25% band (770 of 784 components, 24.68% of the
    variance)"."""
    b = band_slice(pca, target, pct)
    return f"{target} {pct:g}% band ({b.stop - b.start:,} of {len(pca['eigvals']):,} components, " \
           f"{100 * float(variance_share(pca)[b].sum()):.2f}% of the variance)"


def spectrum_bands(pca, edges):
    """The spectrum cut at cumulative variance shares `edges` (percent, ascending, from the bottom):
    [(name, slice)] from the top band down; edges 10 25 give top 75%, 10-25%, bottom 10%."""
    d = len(pca["eigvals"])
    cuts = [0] + [band_slice(pca, "bottom", e).stop for e in edges] + [d]
    names = [f"bottom {edges[0]:g}%"] + [f"{a:g}-{b:g}%" for a, b in zip(edges, edges[1:])] + \
        [f"top {100 - edges[-1]:g}%"]
    return [(name, slice(a, b)) for name, a, b in zip(names, cuts, cuts[1:])][::-1]


def hide_components(share, mask_share, u):
    """PMAE's mask (Bizeul et al.): per image, components taken in the random order of u (N, D) are
    hidden until their variance share (share (D,)) reaches mask_share. Bool (N, D), True = hidden.
    """
    order = u.argsort(1)
    s = share[order]
    hidden = s.cumsum(1) - s < mask_share
    return torch.empty_like(hidden).scatter_(1, order, hidden)


def split(x, pca, hidden, band=None):
    """x (N, C, H, W) rebuilt from its visible components and from its hidden ones (only those in
    the band slice, when given), each plus the mean: with no band, visible + hidden - mean = x."""
    mean, V = pca["mean"].to(x.device, x.dtype), pca["eigvecs"].to(x.device, x.dtype)
    target = hidden.clone()
    if band is not None:
        target[:, :band.start] = False
        target[:, band.stop:] = False
    with exact_float32(x.device.type):
        coef = (x.flatten(1) - mean) @ V
        return [((coef * keep) @ V.T + mean).view_as(x) for keep in (~hidden, target)]


def on_device(fit, device, band=None, bands=(), full=False):
    """What a run keeps of a fit on its device (float32): the mean; for a band, the eigenvectors of
    the smaller side of its split (a bottom-25% band holds nearly all components, its complement a
    few dozen); for the monitor, those of every band but the largest; for PCA masking, all.

    Returns pcs, a dict (D = C*H*W; tensors float32 on device):
        mean        (D,)    the fit's mean image, flattened
        band        slice   the target band's components (of the ascending eigenvectors), or None
        complement  bool    with a band: whether side holds its complement's eigenvectors
        side        (D, k)  with a band: the eigenvectors of the smaller side of its split
        bands       list    the monitored bands, [(name, slice)], top band first; () for none
        watch       (D, m)  with bands: the eigenvectors of every monitored band but the largest
        which       (m,)    with bands: the index in bands of each column of watch
        largest     int     with bands: the index of the largest band (measured as the rest)
        eigvecs     (D, D)  with full (PCA masking): every eigenvector, ascending
        share       (D,)    with full: each component's share of the variance, ascending
    """
    def f32(t):
        return t.to(device, torch.float32)
    d = len(fit["eigvals"])
    pcs = {"mean": f32(fit["mean"]), "band": band, "bands": bands}
    if band is not None:
        pcs["complement"] = band.stop - band.start > d / 2
        side = [slice(0, band.start), slice(band.stop, d)] if pcs["complement"] else [band]
        pcs["side"] = f32(torch.cat([fit["eigvecs"][:, s] for s in side], 1))
    if bands:
        sizes = [b.stop - b.start for _, b in bands]
        pcs["largest"] = sizes.index(max(sizes))
        kept = [i for i in range(len(bands)) if i != pcs["largest"]]
        pcs["watch"] = f32(torch.cat([fit["eigvecs"][:, bands[i][1]] for i in kept], 1))
        # The band of each column.
        pcs["which"] = torch.cat([torch.full((sizes[i],), i) for i in kept]).to(device)
    if full:
        pcs |= {"eigvecs": f32(fit["eigvecs"]), "share": f32(variance_share(fit))}
    return pcs


def to_band(x, pcs):
    """x (N, C, H, W) rebuilt from the band ((x - mu) V V^T + mu), through the smaller
    side of the split: the bands partition the space, so it is also x - (x - mu) W W^T, W the
    complement's."""
    if pcs is None or pcs["band"] is None:
        return x
    with exact_float32(x.device.type):
        part = ((x.flatten(1) - pcs["mean"]) @ pcs["side"]) @ pcs["side"].T
        return (x.flatten(1) - part if pcs["complement"] else part + pcs["mean"]).view_as(x)


def band_share(x, pcs):
    """The share of the variance of images x (N, C, H, W) that the band of pcs holds: what a band
    target holds of the variance of the inputs a model trains on, when x are those inputs."""
    xc = x.flatten(1) - x.flatten(1).mean(0)
    with exact_float32(x.device.type):
        side = (xc @ pcs["side"]).pow(2).sum() / xc.pow(2).sum()
    return float(1 - side if pcs["complement"] else side)


@contextlib.contextmanager
def exact_float32(device_type):
    """Projections onto a band in true float32, whatever the caller has set: no bf16 autocast
    (0.3-1% error in a bottom-25% target) and no TF32 or bf16 matmul precision (0.03-0.1%)."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(precision)


def main():
    # The script's plumbing, imported here: the method above needs none of it.
    import os

    import cli
    import data
    import files
    from checkpoints import data_of, load_pretrained, pretrained, take_flags
    from dataset_pca import load_or_fit
    from monitor import band_monitor, save_grid, shown
    from outfolder import claim_file
    from report import explained_by, target_name

    # the data flags every script takes (with --ckpt, the checkpoint's by default), and --device
    p = cli.parser(__doc__.splitlines()[0], data_from_ckpt=True)
    p.add_argument("--pct", type=cli.within(0, 100),
                   help="bottom band share in percent; the top band is 100 - pct (default: the "
                        "checkpoint's band, else 25)")
    p.add_argument("--refit", action="store_true", help="fit again even when a cached fit exists")
    p.add_argument("--cache", type=cli.path,
                   help="fit file (default DATA_DIR/cache/pca-DATASET-CxHxW.pt)")
    p.add_argument("--images", choices=("train", "unlabeled", "train+unlabeled"),
                   help="the images the PCA is fitted on (default: as pretrain.py's)")
    p.add_argument("--aug", choices=data.AUGMENTATIONS,
                   help="the PCA of the views this augmentation makes, as pretrain.py --aug fits "
                        "it (none: of the images themselves, as finetune.py --input does; "
                        "default: the checkpoint's, else flip)")
    p.add_argument("--out", type=cli.path,
                   help="PNG grid to write (default out/pca-DATASET-PCT.png)")
    p.add_argument("--n-images", type=cli.within(0, 256, high_in=True, kind=int), default=8,
                   help="test images in the grid")
    p.add_argument("--image", type=cli.path,
                   help="an image file of yours to show instead (resized to the dataset's image size)")
    p.add_argument("--ckpt", type=cli.path,
                   help="a pretrain.py checkpoint: shows its masked input and prediction too, "
                   "with its dataset, image size and band")
    args = p.parse_args()
    cfg = None
    if args.ckpt:  # its data and band; a flag that contradicts them is refused
        ckpt = load_pretrained(args.ckpt)
        cfg = ckpt["config"]
        own = {"dataset": cfg["dataset"], "image_size": cfg["image_size"],
               "images": cfg.get("images", "train"),  # older code pretrained on train only
               "aug": cfg["aug"] if cfg["pca_fit"] == "views" else "none"}
        if cfg["target"] != "original":
            own["pct"] = cfg["pct"] if cfg["target"] == "bottom" else 100 - cfg["pct"]
        take_flags(args, own)
    where, _ = data_of(cfg, args.dataset, args.data_dir, args.image_size)
    args.dataset, args.data_dir, args.image_size = where.values()
    args.pct = 25 if args.pct is None else args.pct
    args.aug = args.aug or "flip"
    out = files.writable_image(args.out or f"out/pca-{args.dataset}-{args.pct:g}.png")
    claim_file(out, inputs=[p for p in (args.ckpt, args.image, args.cache) if p])
    if args.cache and (args.refit or not os.path.exists(args.cache)):  # to be written
        claim_file(args.cache, inputs=[p for p in (args.ckpt, args.image) if p])
    shape = data.image_shape(args.dataset, args.image_size)
    # the user's picture read first: a file that is no image is refused before any fit
    x_uint8 = data.read_image(args.image, shape[-1], shape[0])[None] if args.image else None
    mae = pretrained(ckpt, shape, args.ckpt) if args.ckpt else None

    pca, seconds = load_or_fit(args.dataset, args.data_dir, args.image_size, args.cache, args.refit,
                               args.download, cli.device(args.device),
                               args.images or data.default_images(args.dataset), args.aug)
    which = pca.get("images", "train")
    images = "train split" if which == "train" else f"{which} images"
    images += "" if args.aug == "none" else f" (views of --aug {args.aug})"
    size = "x".join(map(str, pca["shape"]))
    fit = f"fitted in {seconds:.1f} s" if seconds is not None else "cached fit"
    print(f"{args.dataset} {images}, {size} = {len(pca['eigvals']):,} dims: {fit}")
    bands = [("bottom", args.pct), ("top", 100 - args.pct)]
    print("\n".join(band_name(pca, t, q) for t, q in bands))
    desc = variance_share(pca).flip(0).cumsum(0)
    print("largest components needed for 50% / 90% / 99% of the variance: "
          + " / ".join(f"{int((desc < s).sum()) + 1:,}" for s in (0.5, 0.9, 0.99)))

    if x_uint8 is None or args.ckpt:
        x_test, _ = data.load(args.dataset, "test", args.data_dir, args.image_size, args.download)
    if x_uint8 is None:  # test images spread over the split: on a class-sorted one, every class
        x_uint8 = x_test[data.spread(len(x_test), args.n_images)]
    x = x_uint8.float() / 255
    rows = [("original", x)]
    for t, q in bands:
        rows.append((f"{t} {q:g}%", to_band(x, on_device(pca, "cpu", band_slice(pca, t, q)))))
    if args.ckpt:  # the model's input and prediction, for its own target band and masking (or noise)
        band = band_slice(pca, cfg["target"], cfg["pct"]) if cfg["target"] != "original" else None
        monitored = spectrum_bands(pca, [10, 25])
        pcs = on_device(pca, "cpu", band, monitored, full=cfg["masking"] == "pca")
        rows += shown(mae, x_uint8, pcs, cfg["pca_mask_share"], cfg.get("sigma"))[1:3]
        # the band monitor on pretrain.py's monitor images, as its log lines have it at the
        # default --band-edges 10 25 (a run does not record its edges)
        x_monitor = x_test[data.spread(len(x_test), cfg["knn_test"])]
        shares = band_monitor(mae, x_monitor, pcs, cfg["pca_mask_share"], cfg.get("sigma")) or {}
        figures = (f"{name} {'-' if v is None else f'{v:.3f}'}" for name, v in shares.items())
        print(f"band monitor on {len(x_monitor):,} test images ({explained_by(cfg)})"
              + (": " + ", ".join(figures) if shares else ""))
    save_grid(rows, out)
    print(f"wrote {out} (rows: original, bottom {args.pct:g}%, top {100 - args.pct:g}%"
          + (f", input and prediction of {target_name(cfg)})" if args.ckpt else ")"))


if __name__ == "__main__":
    import cli
    cli.main_guard(main, resumable=False)
