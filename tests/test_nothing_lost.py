"""Issue 12's hostile inputs: nothing lost or silently wrong (group 1), and one line with exit 2,
before any work, for every mistaken flag or file (group 2)."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import cli
import data
import files
import finetune
import linprobe
import older
import pca_project
import pretrain
import report
from conftest import SHORT, write_cifar10, write_folder
from test_pca import one_line_error



def copy_folder(src, dst, keep_every=1):
    """A copy of an image folder; with keep_every k, only every k-th train image of each class."""
    shutil.copytree(src, dst, ignore=lambda d, names: [
        n for i, n in enumerate(sorted(names))
        if "train" in d and n.endswith(".png") and i % keep_every])
    return dst


def test_refit_never_writes_over_a_file_that_is_not_a_pca_fit(pre, fmnist_folder, run):
    before = (pre / "ckpt.pt").read_bytes()
    for flags in ([], ["--refit"]):
        code, _, err = run(pca_project, "--dataset", "folder", "--data-dir", fmnist_folder,
                           "--image-size", 16, "--cache", pre / "ckpt.pt",
                           "--out", pre.parent / "grid.png", *flags)
        # read: not a fit; to be written again (--refit): a run's file, refused before it is read
        assert one_line_error(code, err) and (
            "not a PCA fit" in err if not flags else "file name of" in err)
    assert (pre / "ckpt.pt").read_bytes() == before


def test_a_run_folder_with_its_log_but_no_checkpoint_is_refused(fmnist_folder, tmp_path, run):
    out = tmp_path / "run"
    assert run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--out", out)[0] == 0
    (out / "ckpt.pt").rename(tmp_path / "moved.pt")
    (out / "ckpt.prev.pt").unlink()
    # a run stopped on its way: its log, and its checkpoint moved away
    (out / "summary.json").unlink()
    log = (out / "log.jsonl").read_text()
    for flags in (["--resume"], []):
        code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--out", out, *flags)
        assert one_line_error(code, err) and "log.jsonl" in err
    assert (out / "log.jsonl").read_text() == log


def test_an_ended_run_without_its_checkpoints_is_recognised_as_ended(
        pre, fmnist_folder, tmp_path, run):
    """Committed results have no checkpoints: on a fresh clone, --resume of each ended run leaves it as it is."""
    study = tmp_path / "study"
    shutil.copytree(pre, study / "pre")
    ckpt = study / "pre" / "ckpt.pt"
    runs = [(pretrain, [*SHORT, "--data-dir", fmnist_folder, "--out", study / "pre"]),
            (linprobe, ["--ckpt", ckpt, "--epochs", 2, "--data-dir", fmnist_folder,
                        "--out", study / "probe"]),
            (finetune, ["--ckpt", ckpt, "--dataset", "folder", "--image-size", 16, "--epochs", 1,
                        "--batch-size", 32, "--data-dir", fmnist_folder, "--out", study / "tune"])]
    for script, args in runs[1:]:
        assert run(script, *args)[0] == 0
    for path in study.rglob("*.pt"):  # what git holds of the study
        path.unlink()
    clone = tmp_path / "clone"  # cloned elsewhere: every path in the arguments differs
    study.rename(clone)
    runs = [(script, [clone / a.relative_to(study)
                      if isinstance(a, type(study)) and study in a.parents else a
                      for a in args])
            for script, args in runs]
    study = clone
    files = {p: p.read_bytes() for p in study.rglob("*") if p.is_file()}
    for script, args in runs:
        code, out, err = run(script, *args, "--resume")
        assert code == 0 and "already ended" in out and not err, (script, err)
        code, _, err = run(script, *args)  # without --resume: refused, as with its checkpoint
        assert (one_line_error(code, err)
                and "holds this run, already ended: nothing to do" in err), (script, err)
    code, _, err = run(pretrain, *runs[0][1], "--seed", 5, "--resume")  # another run: refused
    assert one_line_error(code, err) and "differs in seed" in err
    assert {p: p.read_bytes() for p in study.rglob("*") if p.is_file()} == files


def test_linprobe_never_reuses_features_of_other_data_or_weights(pre, fmnist_folder, tmp_path, run):
    args = ["--ckpt", pre / "ckpt.pt", "--epochs", 3, "--out", tmp_path / "probe"]
    assert run(linprobe, *args, "--data-dir", fmnist_folder)[0] == 0
    results = (tmp_path / "probe" / "results.json").read_text()
    other_data = copy_folder(fmnist_folder, tmp_path / "half", keep_every=2)
    other_ckpt = tmp_path / "other" / "ckpt.pt"
    other_ckpt.parent.mkdir()
    ckpt = torch.load(pre / "ckpt.pt", weights_only=True)
    ckpt["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, other_ckpt)
    for changed in (["--data-dir", other_data], ["--data-dir", fmnist_folder, "--ckpt", other_ckpt],
                    ["--data-dir", fmnist_folder, "--pool", "mean"]):
        code, _, err = run(linprobe, *args, *changed, "--resume")
        assert one_line_error(code, err) and "another config" in err, changed
    # the same probe again, without --resume
    code, _, err = run(linprobe, *args, "--data-dir", fmnist_folder)
    assert one_line_error(code, err) and "--resume" in err
    assert (tmp_path / "probe" / "results.json").read_text() == results
    code, _, err = run(linprobe, *args,
                       "--data-dir", copy_folder(fmnist_folder, tmp_path / "same"), "--resume")
    assert code == 0, err  # the same images elsewhere: the features are the same, and reused


def test_a_checkpoint_made_again_is_the_same_checkpoint(pre, fmnist_folder, tmp_path, run):
    """A probe's checkpoint is known by its config and weights, not its file's bytes: saved again
    (as a fresh machine would make it again) it is the same run; written whole twice, the bytes
    are the same too."""
    ckpt = torch.load(pre / "ckpt.pt", weights_only=True)
    files.save_atomic(ckpt, tmp_path / "a.pt")
    files.save_atomic(ckpt, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    args = ["--epochs", 2, "--data-dir", fmnist_folder, "--out", tmp_path / "probe"]
    assert run(linprobe, "--ckpt", pre / "ckpt.pt", *args)[0] == 0
    torch.save(ckpt, tmp_path / "again.pt")  # other bytes, the same content
    assert (tmp_path / "again.pt").read_bytes() != (pre / "ckpt.pt").read_bytes()
    code, out, err = run(linprobe, "--ckpt", tmp_path / "again.pt", *args, "--resume")
    assert code == 0 and "already ended" in out, err


def test_an_out_folder_holding_another_run_is_refused_by_every_script(
        pre, fmnist_folder, tmp_path, run):
    probe = ["--data-dir", fmnist_folder, "--epochs", 2]
    assert run(linprobe, "--ckpt", pre / "ckpt.pt", *probe, "--out", tmp_path / "probe")[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "probe").iterdir()}
    other = tmp_path / "other"
    assert run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--seed", 1, "--out", other)[0] == 0
    for script, args in ((linprobe, ["--ckpt", other / "ckpt.pt", *probe]),
                         (linprobe, ["--ckpt", pre / "ckpt.pt", *probe, "--epochs", 3, "--resume"]),
                         (pretrain, [*SHORT, "--data-dir", fmnist_folder]),
                         (finetune, ["--ckpt", pre / "ckpt.pt", *probe])):
        code, _, err = run(script, *args, "--out", tmp_path / "probe")
        assert one_line_error(code, err), (script.__name__, args, err)
    assert {p.name: p.read_bytes() for p in (tmp_path / "probe").iterdir()} == before
    # a pretraining run's folder
    code, _, err = run(linprobe, "--ckpt", pre / "ckpt.pt", *probe, "--out", pre)
    assert one_line_error(code, err) and not (pre / "features.pt").exists()


def test_folder_test_class_without_a_train_class_is_refused(tmp_path, run):
    write_folder(tmp_path / "f")
    (tmp_path / "f" / "test" / "cat").rename(tmp_path / "f" / "test" / "lynx")
    with pytest.raises(files.UserError, match="lynx"):
        data.load("folder", "test", str(tmp_path / "f"), 16)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    write_folder(tmp_path / "f", per_class=1)
    grey = np.random.default_rng(0).integers(0, 65536, (32, 32), dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "f" / "train" / "cat" / "0.png")
    assert Image.open(tmp_path / "f" / "train" / "cat" / "0.png").mode.startswith("I")
    x, _ = data.load("folder", "train", str(tmp_path / "f"), 32)
    assert abs(x[0].float().mean().item() - grey.mean() / 257) < 1.5
    assert torch.equal(x[0, 0], torch.from_numpy((grey >> 8).astype(np.uint8)))


def test_report_gathers_seeds_and_keeps_other_runs_apart(tmp_path, run):
    pre_cfg = {"dim": 64, "depth": 4, "patch_size": 4, "epochs": 10, "seed": 0, "blr": 1e-3,
               "attention": None}
    runs = [("s0", 0.40, 0, {}), ("s1", 0.50, 1, {}), ("blr", 0.90, 0, {"blr": 1.0}),
            ("wave", 0.6, 0, {"attention": "wave"})]
    for name, acc, seed, extra in runs:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"dataset": "cifar10", "target": "original", "eval": "linprobe", "accuracy": acc,
             "knn": acc / 2, "epochs": 30, "config": {"seed": 0, "ckpt": name},
             "pretrain_config": pre_cfg | {"seed": seed} | extra}))
    code, out, err = run(report, tmp_path)
    rows = [line for line in out.splitlines() if "| original |" in line]
    assert code == 0 and len(rows) == 3, out
    assert any("wave attention" in r and "0.600" in r for r in rows), rows
    assert any("0.450 ± 0.071 (n=2)" in r and "kNN 0.225 ± 0.035 (n=2)" in r for r in rows), rows
    assert any("0.900 (kNN 0.450), 30 ep" in r for r in rows), rows


def test_default_warmup_is_a_tenth_of_the_run_and_never_longer_than_it(
        fmnist_folder, tmp_path, run):
    i = SHORT.index("--warmup-epochs")
    flags = SHORT[:i] + SHORT[i + 2:]
    assert run(pretrain, *flags, "--epochs", 10, "--data-dir", fmnist_folder,
               "--out", tmp_path / "a")[0] == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["config"]["warmup_epochs"] == 1
    assert finetune.get_args(["--init", "none", "--epochs", "40"]).warmup_epochs == 2
    assert linprobe.get_args(["--ckpt", "x", "--epochs", "30"]).warmup_epochs == 3


def test_resuming_a_run_that_has_ended_leaves_its_files_as_they_are(
        pre, fmnist_folder, tmp_path, run):
    evals = ["--ckpt", pre / "ckpt.pt", "--dataset", "folder", "--image-size", 16,
             "--data-dir", fmnist_folder, "--epochs", 1]
    runs = [(pretrain, [*SHORT, "--data-dir", fmnist_folder], pre),
            (linprobe, evals, tmp_path / "probe"), (finetune, evals, tmp_path / "finetune")]
    for script, args, out in runs[1:]:
        code, _, err = run(script, *args, "--out", out)
        assert code == 0, err
    for script, args, out in runs:
        before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
        code, stdout, err = run(script, *args, "--out", out, "--resume")
        assert code == 0 and "already ended" in stdout, (script.__name__, err)
        assert ({path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
                == before), script.__name__


def test_the_log_survives_a_stop_between_checkpoint_and_log_line(fmnist_folder, tmp_path, run):
    args = [*SHORT, "--data-dir", fmnist_folder, "--out", tmp_path]
    assert run(pretrain, *args)[0] == 0
    whole = (tmp_path / "log.jsonl").read_text()
    for cut in (whole.splitlines(True)[0], whole[:-20]):  # the last line lost, or cut short
        (tmp_path / "log.jsonl").write_text(cut)
        (tmp_path / "summary.json").unlink()  # the stop came before the run's end
        assert run(pretrain, *args, "--resume")[0] == 0
        assert (tmp_path / "log.jsonl").read_text() == whole
    (tmp_path / "log.jsonl").write_text(whole[:-20])
    assert files.read_jsonl(tmp_path / "log.jsonl") == [json.loads(whole.splitlines()[0])]


def test_flags_a_run_did_not_use_are_not_written_as_used(pre, fmnist_folder, tmp_path, run):
    code, _, err = run(linprobe, "--ckpt", pre / "ckpt.pt", "--data-dir", fmnist_folder,
                       "--epochs", 2, "--out", tmp_path / "probe")
    assert code == 0, err
    assert json.loads(
        (tmp_path / "probe" / "results.json").read_text())["config"]["image_size"] == 16
    # a size the encoder cannot take is refused, in one line, before the data is read (none here)
    code, _, err = run(linprobe, "--ckpt", pre / "ckpt.pt", "--data-dir", tmp_path / "none",
                       "--image-size", 64, "--out", tmp_path / "probe64")
    assert (one_line_error(code, err)
            and "pretrained on 3x16x16 images; this dataset has 3x64x64" in err), err
    write_cifar10(tmp_path / "c")
    code, _, err = run(pretrain, *[a if a != "folder" else "cifar10" for a in SHORT],
                       "--image-size", 64, "--data-dir", tmp_path / "c", "--out", tmp_path / "c10")
    assert code == 0, err
    assert json.loads((tmp_path / "c10" / "summary.json").read_text())["config"]["image_size"] == 32


def test_a_read_only_cache_folder_is_worked_around(tmp_path, run, monkeypatch):
    write_folder(tmp_path / "f")

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(torch, "save", read_only)
    code, out, err = run(pca_project, "--dataset", "folder", "--data-dir", tmp_path / "f",
                         "--out", tmp_path / "g.png")
    assert code == 0 and "fitted" in out and "warning: cannot write the cache" in err
    assert not (tmp_path / "f" / "cache").exists() or not any((tmp_path / "f" / "cache").iterdir())


def test_ctrl_c_is_one_line_saying_how_to_resume(capsys, tmp_path):
    def interrupted():
        files.hold(tmp_path)  # the run's --out, as claim_out holds it
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as e:  # before the first checkpoint: nothing to resume
        cli.main_guard(interrupted)
    err = capsys.readouterr().err
    assert e.value.code == 130 and len(err.strip().splitlines()) == 1 and "--resume" not in err
    assert "nothing was saved yet (no checkpoint)" in err
    (tmp_path / "ckpt.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        cli.main_guard(interrupted)
    err = capsys.readouterr().err
    assert e.value.code == 130 and len(err.strip().splitlines()) == 1
    assert (f"{tmp_path / 'ckpt.pt'} is kept: the same command with --resume continues from it"
            in err)
    with pytest.raises(SystemExit) as e:  # a script that is no training run says no such thing
        cli.main_guard(interrupted, resumable=False)
    err = capsys.readouterr().err
    assert e.value.code == 130 and len(err.strip().splitlines()) == 1 and "--resume" not in err


def test_hostile_inputs_are_one_line_before_any_work(
        pre, fmnist_folder, tmp_path, run, monkeypatch):
    """Each case: exit 2, one line on stderr, no traceback, and --out left as it was."""
    tiny = [*SHORT, "--data-dir", fmnist_folder]
    ft = ["--init", "none", "--dataset", "folder", "--image-size", 16, "--patch-size", 4,
          "--dim", 32, "--depth", 1, "--heads", 2, "--epochs", 1, "--data-dir", fmnist_folder]
    pca = ["--dataset", "folder", "--image-size", 16]
    bad = {}
    for name, fill in (("constant", 7), ("single", None)):
        write_folder(tmp_path / name, classes=("a",), per_class=1 if fill is None else 3)
        if fill is not None:
            for p in (tmp_path / name / "train" / "a").iterdir():
                Image.fromarray(np.full((16, 16, 3), fill, np.uint8)).save(p)
    for name in ("corrupt", "truncated", "dangling"):
        bad[name] = (write_folder(tmp_path / name, per_class=2)
                     or tmp_path / name / "train" / "cat" / "0.png")
    bad["corrupt"].write_bytes(b"not an image")
    bad["truncated"].write_bytes(bad["truncated"].read_bytes()[:200])
    bad["dangling"].unlink()
    bad["dangling"].symlink_to(tmp_path / "nowhere.png")
    write_folder(tmp_path / "eight", per_class=4)
    (tmp_path / "plain").mkdir()
    torch.save(torch.zeros(3), tmp_path / "plain" / "ckpt.pt")
    (tmp_path / "probe").mkdir()
    torch.save(torch.zeros(3), tmp_path / "probe" / "features.pt")
    for name, text in (("truncated", '{"dataset": "cifar10", "acc'), ("list", "[]"),
                       ("empty", "{}")):
        (tmp_path / "results" / name).mkdir(parents=True)
        (tmp_path / "results" / name / "results.json").write_text(text)
    cases = [
        (pretrain, [*tiny, "--image-size", 0]), (pretrain, [*tiny, "--image-size", -3]),
        (pretrain, [*tiny, "--patch-size", 0]), (pretrain, [*tiny, "--patch-size", -4]),
        (pretrain, [*tiny, "--device", "mps"]), (pretrain, [*tiny, "--device", "meta"]),
        (pretrain, [*tiny, "--knn-train", 0]), (pretrain, [*tiny, "--knn-test", 0]),
        (pretrain, [*tiny, "--eval-every", 0]), (pretrain, [*tiny, "--blr", "nan"]),
        (pretrain, [*tiny, "--blr", -1]),
        (pretrain, [*tiny, "--weight-decay", -1]), (pretrain, [*tiny, "--warmup-epochs", -5]),
        (pretrain, [*tiny, "--warmup-epochs", 3]),  # longer than the 2-epoch run
        (pretrain, [*tiny, "--resume", "--out", tmp_path / "plain"]),
        (finetune, [*ft, "--layer-decay", -1]), (finetune, [*ft, "--label-smoothing", 2]),
        (finetune, [*ft, "--mixup", -1]), (finetune, [*ft, "--cutmix", -1]),
        (finetune, [*ft, "--drop-path", 1.0]),
        # leaves no train image
        (finetune, [*ft, "--data-dir", tmp_path / "eight", "--val-split", 0.99]),
        (linprobe, ["--ckpt", tmp_path / "plain" / "ckpt.pt"]),
        (linprobe, ["--ckpt", pre / "ckpt.pt", "--data-dir", fmnist_folder, "--resume",
                    "--out", tmp_path / "probe"]),
        (pca_project, [*pca, "--data-dir", fmnist_folder, "--n-images", 0]),
        (pca_project, [*pca, "--data-dir", fmnist_folder, "--out", tmp_path]),  # a folder
        (pca_project, [*pca, "--data-dir", fmnist_folder, "--out", "/proc/grid.png"]),
        *[(pca_project, [*pca, "--data-dir", tmp_path / name])
          for name in ("constant", "single", *bad)],
        *[(report, [tmp_path / "results" / name]) for name in ("truncated", "list", "empty")],
        (report, [tmp_path / "nonexistent"]),
        (pretrain, [*tiny, "--mask-ratio", 0.999]), (pretrain, [*tiny, "--mask-ratio", 0.001]),
    ]
    for i, (script, args) in enumerate(cases):
        out = tmp_path / f"out{i}"
        if script is not report and "--out" not in args:
            args = [*args, "--out", out if script is not pca_project else out / "grid.png"]
        before = sorted(os.listdir(tmp_path))
        code, _, err = run(script, *args)
        assert one_line_error(code, err), (script.__name__, args, err)
        assert not out.exists() or not any(out.iterdir()), (
            script.__name__, args, list(out.iterdir()))
        assert sorted(os.listdir(tmp_path)) in (before, sorted(before + [out.name])), (
            script.__name__, args)
    assert "not a folder" in run(report, tmp_path / "nonexistent")[2]
    assert "masks 16 of the 16 patches" in run(pretrain, *tiny, "--mask-ratio", 0.999,
                                               "--out", tmp_path / "m")[2]
    for name, path in bad.items():  # the message names the file
        assert str(path) in run(pca_project, *pca, "--data-dir", tmp_path / name)[2], name


@pytest.mark.parametrize("script,args,key", [
    (pretrain, [*SHORT, "--target", "bottom", "--pct", 25, "--stop-epoch", 1], "pca_fit"),
    (finetune, ["--init", "none", "--input", "bottom", "--pct", 25, "--dataset", "folder",
                "--image-size", 16, "--patch-size", 4, "--dim", 32, "--depth", 2, "--heads", 2,
                "--batch-size", 64, "--epochs", 2, "--stop-epoch", 1], "band_first")])
def test_a_run_that_older_code_started_goes_on_only_as_that_code_ran_it(
        fmnist_folder, tmp_path, run, script, args, key):
    """A checkpoint whose config lacks a key of today's (older.OLDER_CODE) was made by code that did
    otherwise: resuming it with today's would change what it trains on mid-run, so it is refused."""
    args = [*args, "--data-dir", fmnist_folder, "--out", tmp_path]
    assert run(script, *args)[0] == 0
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["config"].pop(key) is not None
    torch.save(ckpt, tmp_path / "ckpt.pt")
    code, _, err = run(script, *args, "--resume")
    assert one_line_error(code, err) and f"differs in {key}" in err
