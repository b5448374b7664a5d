"""Invariants of the method that a plausible mistake would break silently (issue 12, group 3)."""
import json
import math
import pickle

import numpy as np
import pytest
import torch

import data
import features
import finetune
import linprobe
import model
import monitor
import pca_project
import training


def test_encoder_sees_only_the_visible_patches():
    mae = model.MAE(image_size=16, patch_size=2, channels=3, dim=32, depth=1, heads=2,
                    decoder_dim=32, decoder_depth=1, decoder_heads=2, mask_ratio=0.75)
    seen = []
    mae.encoder.blocks[0].register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[1]))
    x = torch.rand(4, 3, 16, 16)
    _, _, mask = mae(x, x)
    assert seen == [1 + 64 - 48]  # the class token and the 16 kept patches, not all 64
    assert (mask.sum(1) == 48).all()


def test_an_unknown_masking_is_refused_never_taken_for_grid_masking():
    """model.py is copied alone: a misspelt masking raises, where mask_scores took any name it did
    not know for grid masking."""
    sizes = dict(image_size=16, patch_size=4, dim=32, depth=1, heads=2, decoder_dim=32,
                 decoder_depth=1, decoder_heads=2)
    with pytest.raises(ValueError, match="masking 'rnadom': one of random, block, grid, pca, none"):
        model.MAE(**sizes, masking="rnadom")
    for masking in (*model.MASKINGS, "none"):
        assert model.MAE(**sizes, masking=masking).masking == masking


def test_layer_decay_reaches_the_optimizer(fmnist_folder, tmp_path, run, monkeypatch):
    """Each step's lr is the schedule's times the group's lr_scale, and the scales differ by layer."""
    lrs = []
    set_lr = training.set_lr
    monkeypatch.setattr(training, "set_lr", lambda opt, lr: set_lr(opt, lr) or lrs.append(
        [(g["lr"], g["lr_scale"]) for g in opt.param_groups]))
    code, _, err = run(
        finetune, "--init", "none", "--dataset", "folder", "--data-dir", fmnist_folder,
        "--image-size", 16, "--patch-size", 4, "--dim", 32, "--depth", 3, "--heads", 2,
        "--epochs", 2, "--warmup-epochs", 1, "--batch-size", 64, "--layer-decay", 0.5,
        "--out", tmp_path)
    assert code == 0, err
    groups = lrs[-2]  # a step after warmup, before the schedule ends at 0
    top = max(lr for lr, _ in groups)
    assert top > 0 and len({scale for _, scale in groups}) == 5  # patch embedding, 3 blocks, head
    for lr, scale in groups:
        assert lr == pytest.approx(top * scale)


