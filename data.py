"""Datasets as whole uint8 tensors, their augmentation done in batches on the device, and a
pretraining batch's input and target (make_batch).

load(name, split, data_dir) -> (x, y): x uint8 (N, C, H, W), y int64 (N,) (-1 where unlabelled).
The first load decodes the files on disk (torchvision's own layouts) and caches the tensors in
DATA_DIR/cache, so later loads are one torch.load.
"""
import contextlib
import gzip
import hashlib
import os
import pickle
import shutil

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torchvision import datasets
from torchvision.datasets import mnist
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

import pca_project
from files import UserError, open_file, read_cache, walk, write_atomic, write_cache

DATASETS = ("cifar10", "cifar100", "stl10", "fashion-mnist", "tinyimagenet", "folder")
SPLITS = {"stl10": ("train", "test", "unlabeled")}  # every other dataset: train, test
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# Each dataset's folder under DATA_DIR (its cache is stamped with the files' names, sizes and
# times), and how to get its files, for the one-line message when they are missing.
SOURCE = {"cifar10": ("cifar-10-batches-py", "extract cifar-10-python.tar.gz there"),
          "cifar100": ("cifar-100-python", "extract cifar-100-python.tar.gz there"),
          "stl10": ("stl10_binary", "extract stl10_binary.tar.gz there"),
          "fashion-mnist": ("FashionMNIST/raw", "or `apt-get install dataset-fashion-mnist`"),
          "tinyimagenet": ("tiny-imagenet-200", "unzip tiny-imagenet-200.zip there")}


# The classes of each dataset; a folder's are its train split's class folders.
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "stl10": 10, "fashion-mnist": 10}


def image_shape(name, image_size=32):
    """The (C, H, W) of a dataset's images, known from the arguments alone."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    fixed = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "stl10": (3, 96, 96),
             "fashion-mnist": (1, 28, 28), "tinyimagenet": (3, 64, 64)}
    return fixed.get(name, (3, image_size, image_size))


def num_classes(name, data_dir="./data"):
    """The classes an evaluation tells apart (refused below two: every guess would be right)."""
    classes = _classes(name, data_dir)
    if classes < 2:
        raise UserError(f"{name} at {data_dir} has {classes} class: evaluation needs two or more")
    return classes


_FIRST = []  # the first_process_first blocks this process is in


@contextlib.contextmanager
def first_process_first():
    """Under torchrun, the first process runs the block (reading files, fitting a PCA, writing
    their caches) while the others wait; then they run it, finding the caches. Blocks within
    blocks wait once."""
    others = not _FIRST and dist.is_initialized() and dist.get_world_size() > 1
    if others and dist.get_rank() > 0:
        dist.barrier()
    _FIRST.append(True)
    try:
        yield
    finally:
        _FIRST.pop()
    if others and dist.get_rank() == 0:
        dist.barrier()


def load(name, split, data_dir="./data", image_size=32, download=False):
    """The whole split as (uint8 (N, C, H, W), int64 (N,)), cached in DATA_DIR/cache after the first
    load; its labels checked (check_labels) whether read or cached. Under torchrun the first
    process reads the files, the others its cache."""
    with first_process_first():
        return _load(name, split, data_dir, image_size, download)


def source(name, data_dir, split):
    """The folder a split's files are read from: a folder dataset's split folder, or the folder
    its archive unpacks to."""
    return os.path.join(data_dir, split if name == "folder" else SOURCE.get(name, (name,))[0])


def sources(name, data_dir):
    """The folders a dataset's files are read from (no output may go there)."""
    return [source(name, data_dir, split) for split in SPLITS.get(name, ("train", "test"))]


def _load(name, split, data_dir, image_size, download):
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS.get(name, ("train", "test")):
        raise UserError(f"{name} has no split {split!r}; it has {', '.join(SPLITS.get(name, ('train', 'test')))}")
    key = f"{name}-{split}" + (f"-{image_size}px" if name == "folder" else "")
    cache = os.path.join(data_dir, "cache", key + ".pt")
    if name == "fashion-mnist":
        _unpack_debian_fashion_mnist(data_dir)
    # Files can change under us; their listing (names, sizes, times) tells when the cache is stale,
    # and a folder's labels are indices into its train classes, whose names the stamp holds too.
    stamp = _stamp(source(name, data_dir, split))
    if name == "folder":
        stamp += "/" + "/".join(_folder_classes(data_dir))
    cached = read_cache(cache, "a dataset cache", ("x", "y"))
    fresh = cached is not None and cached.get("stamp") == stamp
    if fresh:
        x, y = cached["x"], cached["y"]
    else:
        say(f"reading {name}'s {split} split from {data_dir} (once: it is cached in {cache})")
        x, y = _read(name, split, data_dir, image_size, download)
    classes = _classes(name, data_dir)
    check_labels(name, split, x, y, classes, where=os.path.join(data_dir, split
                 if name == "folder" else SOURCE[name][0]))
    if not fresh:
        write_cache({"x": x, "y": y}, cache, stamp)
    return x, y


