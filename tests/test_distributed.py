"""torchrun with 2 CPU processes (gloo) computes what 1 process computes with the same global
batch."""
import shutil
import subprocess
import sys

import torch

import training
from conftest import TINY
from test_pca import ROOT


def test_two_processes_match_one(fmnist_folder, tmp_path):
    args = [*map(str, [*TINY, "--data-dir", fmnist_folder, "--epochs", 2, "--target", "bottom",
                       "--pct", 25, "--aug", "crop", "--masking", "block"])]
    one = subprocess.run([sys.executable, "pretrain.py", *args, "--out", str(tmp_path / "one")],
                         cwd=ROOT, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "pretrain.py", *args,
                          "--out", str(tmp_path / "two")],
                         cwd=ROOT, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "x 2 processes" in two.stdout and two.stdout.count("done:") == 1  # rank 0 alone prints
    for a, b in zip(training.read_log(tmp_path / "one"), training.read_log(tmp_path / "two"),
                    strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and a["lr"] == b["lr"]
    wa = torch.load(tmp_path / "one" / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "two" / "ckpt.pt", weights_only=True)["model"]
    for k in wa:
        diff = (wa[k] - wb[k]).abs()
        if k.endswith("attn.qkv.bias"):
            # The key bias adds the same q.b to every logit of a query: softmax ignores it, its true
            # gradient is 0, and Adam scales the float noise of that zero up to lr-sized steps,
            # which differ with the summation order. Every other weight must match.
            d = len(diff) // 3
            diff = torch.cat([diff[:d], diff[2 * d:]])
        assert diff.max() < 1e-5, k
    # it trained
    assert not torch.equal(wa["encoder.patch_embed.weight"],
                           torch.load(tmp_path / "one" / "ckpt.prev.pt",
                                      weights_only=True)["model"]["encoder.patch_embed.weight"])


def test_a_batch_that_does_not_split_is_said_once_with_what_to_pass(fmnist_folder, tmp_path):
    args = [*map(str, [*TINY, "--data-dir", fmnist_folder, "--epochs", 1, "--batch-size", 33])]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "pretrain.py", *args, "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    line = "error: --batch-size 33 does not split over 2 processes: pass --batch-size 32"
    assert two.returncode != 0 and two.stderr.count(line) == 1, two.stderr[-2000:]


def test_the_first_process_reads_and_fits_while_the_others_wait_for_its_caches(
        fmnist_folder, tmp_path):
    """Two processes on a folder never read before: the first decodes it and fits the PCA; the
    second waits and reads the caches (it would say "process 1: reading ..." otherwise)."""
    shutil.copytree(fmnist_folder, tmp_path / "data", ignore=shutil.ignore_patterns("cache", "src"))
    args = [*map(str, [*TINY, "--data-dir", tmp_path / "data", "--epochs", 1, "--target", "bottom",
                       "--pct", 25])]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "pretrain.py", *args,
                          "--out", str(tmp_path / "two")],
                         cwd=ROOT, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    lines = two.stdout.splitlines()
    assert sum(line.startswith("reading folder's train split") for line in lines) == 1, two.stdout
    assert sum(line.startswith("fitting the PCA") for line in lines) == 1, two.stdout
    assert not any(line.startswith("process 1:") for line in lines), two.stdout
