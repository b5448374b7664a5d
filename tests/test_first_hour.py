"""The first hour of a researcher: what the scripts say before and around a run."""
import argparse
import json
import math
import xml.etree.ElementTree as ET
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import cli
import data
import files
import finetune
import linprobe
import model
import monitor
import older
import pca_project
import pretrain
import report
import training
from conftest import SHORT, TINY
from test_pca import ROOT


@pytest.mark.parametrize("script", [pretrain, finetune, linprobe, pca_project])
def test_help_names_the_default_of_every_flag_that_has_one(script, monkeypatch, capsys):
    """Every flag whose default is a value (not "not given") shows it in --help."""
    monkeypatch.setattr(sys, "argv", [script.__name__ + ".py", "--help"])
    parsers = []
    original = argparse.ArgumentParser.parse_args

    def keep(self, *args, **kwargs):
        parsers.append(self)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", keep)
    with pytest.raises(SystemExit) as e:
        script.main()
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    valued = [a for a in parsers[0]._actions if a.option_strings and not (
              a.default is None or a.default is False or a.default == []
              or a.default == argparse.SUPPRESS)]
    assert valued, "the check sees real flags"
    for action in valued:
        assert f"(default: {action.default})" in text, (action.option_strings, text)


def test_pretrain_help_names_the_schedule_the_model_and_where_it_writes():
    out = subprocess.run([sys.executable, "pretrain.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    text = " ".join(out.split())
    for shown in ("(default: 400)", "(default: 512)", "(default: 192)", "(default: runs/pretrain)",
                  "(default: 0.75)"):
        assert shown in text, shown


@pytest.mark.parametrize("script", [linprobe, finetune])
def test_an_evaluation_takes_the_checkpoints_data_unless_told_otherwise(script, pre, tmp_path, run):
    """Given only --ckpt, the probe and the fine-tune read the pretraining's own data (a 16-px
    image folder here, which the defaults would not find) and say so in their header."""
    code, out, err = run(script, "--ckpt", pre / "ckpt.pt", "--epochs", 1, "--warmup-epochs", 0,
                         "--batch-size", 64, "--out", tmp_path / "eval")
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("device "))
    pretrained_on = json.loads((pre / "summary.json").read_text())["config"]
    assert f"the checkpoint's data: --dataset folder --data-dir {pretrained_on['data_dir']} " \
           "--image-size 16" in header
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert (result["config"]["dataset"], result["config"]["image_size"]) == ("folder", 16)
    # told otherwise: the flag wins (Fashion-MNIST's own files at 28 px do not fit this encoder)
    code, _, err = run(script, "--ckpt", pre / "ckpt.pt", "--dataset", "fashion-mnist",
                       "--out", tmp_path / "other")
    assert code == 2 and "pretrained on 3x16x16 images; this dataset has 1x28x28" in err, err


def test_a_run_to_a_file_says_how_it_goes_in_plain_lines_a_person_reads(
        fmnist_folder, tmp_path, run, monkeypatch):
    """Output to a file (no terminal): a progress line every PLAIN_EVERY seconds with the running
    loss, whose last one in an epoch is the epoch's logged loss; and each epoch's line names the
    loss beside the trivial guess's, kNN and the band monitor, with the figures of log.jsonl."""
    monkeypatch.setattr(training, "PLAIN_EVERY", 0)
    code, out, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--eval-every", 1,
                         "--target", "bottom", "--pct", 25, "--out", tmp_path)
    assert code == 0, err
    log = files.read_jsonl(tmp_path / "log.jsonl")
    lines = out.splitlines()
    for epoch in log:
        progress = [line for line in lines if line.startswith(f"epoch {epoch['epoch']}/2, step ")]
        assert len(progress) == epoch["step"] - (epoch["epoch"] - 1) * 6 == 6  # one a step here
        assert progress[-1].startswith(
            f"epoch {epoch['epoch']}/2, step 6/6: loss {epoch['loss']:.4f}, ")
        text = next(line for line in lines if line.startswith(f"epoch {epoch['epoch']}/2 | "))
        ratio = epoch["loss"] / epoch["trivial_loss"]
        assert epoch["trivial_by"] == report.TRIVIAL_BY  # what report.py draws a share of
        assert (f"loss {epoch['loss']:.4f} ({ratio:.2f}x the trivial guess's "
                f"{epoch['trivial_loss']:.4f})" in text)
        assert f"kNN {epoch['knn']:.4f}" in text
        assert ("explained: top 75% n/a, 10-25% " + format(epoch["explained"]["10-25%"], ".3f")
                in text)
    assert not any(line.startswith("{") for line in lines)  # the JSON stays in log.jsonl


