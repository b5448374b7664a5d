import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import cli
import data
import dataset_pca
import monitor
import pca_project
from conftest import band, needs_fashion_mnist, project, write_cifar10, write_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def planted(n=600, shape=(1, 6, 6), seed=0):
    """Images whose covariance has a known, widely spread spectrum (10^0 .. 10^-6)."""
    g = torch.Generator().manual_seed(seed)
    d = int(np.prod(shape))
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=g))
    scales = torch.logspace(0, -3, d, dtype=torch.float64)
    x = 0.5 + 0.05 * (torch.randn(n, d, dtype=torch.float64, generator=g) * scales) @ q.T
    return x.view(n, *shape)


def check_bands(x, pca, pct):
    """The properties the band rule promises, for bottom pct and top 100 - pct."""
    bottom, top = band(pca, "bottom", pct), band(pca, "top", 100 - pct)
    assert bottom.shape[1] + top.shape[1] == x[0].numel()
    for V in (bottom, top):
        assert torch.allclose(V.T @ V, torch.eye(V.shape[1], dtype=V.dtype), atol=1e-8)
    rebuilt = project(x, pca, bottom) + project(x, pca, top) - pca["mean"].view_as(x[0])
    assert (rebuilt - x).abs().max() < 1e-5
    share = pca["eigvals"].clamp(min=0) / pca["eigvals"].clamp(min=0).sum()
    k = bottom.shape[1]
    assert share[:k].sum() <= pct / 100
    assert share[:k + 1].sum() > pct / 100  # one more component would exceed the band


def reference_eigvals(x):
    flat = x.reshape(len(x), -1).double().numpy()
    return np.linalg.eigh(np.cov(flat, rowvar=False))[0]


@pytest.mark.parametrize("x", [torch.rand(500, 2, 4, 4, dtype=torch.float64), planted()],
                         ids=["random", "planted"])
@pytest.mark.parametrize("pct", [10, 25, 60])
def test_bands_partition_and_follow_the_share_rule(x, pct):
    pca = pca_project.fit(x)
    ref = reference_eigvals(x)
    assert np.abs(pca["eigvals"].numpy() - ref).max() < 1e-8 * ref.max()
    assert torch.allclose(pca["mean"], x.flatten(1).mean(0), atol=1e-12)
    check_bands(x, pca, pct)


@pytest.mark.parametrize("mask_share", [0.05, 0.2, 0.5])
def test_pca_masking_hides_the_asked_share_and_splits_the_image(mask_share):
    x = planted()
    pca = pca_project.fit(x)
    share = pca_project.variance_share(pca)
    u = torch.rand(len(x), len(share), dtype=torch.float64,
                   generator=torch.Generator().manual_seed(0))
    hidden = pca_project.hide_components(share, mask_share, u)
    # Hidden components come first in each image's random order; their share reaches the asked
    # share, and fell short of it before the last one was added.
    order = u.argsort(1)
    n_hidden = hidden.sum(1)
    assert all(hidden[i, order[i, :k]].all() for i, k in enumerate(n_hidden))
    hidden_share = (hidden * share).sum(1)
    last = share[order.gather(1, n_hidden[:, None] - 1)[:, 0]]
    assert (hidden_share >= mask_share - 1e-12).all() and (hidden_share - last < mask_share).all()
    assert len({tuple(h.tolist()) for h in hidden}) > 10  # a new draw for each image

    mean = pca["mean"].view_as(x[0])
    visible, target = pca_project.split(x, pca, hidden)
    assert torch.allclose(visible + target - mean, x, atol=1e-12)
    # With a band, the target holds the hidden components inside the band, and nothing else.
    bottom = pca_project.band_slice(pca, "bottom", 25)
    _, target = pca_project.split(x, pca, hidden, bottom)
    expected = ((x - mean).flatten(1) @ pca["eigvecs"]) * hidden
    expected[:, bottom.stop:] = 0
    assert torch.allclose((target - mean).flatten(1) @ pca["eigvecs"], expected, atol=1e-12)


