"""PCA of a dataset's pixels, and images rebuilt from a band of its spectrum (SPEC 2, Algorithm 1).

    python pca_project.py --dataset cifar10 --pct 25

fits the PCA on the train split only (cached next to the data), prints how many components the
bottom p% and top (100-p)% bands hold, and writes a grid: originals / bottom-p / top-(100-p).

As a library:
    pca = fit(x)                                     # x (N, C, H, W), uint8 or float in [0, 1]
    pcs = on_device(pca, device, band_slice(pca, "bottom", 25))   # what a run keeps on its device
    x_bottom = to_band(x, pcs)                       # x (float32) rebuilt from the band
"""
import contextlib
import hashlib
import math
import os
import time

import torch

import cli
import data
from checkpoints import load_pretrained, pretrained
from report import explained_by, target_name


def fit(x, device=None, views=None):
    """PCA of x's pixels: mean (D,), eigvals (D,) ascending, eigvecs (D, D) as columns (each
    column contiguous in memory), all float64. views(i, j), when given, turns images i..j-1 of x
    into the images the PCA is of (their training views: training_views), so many per image."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    views = views or (lambda i, j: x[i:j])
    first = views(0, 1)
    n, shape = len(x) * len(first), tuple(x.shape[1:])
    d = math.prod(shape)
    if n < 2 or bool((x == x[:1]).all()):
        raise cli.UserError(f"the train split's {len(x)} image(s) are all alike: "
                            "a PCA of them would mean nothing")
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
        # stays below 2^24, so float32 matmuls over 1,024-row chunks are exact, and twice as fast
        # as float64 on a CPU. (On a GPU, TF32 settings could round them: float64 there.)
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
    band, by the exact rule of SPEC 2.4.

    bottom p: the smallest components whose cumulative variance share is <= p/100.
    top q: the complement of bottom (100 - q), so bottom p and top 100 - p partition the space.
    """
    if target not in ("bottom", "top"):
        raise cli.UserError(f"band target must be bottom or top, got {target!r}")
    if not 0 < pct < 100:
        raise cli.UserError(f"--pct must be in (0, 100), got {pct:g}")
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
    few dozen); for the monitor, those of every band but the largest; for PCA masking, all."""
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
    """x (N, C, H, W) rebuilt from the band (SPEC 2.5: (x - mu) V V^T + mu), through the smaller
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


def band_variance(diff, pcs):
    """|diff V_B|^2 summed over the images (N, C, H, W), per monitored band B of pcs["bands"]
    (V_B its eigenvectors); the largest band's as the rest of |diff|^2."""
    diff = diff.flatten(1)
    sq = torch.zeros(len(pcs["bands"]), device=diff.device)
    sq.index_add_(0, pcs["which"], (diff @ pcs["watch"]).pow(2).sum(0))
    sq[pcs["largest"]] = diff.pow(2).sum() - sq.sum()
    return sq


def inputs(model, x_uint8, pcs, mask_share, sigma, generator):
    """The images in [0, 1], the model's input (the images; with PCA masking their visible
    components; with sigma, plus noise) and its target (the images or their band; with PCA
    masking the hidden components)."""
    x = x_uint8.float() / 255
    if model.masking == "pca":
        u = torch.rand(len(x), len(pcs["share"]), device=x.device, generator=generator)
        inp, target = split(x, pcs, hide_components(pcs["share"], mask_share, u), pcs["band"])
    else:
        inp, target = x, to_band(x, pcs)
    if sigma:
        inp = inp + sigma * torch.randn(inp.shape, device=inp.device, generator=generator)
    return x, inp, target


def in_pixels(model, pred, target):
    """A prediction (N, T, p*p*C) as an image; with norm-pix-loss, the per-patch normalisation
    undone with the target's own statistics."""
    if model.norm_pix_loss:
        tp = model.patchify(target)
        pred = pred * (tp.var(-1, keepdim=True) + 1e-6).sqrt() + tp.mean(-1, keepdim=True)
    return model.unpatchify(pred.float())


@torch.no_grad()
def predict(model, x_uint8, pcs, mask_share=0.2, sigma=None):
    """A pretrained MAE on fixed images with the same masks (or noise) every time: (images, input,
    target, prediction, mask image (1 = masked patch)), the prediction in pixels even with
    norm-pix-loss."""
    model.eval()
    g = torch.Generator(x_uint8.device).manual_seed(0)
    x, inp, target = inputs(model, x_uint8, pcs, mask_share, sigma, g)
    _, pred, mask = model(inp, target, generator=g)
    m = model.unpatchify(mask[..., None].expand(*mask.shape, model.patchify(target).shape[-1]))
    return x, inp, target, in_pixels(model, pred, target), m


