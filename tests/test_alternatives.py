"""Issue 16: Gaussian-noise corruption instead of masking, Wave-ViT's attention, and your own image."""
import numpy as np
import torch
from PIL import Image

import checkpoints
import data
import finetune
import linprobe
import model
import dataset_pca
import monitor
import pca_project
import pretrain
import training
import wave_attention
from conftest import TINY
from test_pca import one_line_error

GAUSS = [*TINY, "--corruption", "gaussian", "--sigma", 0.5, "--aug", "none"]


def test_noise_model_sees_and_scores_every_patch():
    torch.manual_seed(0)
    mae = model.MAE(image_size=8, patch_size=2, channels=1, dim=16, depth=1, heads=2,
                    decoder_dim=16, decoder_depth=1, decoder_heads=2, masking="none")
    seen = []
    mae.encoder.register_forward_hook(lambda module, args, out: seen.append(out.shape[1]))
    x, target = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    loss, pred, mask = mae(x, target)
    assert seen == [1 + 16] and bool((mask == 1).all())
    assert torch.allclose(loss, ((pred - mae.patchify(target)) ** 2).mean())


def test_pretraining_adds_the_noise_to_the_input_only(fmnist_folder, tmp_path, run, monkeypatch):
    batches = []
    forward = model.MAE.forward

    def spy(self, x, target, *args, **kwargs):
        if self.training:
            batches.append((x.clone(), target.clone(), self.masking))
        return forward(self, x, target, *args, **kwargs)
    monkeypatch.setattr(model.MAE, "forward", spy)
    code, out, err = run(
        pretrain, *GAUSS, "--data-dir", fmnist_folder, "--epochs", 1, "--out", tmp_path)
    assert code == 0 and "gaussian noise 0.5" in out, err
    for x, target, masking in batches:
        noise = x - target  # the original target, no augmentation: the clean image
        assert (masking == "none" and abs(noise.std().item() - 0.5) < 0.02
                and abs(noise.mean().item()) < 0.02)
    # fresh noise each step
    assert not torch.equal(batches[0][0] - batches[0][1], batches[1][0] - batches[1][1])


def test_noise_run_resumes_bit_identically(fmnist_folder, tmp_path, stopped_and_resumed):
    code, out, err = stopped_and_resumed(pretrain, *GAUSS, "--data-dir", fmnist_folder,
                                         "--epochs", 3, "--target", "bottom", "--pct", 25)
    assert code == 0 and "resuming at epoch 3" in out, err
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True)["model"] for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_noise_flags_are_one_line(fmnist_folder, tmp_path, run):
    tiny = [*TINY, "--data-dir", fmnist_folder, "--epochs", 1, "--out", tmp_path / "x"]
    for bad in (["--corruption", "gaussian", "--sigma", 0],
                ["--corruption", "gaussian", "--sigma", -1],
                ["--corruption", "gaussian"], ["--sigma", 0.5], ["--corruption", "salt"],
                ["--corruption", "gaussian", "--sigma", 0.5, "--masking", "pca"]):
        code, _, err = run(pretrain, *tiny, *bad)
        assert one_line_error(code, err), (bad, err)
    assert not (tmp_path / "x").exists()


def panels(path, n_rows, size):
    """The panels of a one-column grid picture (monitor.save_grid), at their own size, as floats in
    [0, 1]."""
    img = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
    scale = max(1, -(-monitor.TILE_MIN // size))
    side = size * scale + monitor.PAD
    assert img.shape[1:] == (n_rows * side + monitor.PAD, monitor.LABEL_WIDTH + side + monitor.PAD)
    x = monitor.LABEL_WIDTH + monitor.PAD
    return [img[:, monitor.PAD + k * side:][:, :size * scale:scale, x:x + size * scale:scale]
            for k in range(n_rows)]


def test_the_band_monitor_of_a_checkpoint_is_its_logs_for_every_target(
        fmnist_folder, tmp_path, run):
    """pca_project.py --ckpt measures with the PCA the run monitored with (of its training views),
    the original target's included."""
    assert run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 1,
               "--out", tmp_path / "run")[0] == 0
    code, out, err = run(pca_project, "--ckpt", tmp_path / "run" / "ckpt.pt",
                         "--data-dir", fmnist_folder, "--out", tmp_path / "g.png")
    assert code == 0 and "(views of --aug flip)" in out, err
    line = next(line for line in out.splitlines()
                if line.startswith("band monitor on 50 test images"))
    logged = training.read_log(tmp_path / "run")[-1]["explained"]
    assert all(f"{name} {v:.3f}" in line for name, v in logged.items()), (line, logged)


def test_your_own_image_with_its_bands_and_a_checkpoints_prediction(fmnist_folder, tmp_path, run):
    photo = tmp_path / "photo.png"
    Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(photo)
    assert run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 2,
               "--target", "bottom", "--pct", 10, "--out", tmp_path / "run")[0] == 0
    args = ["--data-dir", fmnist_folder, "--image", photo, "--out", tmp_path / "mine.png"]
    code, out, err = run(pca_project, *args, "--ckpt", tmp_path / "run" / "ckpt.pt")
    assert code == 0 and "bottom 10%" in out and "input and prediction of bottom 10%" in out, err
    # ... and its band monitor, the figures of the run's last log line
    line = next(line for line in out.splitlines()
                if line.startswith("band monitor on 50 test images"))
    logged = training.read_log(tmp_path / "run")[-1]["explained"]
    assert logged["bottom 10%"] is not None
    assert all(f"{name} {'-' if v is None else f'{v:.3f}'}" in line
               for name, v in logged.items()), (line, logged)
    shown = panels(tmp_path / "mine.png", 5, 16)  # resized to the checkpoint's 16 px
    x_uint8 = data.read_image(photo, 16)[None]
    assert (shown[0] - x_uint8[0] / 255).abs().max() < 1 / 255 + 1e-6
    pca, _ = dataset_pca.load_or_fit("folder", str(fmnist_folder), 16, aug="flip")  # the run's
    mae = checkpoints.pretrained(
        torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True), (3, 16, 16), "ckpt")
    bottom = pca_project.on_device(pca, "cpu", pca_project.band_slice(pca, "bottom", 10))
    want = [pca_project.to_band(x_uint8 / 255, bottom).clamp(0, 1)[0],
            *[images[0] for _, images in monitor.shown(mae, x_uint8, bottom)[1:3]]]
    for got, expected in zip([shown[1], shown[3], shown[4]], want):
        assert (got - expected).abs().max() < 1 / 255 + 1e-6
    # no checkpoint: 3 rows
    code, out, err = run(pca_project, *args, "--dataset", "folder", "--image-size", 24)
    assert code == 0 and len(panels(tmp_path / "mine.png", 3, 24)) == 3, err
    for bad in (["--image", tmp_path / "missing.png"], ["--ckpt", photo]):
        code, _, err = run(pca_project, *args, "--dataset", "folder", *bad)
        assert one_line_error(code, err), (bad, err)


