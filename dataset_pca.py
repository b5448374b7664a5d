"""A dataset's PCA (pca_project.fit), fitted on the views a model trains on and cached beside the
data, where every run of that dataset and augmentation finds it.

    pca, seconds = load_or_fit("cifar10", "./data", 32, aug="flip")   # seconds: None when cached
"""
import hashlib
import os
import time

import torch

import data
import pca_project
from files import UserError, read_cache, write_cache


def training_views(x, aug):
    """views for pca_project.fit: the images a model trained with augmentation aug (data.augment)
    sees, so that a band holds its share of the variance of the training inputs, not only of the
    stored images. none: the images; flip: each image and its mirror image (exactly the flip's
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
    stamp = hashlib.sha1(x.contiguous().numpy()).hexdigest()
    views = training_views(x, aug)
    if views is not None:  # the views too, as this code makes them: a changed augmentation refits
        stamp += f"-{aug}-" + hashlib.sha1(views(0, 64).contiguous().numpy()).hexdigest()
    pca = read_cache(cache, "a PCA fit", ("mean", "eigvals", "eigvecs", "shape", "dataset"))
    if pca and not refit:
        if pca["dataset"] != dataset:
            raise UserError(f"{cache} holds a PCA fit of {pca['dataset']!r}, not {dataset!r}; "
                            "pass --refit to replace it")
        if pca.get("stamp") == stamp:
            return pca | {"shape": tuple(pca["shape"])}, None
    t0 = time.time()
    n_views = len(x) * (2 if aug == "flip" else 1)
    data.say(f"fitting the PCA of {n_views:,} training views of {dataset} ({shape}, --aug {aug}; "
             f"once: it is cached in {cache})")
    try:
        pca = pca_project.fit(x, device, views)
    except ValueError as e:  # all alike
        raise UserError(f"{dataset}'s {images} images: {e}") from None
    pca |= {"dataset": dataset, "images": images, "aug": aug}
    write_cache(pca, cache, stamp)
    data.say(f"fitted in {time.time() - t0:.1f} s")
    return pca, time.time() - t0
