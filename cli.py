"""What every script owes its user: the flags they share, bad input as one line on stderr and exit
status 2 (never a traceback), and files written whole (a temp file, then os.replace)."""
import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile

import torch
from torchvision.utils import save_image


class UserError(ValueError):
    """Bad input from the user: reported as one line on stderr, exit status 2."""


class Finished(Exception):
    """--resume of a run that has already ended: nothing to do, and the files it wrote stay as they
    are."""


def main_guard(main, resumable=True):
    """Run main(); a UserError becomes one line on stderr and exit status 2, never a traceback."""
    try:
        main()
    except Finished as e:
        print(e)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        then = ("the same command with --resume continues the run from the last checkpoint in its "
                "--out" if resumable else "no file was left half-written")
        print(f"error: stopped (Ctrl-C); {then}", file=sys.stderr)
        sys.exit(130)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage too; our contract is one line
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def within(low, high, low_in=False, high_in=False, kind=float):
    """argparse type: a number of `kind` from low to high, each end included or not (never NaN)."""
    def number(text):
        v = kind(text)  # argparse reports a ValueError as an invalid value
        if not ((low <= v) if low_in else (low < v)) or not ((v <= high) if high_in else (v < high)):
            raise argparse.ArgumentTypeError(f"must be in {'(['[low_in]}{low:g}, {high:g}{')]'[high_in]}, got {text}")
        return v
    return number


positive = within(0, math.inf, kind=int)
count = within(0, math.inf, low_in=True, kind=int)
nonnegative = within(0, math.inf, low_in=True)
positive_float = within(0, math.inf)


def parser(description):
    """An argument parser with the flags every script takes: which data, and where to run."""
    p = Parser(description=description)
    # data.load checks the name: it knows the datasets, and this module sits below it.
    p.add_argument("--dataset", default="fashion-mnist", help="cifar10, cifar100, stl10, fashion-mnist or folder")
    p.add_argument("--data-dir", default="./data", help="where the dataset's files are (and its cache goes)")
    p.add_argument("--image-size", type=positive, default=32, help="side length for --dataset folder")
    p.add_argument("--download", action="store_true", help="fetch missing files with torchvision (needs internet)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def device(name):
    """torch.device(name), refusing CUDA where there is none."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is available")
    return dev


def write_atomic(path, write, keep_previous=None):
    """write(tmp) to a flushed temp file beside path, then os.replace: a crash never leaves a
    half-written file. With keep_previous, the file being replaced is moved there first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{os.getpid()}{ext}"  # the extension stays: save_image picks the format by it
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if keep_previous and os.path.exists(path):
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def writable(path):
    """An output file's path, tried before any work: refused when it is a folder or its folder takes
    no file."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(path))).close()
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror})") from None
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; give a file name")
    return path


def save_atomic(obj, path, keep_previous=None):
    """torch.save, written whole; to a file object, so that the archive inside is not named after
    the temp file: the same content gives the same bytes."""
    def save(tmp):
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    write_atomic(path, save, keep_previous)


def save_text(text, path):
    write_atomic(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def save_json(obj, path):
    save_text(json.dumps(obj, indent=1), path)


def save_png(images, path, **grid):
    """torchvision's save_image (make_grid options in grid), written whole."""
    write_atomic(path, lambda tmp: save_image(images, tmp, **grid))


def load_checkpoint(path):
    """torch.load(path, weights_only=True); a missing or unreadable file is a UserError."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"checkpoint {path} is corrupt or not a checkpoint ({type(e).__name__})") from None


def read_cache(path, what, keys):
    """The cache at path (None: no file), its "stamp" saying what it was made from. One rule for
    every cache: a file there that is not `what` (a dict with `keys`) is refused, never written
    over."""
    if not os.path.exists(path):
        return None
    try:
        cache = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        cache = None
    if not isinstance(cache, dict) or not set(keys) <= cache.keys():
        raise UserError(f"{path} is not {what}; delete or move it")
    return cache


def write_cache(cache, path, stamp):
    """Save a cache with its stamp (what it was made from); where it cannot be written (a read-only
    data folder), go on without it."""
    try:
        save_atomic(cache | {"stamp": stamp}, path)
    except OSError as e:
        print(f"warning: cannot write the cache {path} ({e.strerror}); going on without it", file=sys.stderr)


def read_jsonl(path):
    """A log's lines; a last line cut short (a run killed while writing it) is dropped."""
    with open(path) as f:
        lines = f.read().splitlines()
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i + 1 < len(lines):
                raise UserError(f"{path} is corrupt at line {i + 1}") from None
    return rows


def git_commit():
    """The commit of this code, for results files (None outside a git checkout)."""
    p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None