@torch.no_grad()
def completed(model, x_uint8, pcs, mask_share=0.2, sigma=None, max_passes=100):
    """The model's guess of the whole target, each patch guessed while it was hidden: passes of the
    model's own masking, on fixed images, until every patch of every image has been hidden once;
    each patch comes from the first pass that hid it. Returns (input, target, guess), images
    (N, C, H, W). Random and block masking take two passes: the second keeps the patches of the
    highest scores of the first one's field, as likely a mask as the lowest (the field's values are
    symmetric), and hides every patch the first kept (at a mask ratio of 0.5 or more). Other
    cases draw afresh until all are hidden;
    maskings that hide no patch (PCA masking, noise) take one pass."""
    model.eval()
    g = torch.Generator(x_uint8.device).manual_seed(0)
    _, inp, target = inputs(model, x_uint8, pcs, mask_share, sigma, g)
    guess = torch.zeros_like(model.patchify(target))
    todo = torch.ones(guess.shape[:2], dtype=torch.bool, device=guess.device)
    scores = None if model.masking in ("pca", "none") else model.mask_scores(len(inp), inp.device, g)
    for i in range(max_passes):
        _, pred, mask = model(inp, target, scores=scores)
        take = todo & mask.bool()
        guess[take] = pred.float()[take]
        todo &= ~take
        if not todo.any():
            return inp, target, in_pixels(model, guess, target)
        if i == 0 and model.masking != "grid":
            scores = -scores  # the highest scores kept
        else:  # grid masking, or a mask ratio under 0.5: fresh draws
            scores = model.mask_scores(len(inp), inp.device, g)
    raise RuntimeError(f"{max_passes} passes of {model.masking} masking left patches never hidden")


def monitor(model, x_uint8, pcs, mask_share=0.2, sigma=None):
    """pretrain.py's band monitor: per band B of the spectrum, the share of B's variance in what the
    model had to guess that its guess recovers, 1 - |(guess - truth) V_B|^2 / |(given - truth) V_B|^2
    over the images: 1 for the truth, 0 for a guess that adds nothing to what the model was given,
    negative for one worse than that; None outside the target band (or where the band has no such
    variance).

    Patch maskings: the whole target against the mean image, each patch guessed while it was
    hidden (completed). Comparing only the masked patches would cut them out at their borders, and
    the cut puts energy into every band: a guess of the top band alone would be credited with much
    of the others. PCA masking: the hidden components, the visible ones given.

    Norm-pix loss: no figure (returns None). Such a model predicts each hidden patch up to its own
    mean and scale, which it is never asked for: made pixels with the hidden patch's own mean and
    scale, a guess of the normalised top-75% shape alone is credited with 0.24 of the 10-25% band
    (patch 4, CIFAR-10), and made pixels with anything else, the guess is charged for what it was
    not asked. No pixel-space reading credits it with only what it knows."""
    if model.norm_pix_loss:
        return None
    inp, target, guess = completed(model, x_uint8, pcs, mask_share, sigma)
    mean = pcs["mean"].view_as(inp[0])
    given = mean.expand_as(target)  # what a guess of nothing is worth
    if model.masking == "pca":  # the input holds the visible components; the rest was to be guessed
        truth, given, guess = inp + target - mean, inp + given - mean, inp + guess - mean
    else:
        truth = target
    err, var = band_variance(guess - truth, pcs), band_variance(given - truth, pcs)
    shares = {name: 1 - (e / v).item() if v > 1e-6 * var.sum() else None
              for (name, _), e, v in zip(pcs["bands"], err, var)}
    band = pcs["band"]
    if band is not None:
        outside = [name for name, b in pcs["bands"] if b.stop <= band.start or b.start >= band.stop]
        shares |= dict.fromkeys(outside)
    return shares


def shown(model, x_uint8, pcs, mask_share=0.2, sigma=None):
    """The rows of a reconstruction grid, in [0, 1]: input (masked patches grey; noisy), prediction
    (visible patches from the target; with PCA masking, input plus predicted hidden components),
    target, original."""
    x, inp, target, pred, m = predict(model, x_uint8, pcs, mask_share, sigma)
    if model.masking == "pca":
        rows = [inp, inp + pred - pcs["mean"].view_as(x[0]), target, x]
    elif sigma:
        rows = [inp, pred, target, x]
    else:
        rows = [inp * (1 - m) + 0.5 * m, pred * m + target * (1 - m), target, x]
    return [r.clamp(0, 1) for r in rows]


def training_views(x, aug):
    """views for fit: the images a model trained with augmentation aug (data.augment) sees, so
    that a band holds its share of the variance of the training inputs, not only of the stored
    images. none: the images; flip: each image and its mirror image (exactly the flip's
    distribution); crop: one random resized crop of each image (fixed draws, seed 0). A crop
    upsamples, which smooths: fitted on the stored images, the bottom 25% of CIFAR-10 keeps only
    0.81 of its energy in cropped views, the bottom 10% only 0.58."""
    if aug == "none":
        return None
    if aug == "flip":
        return lambda i, j: torch.cat([x[i:j], x[i:j].flip(3)])
    u = torch.rand(len(x), 5, generator=torch.Generator().manual_seed(0))
    return lambda i, j: data.augment(x[i:j].float() / 255, aug, u[i:j])