def test_linear_probe_normalises_its_features():
    """A probe without its BatchNorm cannot use a feature a thousand times smaller than the noise
    beside it; with it, the scale does not matter."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (1200,), generator=g)
    signal = (2 * y - 1).float()[:, None] * 1e-3 + 2e-4 * torch.randn(1200, 1, generator=g)
    feats = torch.cat([signal, 1.0 * torch.randn(1200, 15, generator=g)], 1)
    acc, _ = linprobe.train_probe(feats[:1000], y[:1000], feats[1000:], y[1000:], classes=2,
                                  epochs=10, warmup_epochs=1, batch_size=64, lr=0.1 * 64 / 256)
    assert acc > 0.95


def test_linear_probe_uses_sgd_with_momentum_and_no_weight_decay(monkeypatch):
    made = []
    sgd = torch.optim.SGD
    monkeypatch.setattr(torch.optim, "SGD", lambda params, **k: made.append(k) or sgd(params, **k))
    linprobe.train_probe(torch.randn(64, 4), torch.randint(0, 2, (64,)), torch.randn(8, 4),
                         torch.randint(0, 2, (8,)), classes=2, epochs=1, warmup_epochs=0,
                         batch_size=32, lr=0.1 * 32 / 256)
    assert made == [{"lr": 0.1 * 32 / 256, "momentum": 0.9, "weight_decay": 0.0}]


def test_crop_keeps_20_to_100_percent_of_the_area_and_flips_half_the_images():
    """On a horizontal ramp, a crop of width w (a share of the image) has slope w per pixel, and a
    flipped one -w: the uniform numbers u decide both, as data.augment documents."""
    n, size = 2000, 32
    ramp = torch.linspace(0, 1, size).expand(n, 1, size, size)
    u = torch.rand(n, 5, generator=torch.Generator().manual_seed(0))
    u[:, 2] = 0.5  # aspect ratio 1: the crop's width is sqrt(area)
    u[:, 3:] = 0.5  # centred
    out = data.augment(ramp.clone(), "crop", u)
    slope = ((out[:, 0, size // 2, -2] - out[:, 0, size // 2, 1])
             / (ramp[0, 0, 0, -2] - ramp[0, 0, 0, 1]))
    flipped = slope < 0
    assert torch.equal(flipped, u[:, 0] < 0.5)
    area = slope.abs() ** 2
    assert area.min() > 0.19 and area.max() < 1.01
    assert area.min() < 0.22 and area.max() > 0.97  # the whole range is used
    assert 0.45 < flipped.float().mean() < 0.55


def test_knn_votes_for_the_most_similar_neighbours():
    """5 close neighbours of class 0 outvote 15 farther ones of class 1 among the 20 nearest."""
    test = torch.tensor([[1.0, 0.0]])
    close = torch.tensor(
        [[math.cos(a), math.sin(a)] for a in torch.linspace(0.01, 0.05, 5).tolist()])
    far = torch.tensor([[math.cos(a), math.sin(a)] for a in torch.linspace(0.6, 0.9, 15).tolist()])
    away = torch.tensor([[math.cos(a), math.sin(a)] for a in torch.linspace(2.5, 3.0, 30).tolist()])
    train = torch.cat([close, far, away])
    labels = torch.tensor([0] * 5 + [1] * 15 + [2] * 30)
    assert features.knn_accuracy(train, labels, test, torch.tensor([0])) == 1.0
    # even with everyone voting
    assert features.knn_accuracy(train, labels, test, torch.tensor([0]), k=50) == 1.0



def test_norm_pix_loss_normalises_each_target_patch_and_the_grid_undoes_it():
    mae = model.MAE(image_size=8, patch_size=4, channels=1, dim=32, depth=1, heads=2,
                    decoder_dim=32, decoder_depth=1, decoder_heads=2, norm_pix_loss=True)
    x_uint8 = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    x = x_uint8.float() / 255
    loss, pred, mask = mae(x, x, generator=torch.Generator().manual_seed(0))
    t = mae.patchify(x)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    assert torch.allclose(loss, (((pred - t) ** 2).mean(-1) * mask).sum() / mask.sum())
    # A model that predicts the normalised target exactly shows the target itself in the grid.
    forward = mae.forward
    mae.forward = lambda inp, target, generator=None, scores=None: (
        None, t, forward(inp, target, generator)[2])
    _, _, target, shown, _ = monitor.predict(mae, x_uint8, None, 0.2)
    assert torch.allclose(shown, target, atol=1e-4)


def test_drop_path_rises_with_depth_in_a_fresh_and_in_a_pretrained_encoder(pre):
    fresh = model.Encoder(16, 4, 3, 32, 4, 2, drop_path=0.3)
    assert [b.drop_path for b in fresh.blocks] == pytest.approx([0, 0.1, 0.2, 0.3])
    ckpt = torch.load(pre / "ckpt.pt", weights_only=True)
    args = finetune.get_args(["--ckpt", str(pre / "ckpt.pt"), "--drop-path", "0.2"])
    encoder = finetune.pretrained_encoder(args, ckpt, tuple(ckpt["config"]["image_shape"]))
    rates = [b.drop_path for b in encoder.blocks]  # pretrained without: fine-tuning sets it
    assert rates == pytest.approx(torch.linspace(0, 0.2, len(rates)).tolist()) and rates[-1] > 0


def test_drop_path_drops_whole_branches_in_training_only():
    block = model.Block(8, 2, drop_path=0.25)
    branch = torch.ones(20000, 3, 8)
    kept = block.dropped(branch)[:, 0, 0]
    # a whole branch dropped, or kept, rescaled
    assert kept.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert abs((kept == 0).float().mean().item() - 0.25) < 0.02
    block.eval()
    assert torch.equal(block.dropped(branch), branch)


def test_mixup_and_cutmix_give_soft_labels_to_the_loss(fmnist_folder, tmp_path, run, monkeypatch):
    targets = []
    cross_entropy = finetune.F.cross_entropy
    monkeypatch.setattr(finetune.F, "cross_entropy", lambda logits, target, **k: (
        targets.append(target.clone()) or cross_entropy(logits, target, **k)))
    tiny = ["--init", "none", "--dataset", "folder", "--data-dir", fmnist_folder,
            "--image-size", 16, "--patch-size", 4, "--dim", 32, "--depth", 2, "--heads", 2,
            "--epochs", 1, "--batch-size", 64]
    assert run(finetune, *tiny, "--out", tmp_path / "plain")[0] == 0
    assert all(t.dtype == torch.int64 and t.ndim == 1 for t in targets)
    targets.clear()
    for mix in ("--mixup", "--cutmix"):
        targets.clear()
        assert run(finetune, *tiny, mix, 0.8, "--out", tmp_path / mix)[0] == 0
        assert all(t.shape == (64, 10) and torch.allclose(t.sum(1), torch.ones(64))
                   for t in targets)
        assert any((t.max(1).values < 0.99).any() for t in targets)  # some labels are mixtures


def test_val_split_holds_out_part_of_train_and_reports_on_it(fmnist_folder, tmp_path, run):
    code, out, err = run(
        finetune, "--init", "none", "--dataset", "folder", "--data-dir", fmnist_folder,
        "--image-size", 16, "--patch-size", 4, "--dim", 32, "--depth", 2, "--heads", 2,
        "--epochs", 2, "--batch-size", 32, "--val-split", 0.1, "--out", tmp_path)
    assert code == 0, err
    assert "180 train / 20 val / 50 test images" in out
    log = training.read_log(tmp_path)
    assert (all(0 <= line["val_accuracy"] <= 1 for line in log)
            and log[0]["step"] == 5)  # 180 // 32 steps
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["val_accuracy"] == log[-1]["val_accuracy"]


def test_finetune_resume_ends_with_the_same_weights(fmnist_folder, tmp_path, stopped_and_resumed):
    code, out, err = stopped_and_resumed(
        finetune, "--init", "none", "--dataset", "folder", "--data-dir", fmnist_folder,
        "--image-size", 16, "--patch-size", 4, "--dim", 32, "--depth", 2, "--heads", 2,
        "--epochs", 4, "--batch-size", 32, "--mixup", 0.8, "--drop-path", 0.2)
    assert code == 0 and "resuming at epoch 3" in out, err
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True)["model"] for d in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    results = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("a", "b")]
    assert results[0]["accuracy"] == results[1]["accuracy"]


def test_stl10_reader_transposes_its_column_major_images_and_counts_labels_from_0(tmp_path):
    root = tmp_path / "stl10_binary"
    root.mkdir()
    x = torch.randint(0, 256, (3, 3, 96, 96), dtype=torch.uint8)
    # STL-10 stores columns first
    x.transpose(2, 3).contiguous().numpy().tofile(root / "train_X.bin")
    np.array([1, 10, 5], dtype=np.uint8).tofile(root / "train_y.bin")
    got, y = data.load("stl10", "train", str(tmp_path))
    assert torch.equal(got, x) and y.tolist() == [0, 9, 4]


def test_cifar100_reader_takes_the_fine_labels(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    x = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    for name in ("train", "test"):
        with open(base / name, "wb") as f:
            pickle.dump(
                {"data": x, "fine_labels": [3, 99, 0, 42], "coarse_labels": [1, 2, 3, 4]}, f)
    got, y = data.load("cifar100", "train", str(tmp_path))
    assert torch.equal(got, torch.from_numpy(x).view(4, 3, 32, 32)) and y.tolist() == [3, 99, 0, 42]


@pytest.mark.parametrize("size,patch", [(32, 2), (96, 6), (28, 2), (16, 1), (64, 4)])
def test_default_patch_size_gives_about_16_by_16_patches(size, patch):
    assert model.default_patch_size(size) == patch
