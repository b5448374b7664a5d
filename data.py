"""Datasets as whole uint8 tensors, and their augmentation done in batches on the device.

load(name, split, data_dir) -> (x, y): x uint8 (N, C, H, W), y int64 (N,) (-1 where unlabelled).
The first load decodes the files on disk (torchvision's own layouts) and caches the tensors in
DATA_DIR/cache, so later loads are one torch.load.
"""
import gzip
import hashlib
import os
import pickle
import shutil

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from torchvision.transforms.v2 import functional as TF

from cli import UserError, read_cache, write_cache

DATASETS = ("cifar10", "cifar100", "stl10", "fashion-mnist", "folder")
SPLITS = {"stl10": ("train", "test", "unlabeled")}  # every other dataset: train, test
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# Each dataset's folder under DATA_DIR (its cache is stamped with the files' names, sizes and
# times), and how to get its files, for the one-line message when they are missing.
SOURCE = {"cifar10": ("cifar-10-batches-py", "extract cifar-10-python.tar.gz there"),
          "cifar100": ("cifar-100-python", "extract cifar-100-python.tar.gz there"),
          "stl10": ("stl10_binary", "extract stl10_binary.tar.gz there"),
          "fashion-mnist": ("FashionMNIST/raw", "or `apt-get install dataset-fashion-mnist`")}