def say(text):
    """A line on what is happening (reading, fitting), named by its process under torchrun."""
    rank = os.environ.get("RANK", "0")
    print(text if rank == "0" else f"process {rank}: {text}", flush=True)


def _read(name, split, data_dir, image_size, download):
    """The split read from its files (no cache)."""
    if name == "folder":
        return _read_folder(data_dir, split, image_size)
    if name == "tinyimagenet":
        return _read_tinyimagenet(os.path.join(data_dir, SOURCE[name][0]), split)
    return _read_torchvision(name, split, data_dir, download)


def check_labels(name, split, x, y, classes, where):
    """The one check of labels, for every dataset: one per image, each a class (0 .. classes - 1;
    -1 throughout an unlabelled split)."""
    if len(y) != len(x):
        raise UserError(f"{name} {split} split at {where}: {len(y)} labels for {len(x)} images")
    if split == "unlabeled":
        return
    if bad := ((y < 0) | (y >= classes)).nonzero()[:1, 0].tolist():
        first = 1 if name == "stl10" else 0  # STL-10's files count classes from 1
        raise UserError(f"{name} {split} split at {where}: image {bad[0]} has label "
                        f"{int(y[bad[0]]) + first}, not one of the {classes} classes "
                        f"({first}..{classes - 1 + first})")


def identity(*tensors):
    """What identifies a run's data: a hash of its tensors' bytes (not its path, nor its files'
    times: the same images copied elsewhere are the same data), wherever they are (a GPU's are
    hashed from a host copy)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def default_images(name):
    """The images a pretraining sees by default: STL-10's unlabelled split with its labelled train
    split (self-supervised practice), every other dataset's train split."""
    return "train+unlabeled" if "unlabeled" in SPLITS.get(name, ()) else "train"


def images(name, which, data_dir="./data", image_size=32, download=False):
    """The uint8 images of `which` ("train", "unlabeled" or "train+unlabeled"): what a pretraining
    and its PCA see, never a test image."""
    splits = which.split("+")
    if bad := [s for s in splits if s not in SPLITS.get(name, ("train",)) or s == "test"]:
        raise UserError(f"{name} has no {bad[0]} images to pretrain on; pass --images train")
    if len(splits) == 1:
        return load(name, splits[0], data_dir, image_size, download)[0]
    return torch.cat([load(name, s, data_dir, image_size, download)[0] for s in splits])


def spread(n, k):
    """k indices (at most n) spread evenly over range(n): on a class-sorted split, every class."""
    return torch.linspace(0, n - 1, min(k, n)).long()


def subset(k, n):
    """--subset k of a split of n images: k indices spread over it and what the header says of
    them; (None, "") without one. A k of n or more is refused: the results would call the whole
    split a quick try."""
    if not k:
        return None, ""
    if k >= n:
        raise UserError(f"--subset {k:,}: the split holds {n:,} images; leave --subset out to "
                        "train on all of them")
    return spread(n, k), f" (--subset: {k:,} of {n:,})"


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


def make_batch(x_uint8, aug, pcs=None, u=None, hidden=None):
    """Encoder input and reconstruction target from one uint8 batch, both from the same augmented
    images: the image and the image (or its band, pcs from pca_project.on_device); with PCA masking
    (hidden (N, D) components), the images rebuilt from the visible components and from the hidden
    ones (in the band)."""
    x = augment(x_uint8.float().div_(255), aug, u)
    if hidden is not None:
        return pca_project.split(x, pcs, hidden, pcs["band"])
    return x, pca_project.to_band(x, pcs)


def _missing(name, data_dir, problem="not found", downloaded=False):
    """The one-line error that says where the dataset's files go (after a failed download, without
    suggesting one)."""
    if name == "folder":
        return UserError(f"{name} {problem}: put it at {data_dir}/train/CLASS/*.jpg "
                         f"and {data_dir}/test/CLASS/*.jpg")
    folder, how = SOURCE[name]
    if name != "tinyimagenet" and not downloaded:  # torchvision does not fetch Tiny ImageNet
        how += ", or pass --download"
    return UserError(f"{name} {problem}: put it at {os.path.join(data_dir, folder)}/ ({how})")


