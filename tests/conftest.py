"""Tiny datasets written in the on-disk formats the real ones use, and an in-process script
runner."""
import os
import pickle
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402
import data  # noqa: E402

import pca_project  # noqa: E402
import pretrain  # noqa: E402
import training  # noqa: E402

FASHION_MNIST = os.path.isdir(data.DEBIAN_FASHION_MNIST)


def band(pca, target, pct):
    """The band's eigenvectors (D, k): the reference the tests hold pca_project to."""
    return pca["eigvecs"][:, pca_project.band_slice(pca, target, pct)]


def project(x, pca, V):
    """The projection as written: (x - mu) V V^T + mu, in x's dtype."""
    xc = x.flatten(1) - pca["mean"].to(x.dtype)
    return ((xc @ V.to(x.dtype)) @ V.T.to(x.dtype) + pca["mean"].to(x.dtype)).view_as(x)
needs_fashion_mnist = pytest.mark.skipif(not FASHION_MNIST,
                                         reason="apt-get install dataset-fashion-mnist")


def write_cifar10(root, n_train=60, n_test=20, seed=0, test_fill=None):
    """CIFAR-10 in torchvision's layout (cifar-10-batches-py/ with pickled batches)."""
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(base, exist_ok=True)

    def batch(name, n, fill=None):
        x = (rng.integers(0, 256, (n, 3072), dtype=np.uint8) if fill is None
             else np.full((n, 3072), fill, np.uint8))
        with open(os.path.join(base, name), "wb") as f:
            pickle.dump({"data": x, "labels": rng.integers(0, 10, n).tolist()}, f)
        return x

    train = np.concatenate([batch(f"data_batch_{i}", n_train // 5) for i in range(1, 6)])
    test = batch("test_batch", n_test, test_fill)
    with open(os.path.join(base, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    return train.reshape(-1, 3, 32, 32), test.reshape(-1, 3, 32, 32)


def write_folder(root, classes=("cat", "dog"), per_class=4, size=40, seed=0):
    """An image folder: root/{train,test}/CLASS/*.png, in sizes other than the target size."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in classes:
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
                Image.fromarray(img).save(os.path.join(root, split, c, f"{i}.png"))


class Interrupt(Exception):
    """Stands for a run killed right after a checkpoint."""


@pytest.fixture
def stopped_and_resumed(run, monkeypatch, tmp_path):
    """stopped_and_resumed(script, *args): the run whole in tmp_path/a, and in tmp_path/b stopped
    just after its epoch-2 checkpoint, then resumed; returns the resumed run's (exit code, stdout,
    stderr)."""
    def go(script, *args):
        assert run(script, *args, "--out", tmp_path / "a")[0] == 0
        save = training.save_checkpoint

        def save_then_stop(out, model, optimizer, cfg, epoch, *args, **kwargs):
            save(out, model, optimizer, cfg, epoch, *args, **kwargs)
            if epoch == 2:
                raise Interrupt
        monkeypatch.setattr(training, "save_checkpoint", save_then_stop)
        with pytest.raises(Interrupt):
            run(script, *args, "--out", tmp_path / "b")
        monkeypatch.setattr(training, "save_checkpoint", save)
        return run(script, *args, "--out", tmp_path / "b", "--resume")
    return go


@pytest.fixture
def run(capsys, monkeypatch):
    """Run a script's main() in this process, as `python script.py ARGS` would: (exit code,
    stdout, stderr)."""
    def _run(module, *args):
        monkeypatch.setattr(sys, "argv", [module.__name__ + ".py", *map(str, args)])
        try:
            cli.main_guard(module.main)
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return _run


@pytest.fixture(scope="session")
def fmnist_folder(tmp_path_factory):
    """A tiny image folder of real Fashion-MNIST pictures: 20 train and 5 test images per class."""
    if not FASHION_MNIST:
        pytest.skip("apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("fmnist")
    for split, per_class in (("train", 20), ("test", 5)):
        x, y = data.load("fashion-mnist", split, str(root / "src"))
        for c in range(10):
            os.makedirs(root / split / f"class{c}", exist_ok=True)
            for i, j in enumerate((y == c).nonzero()[:per_class, 0].tolist()):
                Image.fromarray(x[j, 0].numpy()).save(root / split / f"class{c}" / f"{i}.png")
    return root


TINY = ["--dataset", "folder", "--image-size", 16, "--patch-size", 4, "--dim", 32, "--depth", 2,
        "--heads", 2, "--decoder-dim", 32, "--decoder-depth", 1, "--decoder-heads", 2,
        "--batch-size", 32, "--warmup-epochs", 1, "--blr", 2e-3, "--eval-every", 1000]
SHORT = [*TINY, "--epochs", 2]


@pytest.fixture(scope="session")
def pre(fmnist_folder, tmp_path_factory):
    """A 2-epoch tiny pretraining run on the Fashion-MNIST folder (tests read it, never write
    it)."""
    out = tmp_path_factory.mktemp("pre") / "run"
    pretrain.main([str(a) for a in [*SHORT, "--data-dir", fmnist_folder, "--out", out]])
    return out
