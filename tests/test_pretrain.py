import json
import re
from types import SimpleNamespace

import pytest
import torch

import data
import model
import dataset_pca
import monitor
import pca_project
import pretrain
import report
import training
from conftest import SHORT, TINY, band, project
from test_pca import one_line_error


def tiny_mae(**kw):
    return model.MAE(image_size=16, patch_size=2, channels=3, dim=32, depth=1, heads=2,
                     decoder_dim=32, decoder_depth=1, decoder_heads=2, **kw)


@pytest.mark.parametrize("channels,patch", [(1, 4), (3, 2), (3, 8)])
def test_unpatchify_inverts_patchify(channels, patch):
    m = model.MAE(image_size=16, patch_size=patch, channels=channels, dim=32, depth=1, heads=2,
                  decoder_dim=32, decoder_depth=1, decoder_heads=2)
    x = torch.rand(3, channels, 16, 16)
    patches = m.patchify(x)
    assert patches.shape == (3, (16 // patch) ** 2, patch * patch * channels)
    assert torch.equal(patches[0, 1], x[0, :, :patch, patch:2 * patch].permute(1, 2, 0).flatten())
    assert torch.equal(m.unpatchify(patches), x)


@pytest.mark.parametrize("masking,ratio", [("random", 0.75), ("random", 0.6), ("block", 0.75),
                                           ("block", 0.3), ("grid", 0.75), ("grid", 8 / 9)])
def test_masked_count_is_exact(masking, ratio):
    # 12 x 12 patches
    m = model.MAE(image_size=24, patch_size=2, channels=3, dim=32, depth=1, heads=2, decoder_dim=32,
                  decoder_depth=1, decoder_heads=2, mask_ratio=ratio, masking=masking)
    x = torch.rand(16, 3, 24, 24)
    _, pred, mask = m(x, x)
    assert pred.shape == (16, 144, 12)
    assert (mask.sum(1) == round(ratio * 144)).all()
    assert len({tuple(row.tolist()) for row in mask}) > 1  # masks differ between images
    if masking == "grid":  # one kept patch in each s x s cell
        s = model.grid_cell(ratio)
        kept = (1 - mask).view(16, 12 // s, s, 12 // s, s).sum((2, 4))
        assert (kept == 1).all()
    if masking == "block":  # contiguous: masked patches have mostly masked neighbours
        grid = mask.view(16, 12, 12)
        same = (grid[:, 1:] == grid[:, :-1]).float().mean()
        assert same > 0.75


@pytest.mark.parametrize("grid", [7, 8, 16])
def test_block_masking_keeps_every_position_equally_often(grid):
    """Large contiguous masked regions, the exact count, and no position favoured: each is kept with
    the mean probability (within 10%) over 4,000 masks."""
    m = model.MAE(image_size=grid * 2, patch_size=2, channels=1, dim=32, depth=1, heads=2,
                  decoder_dim=32, decoder_depth=1, decoder_heads=2, masking="block")
    scores = m.mask_scores(4000, "cpu", torch.Generator().manual_seed(0))
    mask = m.split(scores)[2]
    assert (mask.sum(1) == round(0.75 * grid ** 2)).all()
    kept = 1 - mask.mean(0)
    assert (kept - kept.mean()).abs().max() < 0.1 * kept.mean(), kept.view(grid, grid)
    masks = mask.view(-1, grid, grid)
    same = ((masks[:, 1:] == masks[:, :-1]).float().mean()
            + (masks[:, :, 1:] == masks[:, :, :-1]).float().mean()) / 2
    assert same > 0.8  # random masking at 0.75: 0.625


def test_a_vit_from_scratch_starts_from_the_mae_init():
    """finetune.py --init none builds Encoder(...): with the same seed, the weights of a fresh MAE's encoder."""
    sizes = dict(image_size=16, patch_size=4, channels=3, dim=32, depth=2, heads=2)
    torch.manual_seed(3)
    encoder = model.Encoder(**sizes)
    torch.manual_seed(3)
    mae = model.MAE(**sizes, decoder_dim=32, decoder_depth=1, decoder_heads=2)
    assert encoder.state_dict().keys() == mae.encoder.state_dict().keys()
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, mae.encoder.state_dict()[k]), k
    # MAE's, not torch's
    assert (encoder.blocks[0].attn.qkv.bias == 0).all() and encoder.cls_token.std() > 0.01
    bound = (6 / (32 + 96)) ** 0.5  # xavier-uniform for the 32 -> 96 qkv layer
    assert encoder.blocks[0].attn.qkv.weight.abs().max() > 0.9 * bound


def test_loss_is_on_masked_patches_only():
    m = tiny_mae()
    x = torch.rand(4, 3, 16, 16)
    loss, pred, mask = m(x, x)
    target = m.patchify(x)
    assert torch.allclose(loss, (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum())
    # Changing the target where nothing is masked leaves the loss alone.
    g = torch.Generator().manual_seed(1)
    l1, _, mask = m(x, x, generator=g)
    changed = m.patchify(x) + (1 - mask)[..., None] * 10
    l2, _, _ = m(x, m.unpatchify(changed), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(l1, l2)


def test_get_lr_warms_up_then_decays():
    peak, warm, total = 1e-3, 10, 100
    lrs = [model.get_lr(i, peak, warm, total, min_lr=1e-5) for i in range(total + 1)]
    assert lrs[0] == 0 and lrs[warm] == peak and lrs[total] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(lrs[:warm], lrs[1:warm + 1]))
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:]))
    assert max(lrs) == peak