def test_spectrum_bands_cut_at_the_band_rule():
    pca = pca_project.fit(planted())
    bands = pca_project.spectrum_bands(pca, [10, 25])
    assert [name for name, _ in bands] == ["top 75%", "10-25%", "bottom 10%"]
    top, middle, bottom = (b for _, b in bands)
    assert (bottom == pca_project.band_slice(pca, "bottom", 10)
            and top == pca_project.band_slice(pca, "top", 75))
    assert (bottom.stop, middle.stop) == (middle.start, top.start)


def test_gram_route_gives_the_same_spectrum_and_a_full_basis():
    x = planted(n=20, shape=(3, 4, 4))  # N < D = 48
    pca = pca_project.fit(x)
    d = x[0].numel()
    assert pca["eigvecs"].shape == (d, d)
    assert torch.allclose(pca["eigvecs"].T @ pca["eigvecs"], torch.eye(d, dtype=torch.float64),
                          atol=1e-10)
    # both routes: N < D, N > D
    for fitted in (pca, pca_project.fit(planted(n=60, shape=(3, 2, 2)))):
        # each component contiguous
        assert fitted["eigvecs"].stride() == (1, len(fitted["eigvals"]))
    ref = reference_eigvals(x)
    assert np.abs(pca["eigvals"].numpy() - ref).max() < 1e-8 * ref.max()
    cov = torch.from_numpy(np.cov(x.flatten(1).numpy(), rowvar=False))
    assert torch.allclose(cov @ pca["eigvecs"], pca["eigvecs"] * pca["eigvals"], atol=1e-10)
    check_bands(x, pca, 25)


def test_uint8_input_is_scaled_to_unit_range():
    x8 = (torch.rand(2500, 1, 4, 4) ** 3 * 255).to(torch.uint8)  # several chunks; mean far from 128
    a, b = pca_project.fit(x8), pca_project.fit(x8.double() / 255)
    assert (torch.allclose(a["mean"], b["mean"])
            and torch.allclose(a["eigvals"], b["eigvals"], atol=1e-14))
    ref = reference_eigvals(x8.double() / 255)
    assert np.abs(a["eigvals"].numpy() - ref).max() < 1e-12 * ref.max()


def test_band_rejects_bad_target_and_pct():
    pca = pca_project.fit(torch.rand(50, 1, 3, 3))
    for target, pct in [("middle", 25), ("bottom", 0), ("top", 100), ("bottom", -5)]:
        with pytest.raises(ValueError, match="a band is bottom or top|a band's share is in"):
            band(pca, target, pct)  # a plain error in the library's words: the scripts check flags


@needs_fashion_mnist
def test_real_fashion_mnist(tmp_path):
    x, y = data.load("fashion-mnist", "train", str(tmp_path))
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8 and y.max() == 9
    pca = pca_project.fit(x)
    ref = reference_eigvals(x.double() / 255)
    assert np.abs(pca["eigvals"].numpy() - ref).max() < 1e-8 * ref.max()
    check_bands(x[:500].double() / 255, pca, 25)
    # Natural images: a few components hold most of the variance, the bottom 25% needs most of them.
    assert band(pca, "bottom", 25).shape[1] > 0.9 * 784


def test_script_fits_on_train_only_and_reuses_its_cache(tmp_path, run):
    # a leak of the all-white test split would show in the mean
    train, _ = write_cifar10(tmp_path, test_fill=255)
    args = ["--dataset", "cifar10", "--data-dir", tmp_path, "--out", tmp_path / "grid.png"]
    code, out, err = run(pca_project, *args)
    assert code == 0, err
    assert "fitted" in out and "bottom 25%" in out and os.path.exists(tmp_path / "grid.png")
    cache = tmp_path / "cache" / "pca-cifar10-flip-3x32x32.pt"  # pretrain.py's default --aug flip
    pca = torch.load(cache, weights_only=True)
    train = torch.from_numpy(train)
    views = torch.cat([train, train.flip(3)])  # each image and its mirror image
    assert torch.allclose(pca["mean"], views.flatten(1).double().mean(0) / 255)
    assert pca["dataset"] == "cifar10"

    mtime = os.stat(cache).st_mtime_ns
    code, out, _ = run(pca_project, *args)
    assert code == 0 and "cached fit" in out and os.stat(cache).st_mtime_ns == mtime
    code, out, _ = run(pca_project, *args, "--refit")
    assert code == 0 and "fitted" in out

    write_cifar10(tmp_path, seed=1)  # the data changed: the data cache and the fit must follow
    code, out, _ = run(pca_project, *args)
    assert code == 0 and "fitted" in out


