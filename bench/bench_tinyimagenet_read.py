"""What reading Tiny ImageNet as downloaded costs: the first read of each split (decoding every
JPEG, then writing the cache) against a later one (the cache, after the stamp's walk over the
files), side by side in one run, each in a fresh process with its peak resident memory.

    .venv/bin/python bench/bench_tinyimagenet_read.py --folder data/cifar10-jpeg

The real download is not on this machine (no internet), so the files read are a replica of its
layout at its full size: tiny-imagenet-200/ with 200 wnids, 500 train JPEGs each under
train/WNID/images/ and 10,000 val JPEGs listed in val/val_annotations.txt, 64 x 64. Their
pictures are real, the folder's (CIFAR-10 JPEG q75: its train split twice over, the second time
mirrored, and its test split), upsampled to 64 px and saved as JPEG at PIL's default quality
(75). What a read costs follows the number of files, their pixels and their bytes, which the
bench prints; the replica's pixels are not Tiny ImageNet's, and nothing is learned from them."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, SIDE = 200, 500, 50, 64

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, ROOT)
import data
split, data_dir = sys.argv[1:3]
t0 = time.perf_counter()
x, y = data.load("tinyimagenet", split, data_dir)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB
print(json.dumps({"seconds": seconds, "peak_gib": peak, "n": len(x)}))
"""


def pictures(folder, split):
    """The folder split's files, in a fixed order."""
    root = os.path.join(folder, split)
    return [os.path.join(root, c, f) for c in sorted(os.listdir(root))
            for f in sorted(os.listdir(os.path.join(root, c)))]


def build_replica(folder, data_dir):
    """tiny-imagenet-200/ under data_dir, written to a temp name and renamed when whole."""
    root = os.path.join(data_dir, "tiny-imagenet-200")
    if os.path.isdir(root):
        return root
    tmp = root + f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    wnids = [f"n{i:08d}" for i in range(CLASSES)]
    os.makedirs(os.path.join(tmp, "val", "images"))
    with open(os.path.join(tmp, "wnids.txt"), "w") as f:
        f.write("".join(w + "\n" for w in wnids))
    train = pictures(folder, "train")
    mirrored = [(path, mirror) for mirror in (False, True) for path in train]
    for k, w in enumerate(wnids):
        images = os.path.join(tmp, "train", w, "images")
        os.makedirs(images)
        for i in range(TRAIN_PER_CLASS):
            path, mirror = mirrored[k * TRAIN_PER_CLASS + i]
            img = Image.open(path).convert("RGB").resize((SIDE, SIDE), Image.BILINEAR)
            (ImageOps.mirror(img) if mirror else img).save(os.path.join(images, f"{w}_{i}.JPEG"))
    notes = []
    for i, path in enumerate(pictures(folder, "test")[:CLASSES * VAL_PER_CLASS]):
        name = f"val_{i}.JPEG"
        img = Image.open(path).convert("RGB").resize((SIDE, SIDE), Image.BILINEAR)
        img.save(os.path.join(tmp, "val", "images", name))
        notes.append(f"{name}\t{wnids[i % CLASSES]}\t0\t0\t{SIDE - 1}\t{SIDE - 1}\n")
    with open(os.path.join(tmp, "val", "val_annotations.txt"), "w") as f:
        f.write("".join(notes))
    os.replace(tmp, root)
    return root


def measure(split, data_dir):
    """One data.load in a fresh process: its seconds and peak resident memory."""
    out = subprocess.run([sys.executable, "-c", CHILD.replace("ROOT", repr(ROOT)), split, data_dir],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", default="data/cifar10-jpeg", help="the real pictures to copy")
    p.add_argument("--data-dir", default="/tmp/bench-tinyimagenet",
                   help="where the replica and its cache go (the replica is kept for reruns)")
    args = p.parse_args()
    t0 = time.perf_counter()
    root = build_replica(args.folder, args.data_dir)
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".JPEG")]
    size = sum(os.path.getsize(f) for f in files)
    print(f"replica: {len(files):,} JPEGs, {size / 1e6:.0f} MB, {size / len(files):,.0f} bytes "
          f"an image; ready in "
          f"{time.perf_counter() - t0:.0f} s")
    shutil.rmtree(os.path.join(args.data_dir, "cache"), ignore_errors=True)
    for split in ("train", "test"):
        first, later = measure(split, args.data_dir), measure(split, args.data_dir)
        cache = os.path.join(args.data_dir, "cache", f"tinyimagenet-{split}.pt")
        print(f"{split} ({first['n']:,} images): first read {first['seconds']:.1f} s "
              f"({first['n'] / first['seconds']:,.0f} images/s, peak {first['peak_gib']:.2f} GiB); "
              f"cached {later['seconds']:.2f} s (peak {later['peak_gib']:.2f} GiB) = "
              f"{first['seconds'] / later['seconds']:.0f}x faster; cache "
              f"{os.path.getsize(cache) / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
