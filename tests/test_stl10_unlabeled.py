"""STL-10 the way self-supervised work uses it: pretraining (and its PCA) on the unlabelled images
with the labelled train split, the monitors on the labelled splits, never a test image."""
import numpy as np
import pytest
import torch

import data
import dataset_pca
import pca_project
import pretrain
from test_pca import one_line_error

PIXELS = 3 * 96 * 96


def write_stl10(root, n_train=10, n_test=10, n_unlabeled=20):
    """stl10_binary/ with each split's images filled with its own constant band of values."""
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n, low in (("train", n_train, 0), ("test", n_test, 100),
                          ("unlabeled", n_unlabeled, 200)):
        rng.integers(low, low + 50, n * PIXELS, dtype=np.uint8).tofile(base / f"{split}_X.bin")
        if split != "unlabeled":
            (np.arange(n) % 2 + 1).astype(np.uint8).tofile(base / f"{split}_y.bin")  # classes 1, 2
    return root


def test_images_are_the_chosen_splits_and_never_test(tmp_path):
    root = write_stl10(tmp_path)
    assert (data.default_images("stl10") == "train+unlabeled"
            and data.default_images("cifar10") == "train")
    x = data.images("stl10", "train+unlabeled", root)
    assert len(x) == 30 and x.max() < 250 and not ((x >= 100) & (x < 150)).flatten(1).all(1).any()
    assert len(data.images("stl10", "unlabeled", root)) == 20
    with pytest.raises(data.UserError, match="no unlabeled images"):
        data.images("cifar10", "unlabeled", root)


def test_the_pca_is_fitted_on_the_pretraining_images_and_its_cache_says_which(
        tmp_path, monkeypatch):
    root = write_stl10(tmp_path)
    seen = []

    # the real fit of 27,648 dims would hold a 6 GB basis
    def small_fit(x, device=None, views=None, progress=None):
        seen.append(len(x))
        return {"mean": x.double().mean(0).flatten(), "eigvals": torch.ones(1),
                "eigvecs": torch.ones(1, 1), "shape": tuple(x.shape[1:])}
    monkeypatch.setattr(pca_project, "fit", small_fit)
    for images, n in (("train+unlabeled", 30), ("train", 10), ("unlabeled", 20)):
        pca, seconds = dataset_pca.load_or_fit("stl10", root, images=images)
        assert seconds is not None and pca["images"] == images and seen[-1] == n
    names = sorted(p.name for p in (root / "cache").glob("pca-*"))
    assert names == ["pca-stl10-3x96x96.pt", "pca-stl10-train+unlabeled-3x96x96.pt",
                     "pca-stl10-unlabeled-3x96x96.pt"]
    # its own cache
    assert dataset_pca.load_or_fit("stl10", root, images="train+unlabeled")[1] is None


def test_pretraining_on_unlabelled_images_monitors_on_labelled_ones(tmp_path, run):
    root = write_stl10(tmp_path)
    args = ["--dataset", "stl10", "--data-dir", root, "--patch-size", 32, "--dim", 32, "--depth", 1,
            "--heads", 2, "--decoder-dim", 32, "--decoder-depth", 1, "--decoder-heads", 2,
            "--epochs", 1, "--batch-size", 10, "--band-edges", "--eval-every", 1]
    code, out, err = run(pretrain, *args, "--out", tmp_path / "ssl")
    assert code == 0, err
    assert "stl10: 30 train+unlabeled images" in out and "1 epochs of 3 steps" in out
    code, out, err = run(pretrain, *args, "--images", "train", "--out", tmp_path / "paper")
    assert code == 0 and "stl10: 10 train images" in out and "of 1 steps" in out, err
    code, _, err = run(pretrain, "--dataset", "cifar10", "--images", "unlabeled",
                       "--out", tmp_path / "c")
    assert one_line_error(code, err) and "no unlabelled images" in err
