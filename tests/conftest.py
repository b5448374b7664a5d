"""Tiny datasets written in the on-disk formats the real ones use, and an in-process script runner."""
import os
import pickle
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402

FASHION_MNIST = os.path.isdir(data.DEBIAN_FASHION_MNIST)
needs_fashion_mnist = pytest.mark.skipif(not FASHION_MNIST, reason="apt-get install dataset-fashion-mnist")


def write_cifar10(root, n_train=60, n_test=20, seed=0, test_fill=None):
    """CIFAR-10 in torchvision's layout (cifar-10-batches-py/ with pickled batches)."""
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(base, exist_ok=True)

    def batch(name, n, fill=None):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8) if fill is None else np.full((n, 3072), fill, np.uint8)
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


@pytest.fixture
def run(capsys, monkeypatch):
    """Run a script's main() in this process, as `python script.py ARGS` would: (exit code, stdout, stderr)."""
    def _run(module, *args):
        monkeypatch.setattr(sys, "argv", [module.__name__ + ".py", *map(str, args)])
        try:
            data.main_guard(module.main)
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return _run
