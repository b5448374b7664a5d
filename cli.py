"""What every script owes its user: the flags they share, bad input as one line on stderr and exit
status 2 (never a traceback), and files written whole (a temp file, then os.replace)."""
import argparse
import json
import os
import pathlib
import subprocess
import sys

import torch
from torchvision.utils import save_image


class UserError(ValueError):
    """Bad input from the user: reported as one line on stderr, exit status 2."""


def main_guard(main):
    """Run main(); a UserError becomes one line on stderr and exit status 2, never a traceback."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage too; our contract is one line
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def positive(text):
    """argparse type: an integer > 0 (argparse reports a ValueError as an invalid value)."""
    if int(text) <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return int(text)


def between(low, high):
    """argparse type: a number strictly between low and high (not NaN)."""
    def number(text):
        if not low < float(text) < high:
            raise argparse.ArgumentTypeError(f"must be in ({low:g}, {high:g}), got {text}")
        return float(text)
    return number


def parser(description):
    """An argument parser with the flags every script takes: which data, and where to run."""
    p = Parser(description=description)
    # data.load checks the name: it knows the datasets, and this module sits below it.
    p.add_argument("--dataset", default="fashion-mnist", help="cifar10, cifar100, stl10, fashion-mnist or folder")
    p.add_argument("--data-dir", default="./data", help="where the dataset's files are (and its cache goes)")
    p.add_argument("--image-size", type=int, default=32, help="side length for --dataset folder")
    p.add_argument("--download", action="store_true", help="fetch missing files with torchvision (needs internet)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def device(name):
    """torch.device(name), refusing CUDA where there is none."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r}") from None
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


def save_atomic(obj, path, keep_previous=None):
    """torch.save, written whole."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp), keep_previous)


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


def git_commit():
    """The commit of this code, for results files (None outside a git checkout)."""
    p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None