def test_folder_dataset_and_refit_on_new_image_size(tmp_path, run):
    write_folder(tmp_path)
    x, y = data.load("folder", "train", str(tmp_path), image_size=16)
    assert x.shape == (8, 3, 16, 16) and y.tolist() == [0] * 4 + [1] * 4
    cache = tmp_path / "fit.pt"
    for size in (16, 8):
        code, out, err = run(pca_project, "--dataset", "folder", "--data-dir", tmp_path,
                             "--image-size", size, "--cache", cache, "--out", tmp_path / "g.png")
        assert code == 0 and "fitted" in out, err
        assert torch.load(cache, weights_only=True)["shape"] == (3, size, size)


def test_folder_cache_follows_new_files(tmp_path):
    write_folder(tmp_path, per_class=2)
    assert len(data.load("folder", "train", str(tmp_path))[0]) == 4
    write_folder(tmp_path, per_class=3, seed=1)
    assert len(data.load("folder", "train", str(tmp_path))[0]) == 6


def test_data_cache_serves_second_load_and_follows_the_files(tmp_path, monkeypatch):
    train, _ = write_cifar10(tmp_path)
    x1, y1 = data.load("cifar10", "train", str(tmp_path))
    assert torch.equal(x1, torch.from_numpy(train))
    read = data._read_torchvision
    monkeypatch.setattr(data, "_read_torchvision", lambda *a: pytest.fail("the cache was not used"))
    x2, y2 = data.load("cifar10", "train", str(tmp_path))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    monkeypatch.setattr(data, "_read_torchvision", read)
    # files replaced under --data-dir: the cache is stale
    train, _ = write_cifar10(tmp_path, seed=1)
    assert torch.equal(data.load("cifar10", "train", str(tmp_path))[0], torch.from_numpy(train))


def one_line_error(code, err):
    return (code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error:")
            and "Traceback" not in err)


def test_bad_input_is_one_line_and_exit_2(tmp_path, run):
    write_cifar10(tmp_path / "c")
    cases = [
        ["--dataset", "imagenet"],
        ["--dataset", "cifar10", "--data-dir", tmp_path / "empty"],
        ["--dataset", "folder", "--data-dir", tmp_path / "empty"],
        ["--dataset", "cifar10", "--data-dir", tmp_path / "c", "--pct", 0],
        ["--dataset", "cifar10", "--data-dir", tmp_path / "c", "--pct", 100],
        ["--dataset", "cifar10", "--data-dir", tmp_path / "c", "--pct", "abc"],
    ]
    for args in cases:
        code, _, err = run(pca_project, *args)
        assert one_line_error(code, err), (args, code, err)
    assert "cifar-10-batches-py" in run(pca_project, *cases[1])[2]  # says where to put the files

    # A cache file from another dataset is refused, not silently used or overwritten.
    write_folder(tmp_path / "f")
    assert run(pca_project, "--dataset", "folder", "--data-dir", tmp_path / "f",
               "--cache", tmp_path / "fit.pt")[0] == 0
    code, _, err = run(pca_project, "--dataset", "cifar10", "--data-dir", tmp_path / "c",
                       "--cache", tmp_path / "fit.pt")
    assert one_line_error(code, err) and "folder" in err


