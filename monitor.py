"""What a pretrained MAE makes of fixed images: its reconstruction grid, and the band monitor (how
much of each PCA band of the hidden variance its guess recovers), in pretrain.py's log and in
pca_project.py --ckpt.

    shares = band_monitor(model, x_uint8, pcs)     # {"top 75%": 0.88, "10-25%": 0.35, ...}
    rows = shown(model, x_uint8[:8], pcs)           # [(name, images)]: original, input, ...
    save_grid(rows, "recon.png")                    # the rows, named, tiles of 64 px or more
"""
import math

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

import data
import files
import pca_project

TILE_MIN, PAD, LABEL_WIDTH = 64, 2, 110  # px: a tile's least side, the padding, the names' column


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
    masking the hidden components): data.make_batch's, with the masks and noise drawn here."""
    hidden = None
    if model.masking == "pca":
        u = torch.rand(len(x_uint8), len(pcs["share"]), device=x_uint8.device, generator=generator)
        hidden = pca_project.hide_components(pcs["share"], mask_share, u)
    inp, target = data.make_batch(x_uint8, "none", pcs, hidden=hidden)
    if sigma:
        inp = inp + sigma * torch.randn(inp.shape, device=inp.device, generator=generator)
    return x_uint8.float() / 255, inp, target


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
    patchless = model.masking in ("pca", "none")
    scores = None if patchless else model.mask_scores(len(inp), inp.device, g)
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


def band_monitor(model, x_uint8, pcs, mask_share=0.2, sigma=None):
    """pretrain.py's band monitor: per band B of the spectrum, the share of B's variance in what the
    model had to guess that its guess recovers,
    1 - |(guess - truth) V_B|^2 / |(given - truth) V_B|^2 over the images: 1 for the truth, 0 for
    a guess that adds nothing to what the model was given, negative for one worse than that; None
    outside the target band (or where the band has no such variance).

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
    """The named rows of a reconstruction grid [(name, images in [0, 1])]: original, input (masked
    patches grey; noisy), prediction (visible patches from the target; with PCA masking, input plus
    predicted hidden components), target."""
    x, inp, target, pred, m = predict(model, x_uint8, pcs, mask_share, sigma)
    if model.masking == "pca":
        rows = [inp, inp + pred - pcs["mean"].view_as(x[0]), target]
    elif sigma:
        rows = [inp, pred, target]
    else:
        rows = [inp * (1 - m) + 0.5 * m, pred * m + target * (1 - m), target]
    names = ["original", "input", "prediction", "target"]
    return list(zip(names, [r.clamp(0, 1) for r in [x, *rows]]))


def save_grid(rows, path):
    """Named rows of images [(name, (N, C, H, W) in [0, 1])] as one picture: a row each, its name
    on the left, every image scaled up (nearest) to at least TILE_MIN px so that it can be seen."""
    n, _, h, _ = rows[0][1].shape
    scale = max(1, math.ceil(TILE_MIN / h))
    images = torch.cat([images.clamp(0, 1) for _, images in rows]).float().cpu()
    images = F.interpolate(images, scale_factor=scale, mode="nearest")
    grid = make_grid(images, nrow=n, padding=PAD, pad_value=1.0)  # (3, height, width)
    tiles = Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy())
    picture = Image.new("RGB", (LABEL_WIDTH + tiles.width, tiles.height), "white")
    picture.paste(tiles, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(picture)
    for k, (name, _) in enumerate(rows):
        middle = PAD + k * (h * scale + PAD) + h * scale // 2
        draw.text((6, middle), name, fill="black", anchor="lm")
    files.write_atomic(path, picture.save)
