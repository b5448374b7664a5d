"""Invariants of the method that a plausible mistake would break silently (issue 12, group 3)."""
import math

import pytest
import torch

import data
import finetune
import linprobe
import model
import training


def test_encoder_sees_only_the_visible_patches():
    mae = model.MAE(image_size=16, patch_size=2, channels=3, dim=32, depth=1, heads=2, decoder_dim=32,
                    decoder_depth=1, decoder_heads=2, mask_ratio=0.75)
    seen = []
    mae.encoder.blocks[0].register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    x = torch.rand(4, 3, 16, 16)
    _, _, mask = mae(x, x)
    assert seen == [1 + 64 - 48]  # the class token and the 16 kept patches, not all 64
    assert (mask.sum(1) == 48).all()


def test_layer_decay_reaches_the_optimizer(fmnist_folder, tmp_path, run, monkeypatch):
    """Each step's lr is the schedule's times the group's lr_scale, and the scales differ by layer."""
    lrs = []
    step = training.train_step
    monkeypatch.setattr(training, "train_step", lambda m, opt, *a, **k: lrs.append(
        [(g["lr"], g["lr_scale"]) for g in opt.param_groups]) or step(m, opt, *a, **k))
    code, _, err = run(finetune, "--init", "none", "--dataset", "folder", "--data-dir", fmnist_folder,
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
    acc, _ = linprobe.train_probe(feats[:1000], y[:1000], feats[1000:], y[1000:], epochs=10, warmup_epochs=1,
                                  batch_size=64, blr=0.1)
    assert acc > 0.95


def test_linear_probe_uses_sgd_with_momentum_and_no_weight_decay(monkeypatch):
    made = []
    sgd = torch.optim.SGD
    monkeypatch.setattr(torch.optim, "SGD", lambda params, **k: made.append(k) or sgd(params, **k))
    linprobe.train_probe(torch.randn(64, 4), torch.randint(0, 2, (64,)), torch.randn(8, 4), torch.randint(0, 2, (8,)),
                         epochs=1, warmup_epochs=0, batch_size=32, blr=0.1)
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
    slope = (out[:, 0, size // 2, -2] - out[:, 0, size // 2, 1]) / (ramp[0, 0, 0, -2] - ramp[0, 0, 0, 1])
    flipped = slope < 0
    assert torch.equal(flipped, u[:, 0] < 0.5)
    area = slope.abs() ** 2
    assert area.min() > 0.19 and area.max() < 1.01
    assert area.min() < 0.22 and area.max() > 0.97  # the whole range is used
    assert 0.45 < flipped.float().mean() < 0.55


def test_knn_votes_for_the_most_similar_neighbours():
    """5 close neighbours of class 0 outvote 15 farther ones of class 1 among the 20 nearest."""
    test = torch.tensor([[1.0, 0.0]])
    close = torch.tensor([[math.cos(a), math.sin(a)] for a in torch.linspace(0.01, 0.05, 5).tolist()])
    far = torch.tensor([[math.cos(a), math.sin(a)] for a in torch.linspace(0.6, 0.9, 15).tolist()])
    away = torch.tensor([[math.cos(a), math.sin(a)] for a in torch.linspace(2.5, 3.0, 30).tolist()])
    train = torch.cat([close, far, away])
    labels = torch.tensor([0] * 5 + [1] * 15 + [2] * 30)
    assert model.knn_accuracy(train, labels, test, torch.tensor([0])) == 1.0
    assert model.knn_accuracy(train, labels, test, torch.tensor([0]), k=50) == 1.0  # even with everyone voting