def load_or_fit(dataset, data_dir="./data", image_size=32, cache=None, refit=False, download=False,
                device=None, images="train", aug="none"):
    """The PCA of the training views (training_views, for augmentation aug) of the dataset's
    pretraining images (data.images: its train split by default, never test): read from the cache
    file, or fitted and cached. The cache's name says which images and views.

    Returns (pca, seconds spent fitting, or None when the cache was used).
    """
    x = data.images(dataset, images, data_dir, image_size, download)
    which = ("" if images == "train" else f"-{images}") + ("" if aug == "none" else f"-{aug}")
    shape = "x".join(map(str, x.shape[1:]))
    cache = cache or os.path.join(data_dir, "cache", f"pca-{dataset}{which}-{shape}.pt")
    # A cached fit is reused only for the very same images: a hash of their bytes.
    stamp = hashlib.sha1(x.contiguous().numpy()).hexdigest() + ("" if aug == "none" else f"-{aug}")
    pca = cli.read_cache(cache, "a PCA fit", ("mean", "eigvals", "eigvecs", "shape", "dataset"))
    if pca and not refit:
        if pca["dataset"] != dataset:
            raise cli.UserError(f"{cache} holds a PCA fit of {pca['dataset']!r}, not {dataset!r}; "
                                "pass --refit to replace it")
        if pca.get("stamp") == stamp:
            return pca | {"shape": tuple(pca["shape"])}, None
    t0 = time.time()
    pca = fit(x, device, training_views(x, aug)) | {"dataset": dataset, "images": images, "aug": aug}
    cli.write_cache(pca, cache, stamp)
    return pca, time.time() - t0


def main():
    p = cli.parser(__doc__.splitlines()[0])  # the data flags every script takes, and --device
    p.add_argument("--pct", type=cli.within(0, 100), default=25,
                   help="bottom band share in percent; the top band is 100 - pct")
    p.add_argument("--refit", action="store_true", help="fit again even when a cached fit exists")
    p.add_argument("--cache", help="fit file (default DATA_DIR/cache/pca-DATASET-CxHxW.pt)")
    p.add_argument("--images", choices=("train", "unlabeled", "train+unlabeled"),
                   help="the images the PCA is fitted on (default: as pretrain.py's)")
    p.add_argument("--aug", default="flip", choices=data.AUGMENTATIONS,
                   help="the PCA of the views this augmentation makes, as pretrain.py --aug fits "
                        "it (none: of the images themselves, as finetune.py --input does)")
    p.add_argument("--out", help="PNG grid to write (default out/pca-DATASET-PCT.png)")
    p.add_argument("--n-images", type=cli.positive, default=8, help="test images in the grid")
    p.add_argument("--image",
                   help="an image file of yours to show instead (resized to the dataset's image size)")
    p.add_argument("--ckpt", help="a pretrain.py checkpoint: shows its masked input and prediction too, "
                   "with its dataset, image size and band")
    args = p.parse_args()
    if args.ckpt:
        ckpt = load_pretrained(args.ckpt)
        cfg = ckpt["config"]
        args.dataset, args.image_size = cfg["dataset"], cfg["image_size"]
        args.images = cfg.get("images", "train")  # older code pretrained on train only
        args.aug = cfg["aug"] if cfg["pca_fit"] == "views" else "none"
        if cfg["target"] != "original":
            args.pct = cfg["pct"] if cfg["target"] == "bottom" else 100 - cfg["pct"]
    out = cli.writable_image(args.out or f"out/pca-{args.dataset}-{args.pct:g}.png")
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
    x_uint8 = x_test[:args.n_images] if x_uint8 is None else x_uint8
    x = x_uint8.float() / 255
    rows = [x] + [to_band(x, on_device(pca, "cpu", band_slice(pca, t, q))).clamp(0, 1) for t, q in bands]
    if args.ckpt:  # the model's input and prediction, for its own target band and masking (or noise)
        band = band_slice(pca, cfg["target"], cfg["pct"]) if cfg["target"] != "original" else None
        monitored = spectrum_bands(pca, [10, 25])
        pcs = on_device(pca, "cpu", band, monitored, full=cfg["masking"] == "pca")
        rows += shown(mae, x_uint8, pcs, cfg["pca_mask_share"], cfg.get("sigma"))[:2]
        # the band monitor on pretrain.py's monitor images, as its log lines have it
        n = min(cfg["knn_test"], len(x_test))
        x_monitor = x_test[torch.linspace(0, len(x_test) - 1, n).long()]
        shares = monitor(mae, x_monitor, pcs, cfg["pca_mask_share"], cfg.get("sigma")) or {}
        figures = (f"{name} {'-' if v is None else f'{v:.3f}'}" for name, v in shares.items())
        print(f"band monitor on {n:,} test images ({explained_by(cfg)})"
              + (": " + ", ".join(figures) if shares else ""))
    cli.save_png(torch.cat(rows), out, nrow=len(x), padding=1)
    print(f"wrote {out} (rows: original, bottom {args.pct:g}%, top {100 - args.pct:g}%"
          + (f", input and prediction of {target_name(cfg)})" if args.ckpt else ")"))


if __name__ == "__main__":
    cli.main_guard(main, resumable=False)
