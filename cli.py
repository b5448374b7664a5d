"""The command line of every script: the flags they share, argparse types with the ranges the
code honours, and the main guard that turns bad input into one line on stderr and exit status 2
(never a traceback)."""
import argparse
import math
import os
import shutil
import sys

import torch

from files import Finished, UserError, held_folders, release_folders, remove_made_folders


def main_guard(main, resumable=True):
    """Run main(); a UserError becomes one line on stderr and exit status 2, never a traceback."""
    # a file name that is not text (found in a folder walked) is printed escaped, never a traceback
    sys.stdout.reconfigure(errors="backslashreplace")
    try:
        main()
    except Finished as e:
        print(e)
    except UserError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: say it once
            print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        then = what_was_saved(held_folders()) if resumable else "no file was left half-written"
        print(f"error: stopped (Ctrl-C); {then}", file=sys.stderr)
        sys.exit(130)
    finally:
        release_folders()
        remove_made_folders()


def what_was_saved(folders):
    """What a stopped run left in its --out (the folders it held) to go on from."""
    for folder in folders:
        for state in ("ckpt.pt", "features.pt"):  # a training run's checkpoint, a probe's features
            if os.path.exists(path := os.path.join(folder, state)):
                return f"{path} is kept: the same command with --resume continues from it"
    return "nothing was saved yet (no checkpoint): run the same command again"


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage too; our contract is one line
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)

    def format_help(self):
        """--help names every flag's default (as it stands after set_defaults); a flag whose
        default is "not given" (None, off, empty) says what that means in its own help."""
        for action in self._actions:
            given = not (action.default is None or action.default is False
                         or action.default == [] or action.default == argparse.SUPPRESS)
            if action.option_strings and given and "%(default)" not in (action.help or ""):
                action.help = (action.help + " " if action.help else "") + "(default: %(default)s)"
        return super().format_help()


def within(low, high, low_in=False, high_in=False, kind=float):
    """argparse type: a number of `kind` from low to high, each end included or not (never NaN)."""
    def number(text):
        v = kind(text)  # argparse reports a ValueError as an invalid value
        above_low = (low <= v) if low_in else (low < v)
        below_high = (v <= high) if high_in else (v < high)
        if not (above_low and below_high):
            ends = [f"{end:,}" if kind is int else f"{end:g}" for end in (low, high)]
            interval = f"{'(['[low_in]}{ends[0]}, {ends[1]}{')]'[high_in]}"
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return v
    return number


# Every number a flag takes has a range the code honours, checked before any data is read: the
# upper ends are far past any recipe, and keep a typo from allocating the machine's memory away or
# overflowing a seed.
MANY = 10**9  # epochs, images, steps
positive = within(0, MANY, high_in=True, kind=int)
count = within(0, MANY, low_in=True, high_in=True, kind=int)
side = within(0, 1024, high_in=True, kind=int)  # pixels: an image's side, a patch's
width = within(0, 8192, high_in=True, kind=int)  # a transformer's width
layers = within(0, 256, high_in=True, kind=int)  # its depth, its heads
# A batch of one has no batch statistics (the probe's BatchNorm).
batch = within(1, 2**20, high_in=True, kind=int)
seed = within(0, 2**31, low_in=True, kind=int)  # times 1,000,003 plus a step: a 64-bit seed
rate = within(0, 10, high_in=True)  # learning rates, noise
nonnegative = within(0, 100, low_in=True, high_in=True)  # weight decay


def alpha(text):
    """argparse type: MixUp's or CutMix's alpha, 0 (off) or in [0.001, 100] (a smaller one
    underflows the Beta distribution it draws from)."""
    v = nonnegative(text)
    if 0 < v < 1e-3:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or in [0.001, 100], got {text}")
    return v


def path(text):
    """argparse type: a file or folder name, never empty (it would name the current folder) and
    valid text (every line that names it can be printed)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty name; give a file or folder")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{ascii(text)} is not valid text (UTF-8)") from None
    return text


# The data flags' defaults, where no checkpoint says otherwise.
DATA_DEFAULTS = {"dataset": "fashion-mnist", "data_dir": "./data", "image_size": 32}


def parser(description, data_from_ckpt=False):
    """An argument parser with the flags every script takes: which data, and where to run.
    data_from_ckpt (an evaluation of a checkpoint): the data flags default to the checkpoint's
    own (checkpoints.data_of)."""
    p = Parser(description=description)
    defaults = dict.fromkeys(DATA_DEFAULTS) if data_from_ckpt else DATA_DEFAULTS
    own = {k: f" (default: the checkpoint's, else {v})" if data_from_ckpt else ""
           for k, v in DATA_DEFAULTS.items()}
    # data.load checks the name: it knows the datasets, and this module sits below it.
    p.add_argument("--dataset", default=defaults["dataset"],
                   help="cifar10, cifar100, stl10, fashion-mnist, tinyimagenet or folder"
                        + own["dataset"])
    p.add_argument("--data-dir", type=path, default=defaults["data_dir"],
                   help="where the dataset's files are (and its cache goes)" + own["data_dir"])
    p.add_argument("--image-size", type=side, default=defaults["image_size"],
                   help="side length for --dataset folder" + own["image_size"])
    p.add_argument("--download", action="store_true",
                   help="fetch missing files with torchvision (needs internet)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda where torch can use it, "
                                    "else cpu)")
    return p


def gpu_present():
    """Whether the machine has an NVIDIA GPU, whatever torch can do with it: its driver lists one,
    or nvidia-smi is installed."""
    gpus = "/proc/driver/nvidia/gpus"
    return bool(os.path.isdir(gpus) and os.listdir(gpus)) or shutil.which("nvidia-smi") is not None


def device(name):
    """torch.device(name), refusing CUDA where there is none; None: CUDA where torch can use it,
    else the CPU, saying so in one line where a GPU sits unused."""
    if name is None and torch.cuda.is_available():
        return torch.device("cuda")
    if name is None:
        if gpu_present():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            print(f"warning: this machine has an NVIDIA GPU, but torch {torch.__version__} "
                  f"({build}) cannot use it; running on the CPU (install a torch build for this "
                  "driver, or pass --device cpu)", file=sys.stderr)
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is available")
    return dev


