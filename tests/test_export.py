"""export.py: the encoder as a timm VisionTransformer gives this project's features on real
pictures."""
import functools
import subprocess
import sys

import pytest
import torch
from PIL import Image

import data
import export
from checkpoints import load_pretrained, pretrained
from test_pca import ROOT, one_line_error

timm = pytest.importorskip("timm")  # a test-only dependency: make test installs it


def load_as_the_printed_lines_do(path, printed):
    """Run the two lines export.py printed, and return the model they built."""
    scope = {}
    exec(printed.split("load it with\n", 1)[1], scope)
    return scope["vit"]


def test_the_timm_model_gives_the_encoders_features_on_real_pictures(
        pre, fmnist_folder, tmp_path, run):
    code, out, err = run(export, pre / "ckpt.pt", tmp_path / "vit.pt")
    assert code == 0, err
    vit = load_as_the_printed_lines_do(tmp_path / "vit.pt", out).eval()
    ckpt = load_pretrained(pre / "ckpt.pt")
    encoder = pretrained(ckpt, ckpt["config"]["image_shape"], "ckpt").encoder.eval()
    x, _ = data.load("folder", "test", fmnist_folder, 16)
    x = x.float() / 255  # 50 test pictures, 5 of each class
    with torch.no_grad():
        ours, theirs = encoder.features(x), vit(x)
    assert theirs.shape == ours.shape == (50, 32)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert ours.std(0).min() > 1e-3  # features that differ between pictures, not a constant


def test_timms_own_data_pipeline_feeds_the_export_as_our_reader_does(
        pre, fmnist_folder, tmp_path, run):
    """resolve_data_config and create_transform on the loaded model: the input size, the resize
    and pixels in [0, 1] that the encoder was trained on, so its features are ours. Without the
    export's pretrained_cfg, timm would feed it 224-px ImageNet-normalised pictures."""
    code, out, _ = run(export, pre / "ckpt.pt", tmp_path / "vit.pt")
    vit = load_as_the_printed_lines_do(tmp_path / "vit.pt", out).eval()
    config = timm.data.resolve_data_config({}, model=vit)
    assert config["input_size"] == (3, 16, 16)
    assert tuple(config["mean"]) == (0.0,) * 3 and tuple(config["std"]) == (1.0,) * 3
    transform = timm.data.create_transform(**config)
    # the test pictures (28 px), and copies at the model's size: resized by timm, and as they are
    x, _ = data.load("folder", "test", fmnist_folder, 16)
    paths = sorted((fmnist_folder / "test").glob("*/*.png"))
    small = tmp_path / "small"
    small.mkdir()
    for i, img in enumerate(x):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(small / f"{i}.png")
    ours = x.float() / 255
    exact = torch.stack([transform(Image.open(small / f"{i}.png").convert("RGB"))
                         for i in range(len(x))])
    resized = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    assert resized.shape == ours.shape == (50, 3, 16, 16)
    assert (resized - ours).abs().max() < 0.02  # PIL's resize and torchvision's, a rounding apart
    encoder = pretrained(load_pretrained(pre / "ckpt.pt"), (3, 16, 16), "ckpt").encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(vit(exact), encoder.features(ours), atol=1e-5, rtol=0)
        assert (vit(resized) - encoder.features(ours)).abs().max() < 0.05


def test_each_part_of_the_mapping_matters(pre, fmnist_folder, tmp_path, run):
    """Break one part of the mapping at a time: the features then differ."""
    assert run(export, pre / "ckpt.pt", tmp_path / "vit.pt")[0] == 0
    good = torch.load(tmp_path / "vit.pt", weights_only=True)
    x, _ = data.load("folder", "test", fmnist_folder, 16)
    x = x[:16].float() / 255

    def features(state, eps=export.LAYERNORM_EPS):
        vit = timm.models.VisionTransformer(
            **good["args"], norm_layer=functools.partial(torch.nn.LayerNorm, eps=eps))
        vit.load_state_dict(state)
        with torch.no_grad():
            return vit.eval()(x)
    reference = features(good["state_dict"])
    conv = good["state_dict"]["patch_embed.proj.weight"]
    pos = good["state_dict"]["pos_embed"]
    broken = {"patch order": {"patch_embed.proj.weight": conv.transpose(2, 3)},
              # not a constant: LayerNorm would take one away
              "class slot": {
                  "pos_embed": torch.cat([torch.randn(1, 1, pos.shape[2]), pos[:, 1:]], 1)}}
    for name, change in broken.items():
        assert not torch.allclose(features(good["state_dict"] | change), reference, atol=1e-4), name
    assert not torch.allclose(features(good["state_dict"], eps=1e-6), reference, atol=1e-5), "eps"


def test_bad_input_is_one_line(pre, tmp_path, run):
    wave = torch.load(pre / "ckpt.pt", weights_only=True)
    wave["config"]["attention"] = "wave"
    torch.save(wave, tmp_path / "wave.pt")
    for args in ([tmp_path / "missing.pt", tmp_path / "a.pt"],
                 [tmp_path / "wave.pt", tmp_path / "b.pt"], [pre / "ckpt.pt", tmp_path]):
        code, _, err = run(export, *args)
        assert one_line_error(code, err), (args, err)
    p = subprocess.run([sys.executable, "export.py"], cwd=ROOT, capture_output=True, text=True)
    assert one_line_error(p.returncode, p.stderr)


def test_the_scripts_never_import_timm():
    p = subprocess.run([sys.executable, "-c",
                        "import sys, export, pretrain, finetune, linprobe, pca_project, report; "
                        "print('timm' in sys.modules)"], cwd=ROOT, capture_output=True, text=True)
    assert p.stdout.strip() == "False", p.stderr