def test_a_run_that_fails_before_it_starts_leaves_no_folder_behind(tmp_path, run):
    """No data: one line saying so, and the --out it would have made (two levels deep) is gone,
    while a folder that was there before stays."""
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "new" / "run", tmp_path / "kept" / "run"):
        code, _, err = run(pretrain, "--dataset", "folder", "--data-dir", tmp_path / "no-data",
                           "--out", out)
        assert code == 2 and "folder not found" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert list((tmp_path / "kept").iterdir()) == []


def test_a_failed_download_does_not_suggest_a_download(tmp_path, run, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    code, _, err = run(pretrain, "--dataset", "cifar10", "--data-dir", tmp_path, "--download",
                       "--out", tmp_path / "r")
    assert (code == 2 and "download failed (OSError: no network)" in err
            and "--download" not in err), err


def test_subset_trains_on_images_spread_over_the_split_and_says_so(fmnist_folder, tmp_path, run):
    """--subset 60 of the folder's 200 train images: 60 spread over all 10 classes, two steps of
    32 (not six), and the header and the config say it."""
    code, out, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--subset", 60,
                         "--out", tmp_path / "pre")
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("device "))
    assert ("folder: 60 train images 3x16x16 (--subset: 60 of 200)" in header
            and "of 1 steps" in header)
    assert json.loads((tmp_path / "pre" / "summary.json").read_text())["config"]["subset"] == 60
    _, y = data.load("folder", "train", fmnist_folder, 16)
    assert set(y[data.spread(len(y), 60)].tolist()) == set(range(10))
    code, out, err = run(
        finetune, "--init", "none", *TINY[:12], "--data-dir", fmnist_folder, "--epochs", 1,
        "--warmup-epochs", 0, "--batch-size", 16, "--subset", 48, "--out", tmp_path / "ft")
    assert code == 0, err
    assert "48 train (--subset: 48 of 200) / 0 val" in out and "of 3 steps" in out
    row = next(line for line in run(report, tmp_path)[1].splitlines() if "no pretraining" in line)
    assert "trained on --subset 48" in row  # the table says it is a quick try


def test_a_subset_as_large_as_the_split_is_refused_never_called_a_quick_try(
        fmnist_folder, tmp_path, run):
    """--subset of the whole split (200 images) or more would train on all of it while the results
    and the table called it a quick try on a subset: one line, exit 2, no run left."""
    for script, args, n in ((pretrain, SHORT, 200), (pretrain, SHORT, 10**6),
                            (finetune, ["--init", "none", *TINY[:12], "--epochs", 1], 200)):
        out = tmp_path / f"{script.__name__}-{n}"
        code, _, err = run(script, *args, "--data-dir", fmnist_folder, "--subset", n, "--out", out)
        assert code == 2 and f"--subset {n:,}: the split holds 200 images" in err, err
        assert len(err.strip().splitlines()) == 1 and not (out / "results.json").exists()
        assert not (out / "summary.json").exists() and not (out / "ckpt.pt").exists()


def test_a_second_configuration_is_refused_with_a_folder_to_pass(fmnist_folder, tmp_path, run):
    out = tmp_path / "run"
    assert run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--epochs", 1, "--out", out)[0] == 0
    code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--epochs", 1,
                       "--masking", "block", "--out", out)
    assert code == 2 and f"such as --out {out}-masking-block" in err, err
    code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--epochs", 1,
                       "--masking", "block", "--out", f"{out}-masking-block")
    assert code == 0, err
    # the same run again, ended: nothing to continue, and the line says so
    code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--epochs", 1, "--out", out)
    assert code == 2 and "already ended: nothing to do" in err and "to continue it" not in err, err