def test_no_weight_decay_on_norms_biases_and_tokens():
    m = tiny_mae()
    groups = model.param_groups(m, 0.05)
    assert len(groups) == 2 and all(g["lr_scale"] == 1 for g in groups)
    decay, no_decay = (next(g["params"] for g in groups if g["weight_decay"] == wd)
                       for wd in (0.05, 0.0))
    names = {id(p): n for n, p in m.named_parameters()}
    assert {names[id(p)] for p in no_decay} >= {"encoder.cls_token", "mask_token",
                                                "encoder.norm.weight", "encoder.patch_embed.bias"}
    assert (all(p.ndim == 2 for p in decay)
            and len(decay) + len(no_decay) == len(list(m.parameters())))


@pytest.mark.parametrize("target", [["--target", "original"], ["--target", "bottom", "--pct", 25],
                                    ["--target", "top", "--pct", 75],
                                    ["--target", "original", "--masking", "pca"],
                                    ["--target", "bottom", "--pct", 25, "--masking", "pca"]],
                         ids=["original", "bottom", "top", "pca-masking", "pca-masking-bottom"])
def test_loss_falls_for_each_target(fmnist_folder, tmp_path, run, target):
    code, out, err = run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 40,
                         "--out", tmp_path, *target)
    assert code == 0, err
    log = training.read_log(tmp_path)
    assert len(log) == 40 and log[-1]["step"] == 40 * 6  # 200 images / batch 32 = 6 steps an epoch
    first, last = log[0]["loss"], sum(l["loss"] for l in log[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 0 <= summary["final_knn"] <= 1 and summary["config"]["target"] == target[1]
    assert (tmp_path / "recon-0040.png").exists() and "parameters" in out
    # The band monitor: every epoch, and the model explains more of the top band than at first.
    assert all(set(l["explained"]) == {"top 75%", "10-25%", "bottom 10%"} for l in log)
    if target[1] != "bottom":
        assert log[-1]["explained"]["top 75%"] > log[0]["explained"]["top 75%"] + 0.1, log
    assert (tmp_path / "explained.svg").exists()


def monitored(fmnist_folder):
    """The PCA fit, its bands and the test images of the tiny folder."""
    fit, _ = dataset_pca.load_or_fit("folder", str(fmnist_folder), 16)
    x, _ = data.load("folder", "test", str(fmnist_folder), 16)
    return fit, pca_project.spectrum_bands(fit, [10, 25]), x


def monitor_of(mae, pca, x, predict):
    """monitor.band_monitor for a stand-in model whose prediction is predict(target, mask) (mask (N, T, 1))."""
    forward = mae.forward

    def stand_in(x, t, generator=None, scores=None):
        mask = forward(x, t, generator, scores)[2]
        m = mae.unpatchify(mask[..., None].expand(*mask.shape, mae.patchify(t).shape[-1]))
        return None, mae.patchify(predict(t, m)), mask
    mae.forward = stand_in
    return monitor.band_monitor(mae, x, pca, mask_share=0.2)


@pytest.mark.parametrize("masking,target,patch,ratio", [
    ("random", "original", 4, 0.75), ("random", "bottom", 4, 0.75), ("random", "original", 2, 0.75),
    ("random", "bottom", 2, 0.75), ("block", "original", 4, 0.75), ("block", "bottom", 2, 0.75),
    ("grid", "bottom", 2, 0.75),
    ("random", "original", 4, 0.3), ("pca", "original", 4, 0.75), ("pca", "bottom", 4, 0.75)])
def test_band_monitor_credits_a_guess_with_exactly_the_bands_it_holds(
        fmnist_folder, masking, target, patch, ratio):
    """Oracles on real pictures: the target scores 1 on each of its bands, the mean image 0, and the target's
    band A alone 1 on A and 0 on every other band; a guess right only where the model saw the patch, 0."""
    fit, bands, x = monitored(fmnist_folder)
    band = None if target == "original" else pca_project.band_slice(fit, "bottom", 25)
    # as pretrain.py keeps it
    pca = pca_project.on_device(fit, "cpu", band, bands, full=masking == "pca")
    mae = model.MAE(image_size=16, patch_size=patch, channels=x.shape[1], dim=32, depth=1,
                    heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2, masking=masking,
                    mask_ratio=ratio)
    mean = pca["mean"].view_as(x[0].float())
    # the top 75% is no part of a bottom-25% target
    outside = {"top 75%": None} if target == "bottom" else {}
    names = [name for name, _ in bands if name not in outside]
    cases = [(lambda t, m: t, dict.fromkeys(names, 1.0)),
             (lambda t, m: mean.expand_as(t), dict.fromkeys(names, 0.0))]
    for name, b in bands:
        if name in names:
            cases.append((lambda t, m, b=b: project(t, fit, fit["eigvecs"][:, b].float()),
                          {n: float(n == name) for n in names}))
    if masking != "pca":
        # right on the hidden patches of each pass only: all; on the visible ones only: nothing
        cases += [(lambda t, m: t * m + mean * (1 - m), dict.fromkeys(names, 1.0)),
                  (lambda t, m: t * (1 - m) + mean * m, dict.fromkeys(names, 0.0))]
    for predict, expected in cases:
        assert monitor_of(mae, pca, x, predict) == pytest.approx(expected | outside, abs=0.02)


@pytest.mark.parametrize("masking,target,patch", [("random", "original", 4), ("block", "bottom", 2),
                                                  ("random", "bottom", 2), ("pca", "original", 4)])
def test_band_monitor_gives_a_norm_pix_model_no_figure(fmnist_folder, masking, target, patch):
    """A norm-pix model predicts each hidden patch up to its own mean and scale: no pixel reading
    credits it with only what it knows, so the monitor gives no figure for any guess, the target's
    own shapes included, and says so in the log."""
    fit, bands, x = monitored(fmnist_folder)
    band = None if target == "original" else pca_project.band_slice(fit, "bottom", 25)
    pca = pca_project.on_device(fit, "cpu", band, bands, full=masking == "pca")
    mae = model.MAE(image_size=16, patch_size=patch, channels=x.shape[1], dim=32, depth=1, heads=2,
                    decoder_dim=32, decoder_depth=1, decoder_heads=2, masking=masking,
                    norm_pix_loss=True)
    top = pca_project.band_slice(fit, "top", 75)

    def shapes(t):  # a target laid out as an image, each patch normalised
        return mae.unpatchify(model.normalize_patches(mae.patchify(t)))
    cases = [shapes, torch.zeros_like,
             lambda t: shapes(project(t, fit, fit["eigvecs"][:, top].float()))]
    for guess in cases:
        assert monitor_of(mae, pca, x, lambda t, m: guess(t)) is None
    assert "no figure" in report.explained_by({"norm_pix_loss": True})


@pytest.mark.parametrize("norm_pix,masking,target", [
    (False, "random", "bottom"), (True, "random", "original"),
    (True, "random", "bottom"), (True, "pca", "original")])
def test_trivial_guess_is_the_mean_target_patch(fmnist_folder, norm_pix, masking, target):
    """The logged guess of nothing is the constant that scores least on the targets (their mean): each
    other constant, zeros or the mean image normalised among them, scores more on the same batch."""
    fit, _, x = monitored(fmnist_folder)
    x, _ = data.load("folder", "train", str(fmnist_folder), 16)
    band = None if target == "original" else pca_project.band_slice(fit, "bottom", 25)
    pcs = pca_project.on_device(fit, "cpu", band, full=masking == "pca")
    mae = model.MAE(image_size=16, patch_size=4, channels=x.shape[1], dim=32, depth=1, heads=2,
                    decoder_dim=32, decoder_depth=1, decoder_heads=2, masking=masking,
                    norm_pix_loss=norm_pix)
    args = SimpleNamespace(norm_pix_loss=norm_pix, masking=masking, pca_mask_share=0.75)
    guess = pretrain.trivial_guess(mae, x, pcs, args)
    hidden = None
    if masking == "pca":
        u = torch.rand(len(x), len(pcs["share"]), generator=torch.Generator().manual_seed(0))
        hidden = pca_project.hide_components(pcs["share"], 0.75, u)
    _, targets = data.make_batch(x, "none", pcs, hidden=hidden)
    every = torch.ones(len(x), guess.shape[1])

    def loss(constant):
        return mae.loss(constant.expand(len(x), -1, -1), targets, every).item()
    mean_image = mae.patchify(data.mean_image(x)[None])
    others = [torch.zeros_like(guess), model.normalize_patches(mean_image), guess + 0.05]
    others += [mean_image] if norm_pix else []
    assert all(loss(guess) < loss(other) for other in others), [loss(o) for o in [guess, *others]]
    if not norm_pix:
        assert torch.equal(guess, mean_image)


def test_pca_masking_feeds_visible_components_and_predicts_hidden_ones(
        fmnist_folder, tmp_path, run, monkeypatch):
    seen = []
    forward = model.MAE.forward

    def spy(self, x, target, generator=None, scores=None):
        loss, pred, mask = forward(self, x, target, generator, scores)
        if self.training:
            seen.append((x.detach().clone(), target.detach().clone(), mask))
        return loss, pred, mask

    monkeypatch.setattr(model.MAE, "forward", spy)
    code, _, err = run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 1,
                       "--out", tmp_path, "--masking", "pca", "--aug", "none")
    assert code == 0, err
    fit, _, _ = monitored(fmnist_folder)
    pca = pca_project.on_device(fit, "cpu", full=True)
    stored, _ = data.load("folder", "train", str(fmnist_folder), 16)
    mean = pca["mean"].view(1, *stored.shape[1:])
    stored = stored.float().flatten(1) / 255
    for x, target, mask in seen:
        assert mask.all()  # the loss is on every patch
        # Input and target add up to images of the train split, and each holds its own part.
        rebuilt = (x + target - mean).flatten(1)
        assert (torch.cdist(rebuilt, stored, compute_mode="donot_use_mm_for_euclid_dist")
                .min(1).values < 1e-4).all()
        hidden_share = (((target - mean).flatten(1) @ pca["eigvecs"]) ** 2).sum(1) / \
            (((x + target - 2 * mean).flatten(1) @ pca["eigvecs"]) ** 2).sum(1)
        assert 0 < hidden_share.mean() < 0.6


def test_target_is_the_band_of_the_augmented_batch(fmnist_folder, tmp_path, run, monkeypatch):
    seen = []
    forward = model.MAE.forward

    def spy(self, x, target, generator=None, scores=None):
        if self.training:
            seen.append((x.detach().clone(), target.detach().clone()))
        return forward(self, x, target, generator, scores)

    monkeypatch.setattr(model.MAE, "forward", spy)
    code, _, err = run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 1,
                       "--out", tmp_path, "--target", "bottom", "--pct", 25, "--aug", "crop")
    assert code == 0, err
    pca, _ = dataset_pca.load_or_fit("folder", str(fmnist_folder), 16, aug="crop")
    V = band(pca, "bottom", 25)
    assert len(seen) == 6
    for x, target in seen:
        assert torch.allclose(target, project(x.double(), pca, V).float(), atol=1e-5)
        assert not torch.allclose(target, x, atol=1e-2)
    # The inputs were augmented: no input is one of the stored images.
    stored, _ = data.load("folder", "train", str(fmnist_folder), 16)
    stored = stored.float() / 255
    assert not any(torch.equal(xi, s) for xi in seen[0][0] for s in stored)