def _read_torchvision(name, split, data_dir, download):
    # torchvision's constructors check md5 sums of the official archives, which rejects any
    # subset or repackaging of the same format; we read its layouts directly instead.
    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100,
           "stl10": datasets.STL10, "fashion-mnist": datasets.FashionMNIST}[name]
    if download:
        try:
            cls(data_dir, download=True)
        except Exception as e:
            raise _missing(name, data_dir, f"download failed ({type(e).__name__}: {e})",
                           downloaded=True) from None
    root = os.path.join(data_dir, SOURCE[name][0])
    try:
        if name == "fashion-mnist":
            prefix = "train" if split == "train" else "t10k"
            x = mnist.read_image_file(os.path.join(root, f"{prefix}-images-idx3-ubyte"))
            y = mnist.read_label_file(os.path.join(root, f"{prefix}-labels-idx1-ubyte"))
            return _checked_images(x.unsqueeze(1), (1, 28, 28), root), y.long()
        if name == "stl10":
            return _read_stl10(root, split)
        xs, ys = [], []
        for fname, _md5 in cls.train_list if split == "train" else cls.test_list:
            with open_file(os.path.join(root, fname), "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            if not isinstance(entry, dict):
                raise ValueError(f"{fname} holds a {type(entry).__name__}, not a dict")
            images = entry["data"]
            if not isinstance(images, np.ndarray):
                raise ValueError(f"{fname}'s data is a {type(images).__name__}, not an array")
            xs.append(_checked_images(torch.from_numpy(images).view(-1, 3, 32, 32), (3, 32, 32),
                                      os.path.join(root, fname)))
            ys.append(torch.tensor(entry["labels" if name == "cifar10" else "fine_labels"],
                                   dtype=torch.int64))
        return torch.cat(xs), torch.cat(ys)
    except FileNotFoundError:
        raise _missing(name, data_dir) from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, RuntimeError,
            AssertionError) as e:
        raise UserError(f"{name} files under {root} are corrupt ({type(e).__name__}: {e})") from None


def _checked_images(x, shape, where):
    """x, refused unless it is uint8 images of shape (C, H, W): any other array would be cached and
    fitted on the wrong scale."""
    if x.dtype != torch.uint8 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{where} holds {x.dtype} images of shape {tuple(x.shape[1:])}, not uint8 "
                         f"{shape}")
    return x


def _read_stl10(root, split):
    images = {"train": "train_X.bin", "test": "test_X.bin", "unlabeled": "unlabeled_X.bin"}[split]
    # STL-10 stores each image column-major: transpose H and W back.
    x = torch.from_numpy(np.fromfile(os.path.join(root, images), dtype=np.uint8))
    if len(x) % (3 * 96 * 96):
        raise ValueError(f"{images} holds {len(x):,} bytes, not a whole number of 3x96x96 images")
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
            try:
                os.makedirs(raw, exist_ok=True)
                write_atomic(dst, lambda tmp: _gunzip(os.path.join(DEBIAN_FASHION_MNIST, gz), tmp))
            except OSError as e:
                raise UserError(f"cannot unpack {DEBIAN_FASHION_MNIST} into {raw} ({e.strerror}): "
                                "pass a --data-dir that can be written") from None


def _gunzip(gz, path):
    with gzip.open(gz) as f, open(path, "wb") as out:
        shutil.copyfileobj(f, out)


def _stamp(root):
    """What tells a cache that its files changed: their names (under root, however root is spelled),
    sizes and times."""
    if not os.path.isdir(root):
        return ""
    h = hashlib.sha1()
    for path in walk(root):
        st = os.stat(path)
        line = f"{os.path.relpath(path, root)}:{st.st_size}:{st.st_mtime_ns}\n"
        h.update(line.encode("utf-8", "surrogateescape"))  # a name that is not text too
    return h.hexdigest()


def _classes(name, data_dir):
    """How many classes a dataset has: fixed, or a folder's train class folders, or Tiny
    ImageNet's wnids.txt lines."""
    if name == "folder":
        if not os.path.isdir(os.path.join(data_dir, "train")):
            raise _missing("folder", data_dir)
        return len(_folder_classes(data_dir))
    if name == "tinyimagenet":
        return len(_wnids(os.path.join(data_dir, SOURCE[name][0])))
    return NUM_CLASSES[name]