def test_the_reconstruction_grid_is_large_named_and_spread_over_the_classes(
        fmnist_folder, tmp_path, run):
    assert run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--out", tmp_path)[0] == 0
    img = torch.from_numpy(
        np.array(Image.open(tmp_path / "recon-0002.png").convert("RGB"))).float() / 255
    side = 64 + monitor.PAD  # 16-px tiles scaled 4x
    assert img.shape == (4 * side + monitor.PAD, monitor.LABEL_WIDTH + 8 * side + monitor.PAD, 3)
    x_test, y_test = data.load("folder", "test", fmnist_folder, 16)
    shown = data.spread(len(x_test), 8)
    assert len(set(y_test[shown].tolist())) == 8  # eight classes, not eight of the first
    for k in range(8):  # the first row: the originals, each tile its image scaled up
        x0 = monitor.LABEL_WIDTH + monitor.PAD + k * side
        tile = img[monitor.PAD:monitor.PAD + 64:4, x0:x0 + 64:4].permute(2, 0, 1)
        assert (tile - x_test[shown[k]] / 255).abs().max() < 1e-6
    for k in range(4):  # each row's name is written beside it (dark text on white)
        names = img[monitor.PAD + k * side:(k + 1) * side, :monitor.LABEL_WIDTH]
        assert (names < 0.5).any() and (names > 0.5).float().mean() > 0.8


def test_charts_tell_their_series_apart_and_draw_what_they_name(tmp_path):
    ns = "{http://www.w3.org/2000/svg}"
    styles = report.kind_styles([f"run {k}" for k in range(9)])
    assert len(set(styles.values())) == 9  # no two of nine series alike
    # explained.svg of a bottom-band target: the band outside it is not in the legend
    logs = [{"explained": {"top 75%": None, "10-25%": 0.1 * k, "bottom 10%": 0.05 * k},
             "explained_by": report.EXPLAINED_BY} for k in range(3)]
    assert report.explained_chart(logs, tmp_path / "e.svg", "bottom 25% band")
    svg = ET.fromstring((tmp_path / "e.svg").read_text())
    legend = [t.text for t in svg.iter(ns + "text") if t.get("font-weight") == "bold"]
    assert legend == ["10-25%", "bottom 10%"] and len(svg.findall(f".//{ns}polyline")) == 2
    assert "outside the target: top 75%" in " ".join(t.text or "" for t in svg.iter(ns + "text"))
    # curves.svg: the loss as a share of the trivial guess's at every epoch, kNN where measured
    logs = [{"loss": 0.06, "trivial_loss": 0.05}, {"loss": 0.04, "trivial_loss": 0.05},
            {"loss": 0.02, "trivial_loss": 0.05, "knn": 0.3}]
    report.curves_chart(logs, tmp_path / "c.svg", "the image", {})
    svg = ET.fromstring((tmp_path / "c.svg").read_text())
    dots = [c for c in svg.iter(ns + "circle")]
    squares = [r for r in svg.iter(ns + "rect") if r.get("width") == "6"]
    assert len(dots) == 3 + 1 + 2 and len(squares) == 0  # three epochs, one kNN, the legend's
    kinds = report.kind_styles(["loss / trivial guess's", "kNN accuracy"])
    knn = [c for c in dots if c.get("fill") == kinds["kNN accuracy"][0]]
    assert len(knn) == 1 + 1  # epoch 3 only, and the legend's
    top, bottom = 36 + 16, 36 + 16 + 240  # the plot's 0 and high=1.25 (ratio 1.2 at epoch 1)
    ratio = [float(c.get("cy")) for c in dots
             if c.get("fill") == kinds["loss / trivial guess's"][0]][:3]
    expected = [bottom - 240 * v / 1.25 for v in (1.2, 0.8, 0.4)]
    assert all(abs(a - b) < 0.1 for a, b in zip(ratio, expected)), (ratio, expected)
    # A norm-pix run's lines from before its trivial guess was fixed have no share:
    # only the third's.
    fixed = {"explained_by": report.NORM_PIX_EXPLAINED_BY}
    for line, definition in zip(logs, (None, older.WITHDRAWN)):
        line["explained_by"] = definition
    report.curves_chart(logs[:2] + [logs[2] | fixed], tmp_path / "n.svg", "the image",
                        {"norm_pix_loss": True})
    svg = ET.fromstring((tmp_path / "n.svg").read_text())
    assert len([c for c in svg.iter(ns + "circle")
                if c.get("fill") == kinds["loss / trivial guess's"][0]]) == 1 + 1
    # With no share to draw, the chart names no such line, and says why.
    report.curves_chart(logs[:2], tmp_path / "w.svg", "the image", {"norm_pix_loss": True})
    texts = [t.text or ""
             for t in ET.fromstring((tmp_path / "w.svg").read_text()).iter(ns + "text")]
    assert "loss / trivial guess's" not in texts and any("predates the fix" in t for t in texts)


