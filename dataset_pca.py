"""A dataset's PCA (pca_project.fit), fitted on the views a model trains on and cached beside the
data, where every run of that dataset and augmentation finds it.

    pca, seconds = load_or_fit("cifar10", "./data", 32, aug="flip")   # seconds: None when cached
"""
import hashlib
import os
import time

import torch
from tqdm import tqdm

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


def free_bytes(device):
    """The memory a fit can take on a device: CUDA's free memory, or the machine's available
    memory (free pages and the page cache it can drop) for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        available = next(line for line in f if line.startswith("MemAvailable:"))
    return int(available.split()[1]) * 1024


def fit_device(device, need):
    """Where a fit that holds `need` bytes runs: the device asked for (default: CUDA where there is
    one) where it fits, else the CPU, with a line saying so; refused where neither holds it."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and need > free_bytes(device):
        data.say(f"the PCA fit needs about {need / 2**30:.1f} GiB, more than {device}'s "
                 f"{free_bytes(device) / 2**30:.1f} GiB free: fitting it on the CPU")
        device = torch.device("cpu")
    if device.type == "cpu" and need > free_bytes(device):
        raise UserError(f"the PCA fit needs about {need / 2**30:.1f} GiB and this machine has "
                        f"{free_bytes(device) / 2**30:.1f} GiB free: use fewer or smaller images "
                        "(--image-size, --images train)")
    return device


def load_or_fit(dataset, data_dir="./data", image_size=32, cache=None, refit=False, download=False,
                device=None, images="train", aug="none"):
    """The PCA of the training views (training_views, for augmentation aug) of the dataset's
    pretraining images (data.images: its train split by default, never test): read from the cache
    file, or fitted and cached. The cache's name says which images and views.

    Under torchrun the first process fits (or reads) it, the others its cache.

    Returns (pca, seconds spent fitting, or None when the cache was used).
    """
    with data.first_process_first():
        return _load_or_fit(dataset, data_dir, image_size, cache, refit, download, device, images,
                            aug)


def _load_or_fit(dataset, data_dir, image_size, cache, refit, download, device, images, aug):
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
    device = fit_device(device, pca_project.fit_bytes(n_views, x[0].numel()))
    data.say(f"fitting the PCA of {n_views:,} training views of {dataset} ({shape}, --aug {aug}; "
             f"once: it is cached in {cache})")
    bar = tqdm(total=len(x), desc="summing the covariance", unit=" images", mininterval=1,
               leave=False, disable=None if os.environ.get("RANK", "0") == "0" else True)
    try:
        pca = pca_project.fit(x, device, views, progress=lambda done, _: bar.update(done - bar.n))
    except ValueError as e:  # all alike
        raise UserError(f"{dataset}'s {images} images: {e}") from None
    finally:
        bar.close()
    pca |= {"dataset": dataset, "images": images, "aug": aug}
    write_cache(pca, cache, stamp)
    data.say(f"fitted in {time.time() - t0:.1f} s")
    return pca, time.time() - t0


def band_of(fit, target, pct):
    """pca_project.band_slice of a dataset's fit, refused where the band holds no component or no
    variance (a bottom band of components these images never vary along): its target would be
    the mean image, whatever --pct names."""
    band = pca_project.band_slice(fit, target, pct)
    share = float(pca_project.variance_share(fit)[band].sum())
    if share < 1e-9:
        raise UserError(f"the {target} {pct:g}% band of these images holds "
                        f"{band.stop - band.start:,} components and no variance ({share:.1e}); "
                        "pass a larger --pct")
    return band