# medium: bf16 matmuls on a CPU with AMX, TF32 on CUDA
@pytest.mark.parametrize("precision", ["highest", "medium"])
def test_band_targets_are_exact_float32_under_autocast_and_any_matmul_precision(
        fmnist_folder, precision):
    fit, _, x = monitored(fmnist_folder)
    pcs = pca_project.on_device(fit, "cpu", pca_project.band_slice(fit, "bottom", 25))
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        with torch.autocast("cpu", torch.bfloat16):
            _, target = data.make_batch(x, "none", pcs)
    finally:
        torch.set_float32_matmul_precision(before)
    assert target.dtype == torch.float32 and torch.get_float32_matmul_precision() == before
    reference = project(x.double() / 255, fit, band(fit, "bottom", 25))
    assert (target - reference).abs().max() < 1e-5


def test_resume_ends_with_the_same_weights(fmnist_folder, tmp_path, stopped_and_resumed):
    code, out, err = stopped_and_resumed(
        pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 4, "--eval-every", 2,
        "--target", "top", "--pct", 75)
    assert code == 0 and "resuming at epoch 3, step 0" in out, err

    a = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    logs = [[{k: v for k, v in line.items()
              if k not in ("seconds", "images_per_s", "monitor_seconds")}
             for line in training.read_log(d)]
            for d in (tmp_path / "a", tmp_path / "b")]
    assert logs[0] == logs[1]