def test_script_as_a_process_reports_one_line(tmp_path):
    p = subprocess.run([sys.executable, "pca_project.py", "--dataset", "stl10",
                        "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert one_line_error(p.returncode, p.stderr) and "stl10_binary" in p.stderr


@pytest.mark.parametrize("gram", [False, True], ids=["covariance", "gram"])
def test_targets_through_the_smaller_side_equal_the_full_projection(gram):
    x = planted(n=30 if gram else 600).float()  # 30 images of 36 pixels: the Gram route
    fit = pca_project.fit(x)
    d = x[0].numel()
    bands = pca_project.spectrum_bands(fit, [10, 25])
    for target, pct in (("bottom", 25), ("bottom", 10), ("top", 75), ("top", 10)):
        band = pca_project.band_slice(fit, target, pct)
        pcs = pca_project.on_device(fit, "cpu", band, bands)
        k = band.stop - band.start
        assert pcs["side"].shape == (d, min(k, d - k)) and pcs["complement"] == (k > d / 2)
        full = project(x.double(), fit, fit["eigvecs"][:, band])  # today's way, in float64
        assert (pca_project.to_band(x, pcs) - full).abs().max() < 1e-5
        assert pcs["side"].dtype == torch.float32
    assert pca_project.to_band(x, None) is x
    # The monitor keeps every band but the largest, and measures that one as the rest.
    sizes = [b.stop - b.start for _, b in bands]
    assert pcs["watch"].shape == (d, d - max(sizes))
    g = torch.Generator().manual_seed(0)
    seen, guess = (x + 0.1 * torch.randn(x.shape, generator=g),
                   x + 0.05 * torch.randn(x.shape, generator=g))
    V = fit["eigvecs"]
    for diff in (guess - x, x - seen):
        sq = ((diff.flatten(1).double() @ V) ** 2).sum(0)
        expected = [sq[b].sum().item() for _, b in bands]
        assert monitor.band_variance(diff, pcs).tolist() == pytest.approx(expected, rel=1e-4)


def test_band_share_knows_images_of_one_band(fmnist_folder):
    """Oracles of pca_project.band_share: images rebuilt from a band alone hold all of their
    variance in it and none in its complement; the images themselves hold the band's share."""
    x, _ = data.load("folder", "train", str(fmnist_folder), 16)
    x = x.float() / 255
    fit = pca_project.fit(x)
    bottom = pca_project.on_device(fit, "cpu", pca_project.band_slice(fit, "bottom", 25))
    top = pca_project.on_device(fit, "cpu", pca_project.band_slice(fit, "top", 75))
    only_bottom = pca_project.to_band(x, bottom)
    assert pca_project.band_share(only_bottom, bottom) == pytest.approx(1, abs=1e-4)
    assert pca_project.band_share(only_bottom, top) == pytest.approx(0, abs=1e-4)
    share = pca_project.variance_share(fit)
    nominal = float(share[pca_project.band_slice(fit, "bottom", 25)].sum())
    assert pca_project.band_share(x, bottom) == pytest.approx(nominal, abs=1e-4)


@pytest.mark.parametrize("aug", ["flip", "crop"])
@pytest.mark.parametrize("source", ["fashion-mnist", "image folder"])
def test_a_band_holds_its_share_of_the_training_inputs(source, aug, fmnist_folder, tmp_path):
    """A band's share of the variance of the inputs a model trains on (fresh augmentation draws)
    is the share its name says, within a point, with the PCA fitted on the training views; fitted
    on the stored images, as before the fix, the bottom 25% holds another share."""
    name, where, size = ("fashion-mnist", str(tmp_path), 28) if source == "fashion-mnist" else \
        ("folder", str(fmnist_folder), 16)
    x, _ = data.load(name, "train", where, size)
    x = x[torch.linspace(0, len(x) - 1, min(len(x), 5000)).long()].float() / 255
    inputs = data.augment(x, aug, torch.rand(len(x), 5, generator=torch.Generator().manual_seed(1)))
    views, stored = (dataset_pca.load_or_fit(name, where, size, aug=a)[0] for a in (aug, "none"))
    for target, pct in (("bottom", 10), ("bottom", 25), ("top", 75)):
        band = pca_project.band_slice(views, target, pct)
        nominal = float(pca_project.variance_share(views)[band].sum())
        share = pca_project.band_share(inputs, pca_project.on_device(views, "cpu", band))
        assert abs(share - nominal) < 0.01, (target, pct, share, nominal)
        # pretraining's default, on the whole dataset: the share its name says too
        if aug == "flip" and source == "fashion-mnist":
            assert abs(share - pct / 100) < 0.01, (target, pct, share)
    band = pca_project.band_slice(stored, "bottom", 25)
    share = pca_project.band_share(inputs, pca_project.on_device(stored, "cpu", band))
    nominal = float(pca_project.variance_share(stored)[band].sum())
    assert abs(share - nominal) > 0.01  # Fashion-MNIST is not mirror-symmetric; a crop smooths