def _wnids(root):
    """Tiny ImageNet's classes, in the order of wnids.txt."""
    path = os.path.join(root, "wnids.txt")
    if not os.path.isfile(path):
        raise _missing("tinyimagenet", os.path.dirname(root))
    with open_file(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _read_tinyimagenet(root, split):
    """tiny-imagenet-200/ as downloaded: train/WNID/images/*.JPEG, and val/images/*.JPEG labelled
    by val/val_annotations.txt (the test split here: its own test/ has no labels). 64 px RGB."""
    wnids = _wnids(root)
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        train = os.path.join(root, "train")
        if not os.path.isdir(train):
            raise _missing("tinyimagenet", os.path.dirname(root))
        if unknown := sorted({e.name for e in os.scandir(train) if e.is_dir()} - index.keys()):
            raise UserError(f"{train}/{unknown[0]} is a class folder not in {root}/wnids.txt")
        samples = [(os.path.join(train, w, "images", f), index[w]) for w in wnids
                   if os.path.isdir(os.path.join(train, w, "images"))
                   for f in sorted(os.listdir(os.path.join(train, w, "images")))]
    else:
        notes = os.path.join(root, "val", "val_annotations.txt")
        if not os.path.isfile(notes):
            raise UserError(f"{notes} not found: the val split's labels are there (unzip "
                            "tiny-imagenet-200.zip again)")
        samples = []
        for n, line in enumerate(open_file(notes, encoding="utf-8").readlines(), 1):
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise UserError(f"{notes} line {n}: {fields[1] if len(fields) > 1 else line!r} "
                                "is not a class of wnids.txt")
            path = os.path.join(root, "val", "images", fields[0])
            if not os.path.isfile(path):
                raise UserError(f"{path}, named in {notes} line {n}, is missing")
            samples.append((path, index[fields[1]]))
    if not samples:
        raise UserError(f"no images under {root}/{'train' if split == 'train' else 'val'}")
    x = torch.empty(len(samples), 3, 64, 64, dtype=torch.uint8)
    for i, (path, _) in enumerate(decoding(samples, split)):
        x[i] = read_image(path, 64)
    return x, torch.tensor([c for _, c in samples], dtype=torch.int64)


def _folder_classes(data_dir):
    train_dir = os.path.join(data_dir, "train")
    if not os.path.isdir(train_dir):
        return []
    return sorted(e.name for e in os.scandir(train_dir) if e.is_dir())


def decoding(samples, split):
    """samples under a progress bar on a terminal (decoding tens of thousands of files takes
    minutes)."""
    return tqdm(samples, desc=f"decoding the {split} images", unit=" images", mininterval=1,
                leave=False, disable=None if os.environ.get("RANK", "0") == "0" else True)


def _read_folder(data_dir, split, image_size):
    train_dir, split_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, split)
    if not os.path.isdir(train_dir) or not os.path.isdir(split_dir):
        raise _missing("folder", data_dir)
    classes = _folder_classes(data_dir)
    if unknown := sorted({e.name for e in os.scandir(split_dir) if e.is_dir()} - set(classes)):
        raise UserError(f"{split_dir}/{unknown[0]} is a class with no train folder: "
                        "its images could never be right")
    # The test split keeps the train split's indices.
    class_to_idx = {c: i for i, c in enumerate(classes)}
    samples = [(path, i) for c, i in class_to_idx.items()
               if os.path.isdir(os.path.join(split_dir, c))
               for path in walk(os.path.join(split_dir, c), is_image_name)]
    if not samples:
        raise UserError(f"no images under {split_dir}: expected {split_dir}/CLASS/*.jpg")
    if split == "train" and (empty := set(classes) - {classes[c] for _, c in samples}):
        kinds = ", ".join(IMG_EXTENSIONS[:4])
        raise UserError(f"{train_dir}/{min(empty)} holds no image files ({kinds}, ...): "
                        "a class without train images could never be learned")
    x = torch.empty(len(samples), 3, image_size, image_size, dtype=torch.uint8)
    for i, (path, _) in enumerate(decoding(samples, split)):
        x[i] = read_image(path, image_size)
    return x, torch.tensor([c for _, c in samples], dtype=torch.int64)


def is_image_name(name):
    """Whether a file name is one of an image (torchvision's extensions, any case)."""
    return name.lower().endswith(IMG_EXTENSIONS)


# Modes whose values have no fixed range (32-bit integers, floats): scaled any way, some
# files would come out black or wrapped, so they are refused, named.
UNSCALED_MODES = {"I": "32-bit integer", "F": "floating-point"}


def read_image(path, size, channels=3):
    """An image file as uint8 (channels, size, size): resized (shorter side) and centre-cropped;
    16-bit grey scaled to 8 bits (PIL's RGB conversion would clip it)."""
    try:
        with Image.open(path) as img:
            if img.mode in UNSCALED_MODES:
                raise UserError(f"cannot read image {path}: a {UNSCALED_MODES[img.mode]} image "
                                f"(mode {img.mode}) has no fixed range; save it with 8 or 16 bits")
            if img.mode.startswith("I;16"):
                img = Image.fromarray((np.asarray(img) >> 8).astype(np.uint8))
            img = TF.pil_to_tensor(img.convert("RGB" if channels == 3 else "L"))
            return TF.center_crop(TF.resize(img, size, antialias=True), size)
    except UserError:
        raise
    except OSError as e:  # unreadable, truncated, not an image, a dangling link
        raise UserError(f"cannot read image {path} ({e.strerror or e})") from None
    except ValueError as e:  # a mode PIL does not convert
        raise UserError(f"cannot read image {path} ({e})") from None