def test_a_step_draws_from_seed_and_step_alone(
        fmnist_folder, tmp_path, stopped_and_resumed, monkeypatch):
    """Under torchrun every rank restores the generator state rank 0 saved: a step's draws (crop, masks)
    must not depend on it. A resume that restores no generator state at all ends with the same weights."""
    monkeypatch.setattr(training, "set_rng_state", lambda state: torch.manual_seed(12345))
    code, out, err = stopped_and_resumed(
        pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 3, "--aug", "crop")
    assert code == 0 and "resuming at epoch 3" in out, err
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True)["model"] for d in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input_is_one_line_and_exit_2(fmnist_folder, tmp_path, run):
    base = [*TINY, "--data-dir", fmnist_folder, "--epochs", 1]
    cases = [
        ["--target", "original", "--pct", 25],
        ["--target", "bottom"],
        ["--target", "bottom", "--pct", 0],
        ["--target", "top", "--pct", 100],
        ["--target", "middle", "--pct", 25],
        ["--patch-size", 5],
        ["--mask-ratio", 1],
        ["--mask-ratio", 0],
        ["--masking", "grid", "--mask-ratio", 0.5],
        ["--masking", "stripes"],
        ["--batch-size", -4],
        ["--dataset", "cifar10", "--data-dir", tmp_path / "nothing"],
    ]
    for args in cases:
        code, _, err = run(pretrain, *base, "--out", tmp_path / "x", *args)
        assert one_line_error(code, err), (args, err)
        assert not (tmp_path / "x" / "ckpt.pt").exists()

    assert run(pretrain, *base, "--out", tmp_path / "run")[0] == 0
    ckpt = (tmp_path / "run" / "ckpt.pt").read_bytes()
    # another config, or this one without --resume
    for args in (["--dim", 64], ["--dim", 64, "--resume"], []):
        code, _, err = run(pretrain, *base, "--out", tmp_path / "run", *args)
        assert one_line_error(code, err), (args, err)
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == ckpt  # nothing was overwritten

    (tmp_path / "run" / "ckpt.pt").write_bytes(ckpt[: len(ckpt) // 2])
    code, _, err = run(pretrain, *base, "--out", tmp_path / "run", "--resume")
    assert one_line_error(code, err) and "corrupt" in err


def test_resample_matches_grid_sample():
    x = torch.rand(6, 3, 12, 10)
    sx, sy = (torch.tensor([1.0, -0.5, 0.3, 0.8, -1.0, 0.45]),
              torch.tensor([1.0, 0.7, 0.3, 0.5, 1.0, 0.9]))
    tx, ty = (torch.tensor([0.0, 0.4, -0.6, 0.1, 0.0, -0.5]),
              torch.tensor([0.0, -0.2, 0.5, 0.4, 0.0, 0.1]))
    theta = torch.zeros(6, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    ref = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)
    out = data.resample(x, sx, tx, sy, ty)
    assert torch.allclose(out, ref, atol=1e-5)
    assert (torch.allclose(out[0], x[0], atol=1e-6)
            and torch.allclose(out[4], x[4].flip(2), atol=1e-6))  # identity, flip


def test_crop_augmentation_keeps_shape_and_range():
    x = torch.rand(64, 3, 16, 16)
    y = data.augment(x, "crop", torch.rand(64, 5, generator=torch.Generator().manual_seed(0)))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(y, x) and not torch.allclose(y, x.flip(3))


def test_a_band_target_run_names_the_share_of_its_training_inputs(fmnist_folder, tmp_path, run):
    code, out, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--epochs", 1,
                         "--target", "bottom", "--pct", 25, "--out", tmp_path)
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("device "))
    nominal, inputs = re.search(
        r"([\d.]+)% of the variance; ([\d.]+)% of the training inputs' under --aug flip",
        header).groups()
    # the tiny folder's band rule stops short of 25% (its next component is large): its own share
    assert abs(float(nominal) - float(inputs)) < 1 and 20 < float(nominal) <= 25, header
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["input_share"] == pytest.approx(float(inputs) / 100, abs=1e-4)
    assert summary["config"]["aug"] == "flip" and summary["config"]["pca_fit"] == "views"