def test_haar_dwt_then_its_inverse_is_exact():
    # integers: every step of the transform is exact
    x = torch.randint(-100, 100, (2, 5, 8, 6)).float()
    assert torch.equal(wave_attention.idwt(wave_attention.dwt(x)), x)
    y = torch.rand(3, 4, 6, 10, dtype=torch.float64)
    assert torch.allclose(wave_attention.idwt(wave_attention.dwt(y)), y, atol=1e-14, rtol=0)
    bands = wave_attention.dwt(torch.ones(1, 1, 4, 4))  # a flat image has only the low-low band
    assert torch.equal(bands[0, 0], torch.full((2, 2), 2.0)) and not bands[0, 1:].any()
    # a left-right edge: the LH band
    step = wave_attention.dwt(torch.tensor([[1.0, 0.0]]).repeat(2, 1)[None, None])
    assert torch.equal(step.flatten(), torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_wave_attention_shapes_and_gradients():
    torch.manual_seed(0)
    attn = wave_attention.WaveAttention(dim=16, heads=2, grid=4)
    x = torch.randn(3, 1 + 16, 16, requires_grad=True)
    out = attn(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        # the inverse-DWT branch reaches the output through the last quarter of proj's inputs
        before = attn(x)
        attn.proj.weight[:, 16:] = 0
        assert (not torch.allclose(attn(x)[:, 1:], before[:, 1:])
                and torch.allclose(attn(x)[:, 0], before[:, 0]))
        # The filters it uses are its own copy, which moves with it to the GPU (no copy
        # from the host at each call, which makes the host wait), and which no checkpoint
        # holds: they are fixed.
        before = attn(x)
        attn.haar.mul_(2)
        assert not torch.allclose(attn(x), before) and "haar" not in attn.state_dict()
        assert torch.equal(wave_attention.HAAR, attn.haar / 2)


def test_wave_attention_through_pretraining_probe_and_fine_tuning(fmnist_folder, tmp_path, run):
    common = ["--data-dir", fmnist_folder, "--epochs", 1]
    code, out, err = run(pretrain, *TINY, *common, "--attention", "wave", "--masking", "pca",
                         "--out", tmp_path / "pre")
    assert code == 0, err
    ckpt = torch.load(tmp_path / "pre" / "ckpt.pt", weights_only=True)
    assert (ckpt["config"]["attention"] == "wave"
            and any(".attn.reduce." in k for k in ckpt["model"]))
    assert run(linprobe, "--ckpt", tmp_path / "pre" / "ckpt.pt", *common,
               "--out", tmp_path / "lp")[0] == 0
    ft = ["--ckpt", tmp_path / "pre" / "ckpt.pt", "--dataset", "folder",
          "--image-size", 16, *common]
    assert run(finetune, *ft, "--out", tmp_path / "ft")[0] == 0
    code, _, err = run(finetune, *ft, "--attention", "wave", "--out", tmp_path / "ft2")
    assert code == 0, err  # the checkpoint's own attention, said again
    scratch = ["--init", "none", "--dataset", "folder", "--patch-size", 4, "--dim", 32,
               "--depth", 1, "--heads", 2, *common, "--attention", "wave"]
    assert run(finetune, *scratch, "--image-size", 16, "--out", tmp_path / "scratch")[0] == 0
    for script, args in (
            (pretrain, [*TINY, *common, "--attention", "wave", "--image-size", 20]),  # a 5 x 5 grid
            (finetune, [*scratch, "--image-size", 12]),  # 3 x 3
            (pretrain, [*TINY, *common, "--attention", "sparse"]),
            # masked patches: zeros for BatchNorm
            (pretrain, [*TINY, *common, "--attention", "wave"])):
        code, _, err = run(script, *args, "--out", tmp_path / "bad")
        assert one_line_error(code, err), (args, err)