def load(name, split, data_dir="./data", image_size=32, download=False):
    """The whole split as (uint8 (N, C, H, W), int64 (N,)), cached in DATA_DIR/cache after the first
    load."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS.get(name, ("train", "test")):
        raise UserError(f"{name} has no split {split!r}; it has {', '.join(SPLITS.get(name, ('train', 'test')))}")
    key = f"{name}-{split}" + (f"-{image_size}px" if name == "folder" else "")
    cache = os.path.join(data_dir, "cache", key + ".pt")
    if name == "fashion-mnist":
        _unpack_debian_fashion_mnist(data_dir)
    # Files can change under us; their listing (names, sizes, times) tells when the cache is stale.
    stamp = _stamp(os.path.join(data_dir, split if name == "folder" else SOURCE[name][0]))
    cached = read_cache(cache, "a dataset cache", ("x", "y"))
    if cached and cached.get("stamp") == stamp:
        return cached["x"], cached["y"]
    if name == "folder":
        x, y = _read_folder(data_dir, split, image_size)
    else:
        x, y = _read_torchvision(name, split, data_dir, download)
    write_cache({"x": x, "y": y}, cache, stamp)
    return x, y


def mean_image(x):
    """The mean (C, H, W) of uint8 images (N, C, H, W), in [0, 1], summed in chunks: never a float
    copy of them."""
    total = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    for i in range(0, len(x), 4096):
        total += x[i:i + 4096].sum(0, dtype=torch.float64)
    return (total / len(x) / 255).float()


AUGMENTATIONS = ("none", "flip", "crop")


def augment(x, kind, u=None):
    """Augment a float batch (N, C, H, W) on its device, all images at once.

    flip: horizontal flip with probability 1/2. crop: a random resized crop drawn once per image,
    area 0.2-1 and aspect ratio 3/4-4/3 (log-uniform) as in MAE's pretraining, a side longer than
    the image clamped to it (torchvision's RandomResizedCrop redraws up to 10 times, then crops the
    centre), resized back to H x W bilinearly (MAE: bicubic), plus the flip. u: the (N, 5) uniform
    numbers that decide it all, drawn here unless given (distributed runs draw them for the global
    batch)."""
    if kind == "none":
        return x
    u = torch.rand(len(x), 5, device=x.device) if u is None else u
    u_flip, u_area, u_ratio, u_x, u_y = u.unbind(1)  # one draw for each decision
    flip = torch.where(u_flip < 0.5, -1.0, 1.0)
    if kind == "flip":
        return torch.where(flip[:, None, None, None] < 0, x.flip(3), x)
    area = 0.2 + 0.8 * u_area
    ratio = torch.exp(np.log(3 / 4) + np.log(16 / 9) * u_ratio)  # log-uniform in 3/4 .. 4/3
    w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    # the crop's centre: anywhere that keeps it inside the image
    return resample(x, w * flip, (1 - w) * (2 * u_x - 1), h, (1 - h) * (2 * u_y - 1))


def resample(x, scale_x, shift_x, scale_y, shift_y):
    """Bilinear resampling of each image through an axis-aligned affine map of [-1, 1] coordinates
    (grid_sample's convention, border padding): output point u reads input point scale * u + shift.

    The map is separable, so the result is Ry @ x @ Rx^T with an interpolation matrix per image and
    axis: two batched matmuls, about twice as fast as grid_sample on a CPU.
    """
    n, c, h, w = x.shape

    def weights(scale, shift, size):  # (N, size, size): row i holds the bilinear weights of output pixel i
        out = (2 * torch.arange(size, device=x.device) + 1) / size - 1
        src = ((scale[:, None] * out + shift[:, None] + 1) * size - 1) / 2
        src = src.clamp(0, size - 1)
        return (1 - (src[..., None] - torch.arange(size, device=x.device)).abs()).clamp(min=0)

    rows = torch.bmm(x.reshape(n, c * h, w), weights(scale_x, shift_x, w).transpose(1, 2))
    out = torch.bmm(weights(scale_y, shift_y, h), rows.view(n, c, h, w).transpose(1, 2).reshape(n, h, c * w))
    return out.view(n, h, c, w).transpose(1, 2)


def _missing(name, data_dir, problem="not found"):
    """The one-line error that says where the dataset's files go."""
    if name == "folder":
        return UserError(f"{name} {problem}: put it at {data_dir}/train/CLASS/*.jpg and {data_dir}/test/CLASS/*.jpg")
    folder, how = SOURCE[name]
    return UserError(f"{name} {problem}: put it at {os.path.join(data_dir, folder)}/ ({how}, or pass --download)")


def _read_torchvision(name, split, data_dir, download):
    # torchvision's constructors check md5 sums of the official archives, which rejects any
    # subset or repackaging of the same format; we read its layouts directly instead.
    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100,
           "stl10": datasets.STL10, "fashion-mnist": datasets.FashionMNIST}[name]
    if download:
        try:
            cls(data_dir, download=True)
        except Exception as e:
            raise _missing(name, data_dir, f"download failed ({type(e).__name__}: {e})") from None
    try:
        if name == "fashion-mnist":
            ds = cls(data_dir, train=split == "train")
            return ds.data.unsqueeze(1).contiguous(), ds.targets.long()
        if name == "stl10":
            return _read_stl10(os.path.join(data_dir, cls.base_folder), split)
        files = cls.train_list if split == "train" else cls.test_list
        xs, ys = [], []
        for fname, _md5 in files:
            with open(os.path.join(data_dir, cls.base_folder, fname), "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            xs.append(entry["data"])
            ys.extend(entry["labels" if name == "cifar10" else "fine_labels"])
        x = torch.from_numpy(np.concatenate(xs).reshape(-1, 3, 32, 32))
        return x, torch.tensor(ys, dtype=torch.int64)
    except (FileNotFoundError, RuntimeError):
        raise _missing(name, data_dir) from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
        raise UserError(f"{name} files under {data_dir} are corrupt ({type(e).__name__}: {e})") from None


def _read_stl10(root, split):
    images = {"train": "train_X.bin", "test": "test_X.bin", "unlabeled": "unlabeled_X.bin"}[split]
    # STL-10 stores each image column-major: transpose H and W back.
    x = torch.from_numpy(np.fromfile(os.path.join(root, images), dtype=np.uint8))
    x = x.reshape(-1, 3, 96, 96).transpose(2, 3).contiguous()
    if split == "unlabeled":
        return x, torch.full((len(x),), -1, dtype=torch.int64)
    labels = np.fromfile(os.path.join(root, images.replace("_X", "_y")), dtype=np.uint8)
    return x, torch.from_numpy(labels.astype(np.int64) - 1)  # files count classes from 1


def _unpack_debian_fashion_mnist(data_dir):
    """Copy Debian's gzipped idx files into torchvision's raw layout, once."""
    raw = os.path.join(data_dir, "FashionMNIST", "raw")
    if not os.path.isdir(DEBIAN_FASHION_MNIST):
        return
    for gz in sorted(os.listdir(DEBIAN_FASHION_MNIST)):
        dst = os.path.join(raw, gz.removesuffix(".gz"))
        if gz.endswith(".gz") and not os.path.exists(dst):
            os.makedirs(raw, exist_ok=True)
            with gzip.open(os.path.join(DEBIAN_FASHION_MNIST, gz)) as f, open(dst + ".tmp", "wb") as out:
                shutil.copyfileobj(f, out)
            os.replace(dst + ".tmp", dst)


def _stamp(root):
    if not os.path.isdir(root):
        return ""
    h = hashlib.sha1()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for f in sorted(filenames):
            path = os.path.join(dirpath, f)
            st = os.stat(path) if os.path.exists(path) else os.lstat(path)  # a dangling link: read_image names it
            h.update(f"{dirpath}/{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_folder(data_dir, split, image_size):
    train_dir, split_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, split)
    if not os.path.isdir(train_dir) or not os.path.isdir(split_dir):
        raise _missing("folder", data_dir)
    classes = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    if unknown := sorted({e.name for e in os.scandir(split_dir) if e.is_dir()} - set(classes)):
        raise UserError(f"{split_dir}/{unknown[0]} is a class with no train folder: its images could never be right")
    class_to_idx = {c: i for i, c in enumerate(classes)}  # the test split keeps the train split's indices
    samples = make_dataset(split_dir, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True) if classes else []
    if not samples:
        raise UserError(f"no images under {split_dir}: expected {split_dir}/CLASS/*.jpg")
    x = torch.empty(len(samples), 3, image_size, image_size, dtype=torch.uint8)
    for i, (path, _) in enumerate(samples):
        x[i] = read_image(path, image_size)
    return x, torch.tensor([c for _, c in samples], dtype=torch.int64)


def read_image(path, size, channels=3):
    """An image file as uint8 (channels, size, size): resized (shorter side) and centre-cropped;
    16-bit grey scaled to 8 bits (PIL's RGB conversion would clip it)."""
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I"):  # I, I;16: 16-bit grey
                img = Image.fromarray((np.asarray(img) >> 8).astype(np.uint8))
            img = TF.pil_to_tensor(img.convert("RGB" if channels == 3 else "L"))
            return TF.center_crop(TF.resize(img, size, antialias=True), size)
    except OSError as e:  # unreadable, truncated, not an image, a dangling link
        raise UserError(f"cannot read image {path} ({e.strerror or e})") from None