def test_report_says_which_charts_it_wrote_and_why_not(pre, tmp_path, run):
    import shutil
    shutil.copytree(pre, tmp_path / "run")
    assert run(linprobe, "--ckpt", tmp_path / "run" / "ckpt.pt", "--epochs", 1,
               "--warmup-epochs", 0, "--out", tmp_path / "run" / "lp")[0] == 0
    code, out, err = run(report, tmp_path, "--charts")
    assert code == 0, err
    said = out.split("\ncharts:\n")[1]
    assert f"wrote {tmp_path / 'run' / 'curves.svg'}" in said
    assert f"wrote {tmp_path / 'run' / 'explained.svg'}" in said
    assert f"no {tmp_path / 'test_curves.svg'}: no fine-tuning log" in said
    assert (f"no {tmp_path / 'probe_epochs.svg'}: no pretraining has probes of more than one epoch"
            in said)


def test_compile_trains_as_the_eager_model_does(fmnist_folder, tmp_path, run):
    """--compile (torch.compile, inductor on the CPU here): one epoch's loss and the trained weights
    are the eager run's, within float error; the checkpoint holds the model's own names."""
    args = [*SHORT, "--data-dir", fmnist_folder, "--epochs", 1, "--band-edges"]
    assert run(pretrain, *args, "--out", tmp_path / "eager")[0] == 0
    from torch._dynamo.utils import counters
    counters.clear()
    code, _, err = run(pretrain, *args, "--compile", "--out", tmp_path / "compiled")
    assert code == 0, err
    assert counters["stats"]["unique_graphs"] >= 1  # compiled, not run eagerly
    eager, compiled = (files.read_jsonl(tmp_path / d / "log.jsonl")[0]
                       for d in ("eager", "compiled"))
    assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-4)
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True)["model"]
            for d in ("eager", "compiled"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


def test_a_gpu_that_torch_cannot_use_is_named_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cli, "gpu_present", lambda: True)
    assert cli.device(None).type == "cpu"
    err = capsys.readouterr().err
    assert (len(err.strip().splitlines()) == 1 and "has an NVIDIA GPU, but torch" in err
            and "cannot use it" in err)
    assert (cli.device("cpu").type == "cpu"
            and capsys.readouterr().err == "")  # asked for: nothing to say
    monkeypatch.setattr(cli, "gpu_present", lambda: False)
    assert cli.device(None).type == "cpu" and capsys.readouterr().err == ""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cli.device(None).type == "cuda"  # the default where torch can use it


def test_a_pca_fit_the_device_cannot_hold_runs_on_the_cpu_and_one_nothing_holds_is_refused(
        fmnist_folder, tmp_path, monkeypatch, capsys):
    """Under a simulated memory limit: asked for CUDA with too little free, the fit runs on the CPU
    (the same fit) with a line saying so; with too little anywhere, one clear error."""
    import dataset_pca
    want, _ = dataset_pca.load_or_fit("folder", str(fmnist_folder), 16,
                                      cache=str(tmp_path / "a.pt"), device="cpu")
    need = pca_project.fit_bytes(2 * 200, 768)  # 200 images and their mirror images, 16 x 16 x 3
    free = {"cuda": need - 1, "cpu": need}
    monkeypatch.setattr(dataset_pca, "free_bytes", lambda device: free[device.type])
    got, _ = dataset_pca.load_or_fit("folder", str(fmnist_folder), 16, cache=str(tmp_path / "b.pt"),
                                     device=torch.device("cuda"), aug="flip")
    assert "GiB free: fitting it on the CPU" in capsys.readouterr().out
    flipped, _ = dataset_pca.load_or_fit("folder", str(fmnist_folder), 16,
                                         cache=str(tmp_path / "c.pt"), device="cpu", aug="flip")
    assert (torch.equal(got["eigvals"], flipped["eigvals"])
            and not torch.equal(got["eigvals"], want["eigvals"]))
    free["cpu"] = need - 1
    with pytest.raises(files.UserError,
                       match="the PCA fit needs about .* GiB and this machine has"):
        dataset_pca.load_or_fit("folder", str(fmnist_folder), 16, cache=str(tmp_path / "d.pt"),
                                device="cpu", aug="flip")


def test_a_dataset_cache_serves_its_folder_however_the_path_is_spelled(
        fmnist_folder, tmp_path, monkeypatch, capsys):
    """A run recording its data folder absolute, and one given it relative: one read, one cache."""
    import shutil
    shutil.copytree(fmnist_folder / "test", tmp_path / "d" / "test")
    shutil.copytree(fmnist_folder / "train", tmp_path / "d" / "train")
    monkeypatch.chdir(tmp_path)
    data.load("folder", "test", "d", 16)
    assert "reading folder's test split" in capsys.readouterr().out
    data.load("folder", "test", str(tmp_path / "d"), 16)
    data.load("folder", "test", "./d/", 16)
    assert "reading" not in capsys.readouterr().out


def test_fp16_trains_with_loss_scaling_and_resumes_bit_identically(
        fmnist_folder, tmp_path, stopped_and_resumed):
    """--amp --amp-dtype fp16 on the CPU: autocast in fp16, the loss scaled by a GradScaler whose
    state the checkpoint keeps, so a stopped run resumes to the uninterrupted run's weights."""
    code, out, err = stopped_and_resumed(
        pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 3,
        "--target", "bottom", "--pct", 25, "--amp", "--amp-dtype", "fp16")
    assert code == 0 and "resuming at epoch 3" in out, err
    assert "fp16 autocast, loss scaling" in next(line for line in out.splitlines()
                                                 if line.startswith("device "))
    log = files.read_jsonl(tmp_path / "a" / "log.jsonl")
    assert (all(line["fp16"] and not line["bf16"] for line in log)
            and all(math.isfinite(line["loss"]) for line in log))
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True) for d in ("a", "b"))
    assert a["scaler"]["scale"] > 0 and a["scaler"] == b["scaler"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    resumed = files.read_jsonl(tmp_path / "b" / "log.jsonl")
    assert [line["loss"] for line in resumed] == [line["loss"] for line in log]


def test_fp16_steps_go_through_the_scaler(fmnist_folder, tmp_path, run, monkeypatch):
    """The loss that backward sees is the scaler's (scaled): under fp16 it is the loss times the
    scale, under bf16 the loss itself."""
    seen = {}
    scale = torch.amp.GradScaler.scale

    def spy(self, outputs):
        scaled = scale(self, outputs)
        seen.setdefault(self.is_enabled(), []).append(float(scaled.detach() / outputs.detach()))
        return scaled
    monkeypatch.setattr(torch.amp.GradScaler, "scale", spy)
    for dtype in ("fp16", "bf16"):
        code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--epochs", 1,
                           "--amp", "--amp-dtype", dtype, "--out", tmp_path / dtype)
        assert code == 0, err
    assert min(seen[True]) > 1 and set(seen[False]) == {1.0}


def test_fp16_stops_cleanly_on_a_nan_loss(fmnist_folder, tmp_path, run, monkeypatch):
    """A NaN loss under fp16 (which the scaler alone would skip as an overflow) still stops the run
    with exit 3 before anything is saved, the last good checkpoint intact."""
    forward, calls = model.MAE.forward, []

    def poisoned(self, x, target, generator=None, scores=None):
        loss, pred, mask = forward(self, x, target, generator, scores)
        calls.extend([1] if self.training else [])
        return (loss * float("nan") if len(calls) == 9 else loss), pred, mask
    monkeypatch.setattr(model.MAE, "forward", poisoned)
    code, _, err = run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 3,
                       "--amp", "--amp-dtype", "fp16", "--out", tmp_path)
    assert code == 3 and "step 8" in err and len(err.strip().splitlines()) == 1, err
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_a_pca_fit_reports_its_progress_as_its_sums_go(fmnist_folder):
    x, _ = data.load("folder", "train", fmnist_folder, 16)
    x = torch.cat([x] * 8)  # 1,600 images of 768 pixels: the covariance route, in chunks
    calls = []
    pca_project.fit(x, "cpu", progress=lambda done, total: calls.append((done, total)))
    assert len(calls) > 1 and calls[-1] == (1600, 1600)
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
