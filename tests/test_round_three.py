"""Issue 39's third round: classes of bad input, each held by the one mechanism that owns it (the
walker and the opener in files.py, the argument types in cli.py, the output rule in outfolder.py,
the results' ranges in report.py), tried on several cases of each class."""
import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import cli
import data
import export
import files
import finetune
import linprobe
import outfolder
import pca_project
import pretrain
import report
import training
from conftest import SHORT, write_folder
from test_pca import ROOT, one_line_error

FT = ["--init", "none", "--dataset", "folder", "--image-size", 16, "--patch-size", 4, "--dim", 32,
      "--depth", 1, "--heads", 2, "--epochs", 1, "--batch-size", 32]


def probe_args(ckpt, data_dir, out, *more):
    return ["--ckpt", ckpt, "--data-dir", data_dir, "--epochs", 1, "--out", out, *more]


# 1. Paths that are not what they seem: one walker, one opener

def test_the_walker_yields_each_real_file_once_breaks_loops_and_names_what_is_no_file(tmp_path):
    root = tmp_path / "r"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"1")
    (root / "a" / "b" / "y.png").write_bytes(b"2")
    (root / "a-c").mkdir()
    (root / "a-c" / "z.png").write_bytes(b"3")
    (root / "loop").symlink_to(root)  # back up the tree
    (root / "twin.png").symlink_to(root / "a" / "x.png")  # a second path to one file
    os.link(root / "a" / "b" / "y.png", root / "hard.png")
    (root / "notes.txt").write_text("n")
    found = files.walk(root, lambda n: n.endswith(".png"))
    # os.walk's sorted order, each real file once (the link and the hard link are second paths)
    by_walk = [os.path.join(d, f) for d, _, fs in sorted(os.walk(root)) for f in sorted(fs)
               if f.endswith(".png")]
    assert len(found) == 3 and [p for p in by_walk if p in found] == found
    assert {open(p, "rb").read() for p in found} == {b"1", b"2", b"3"}
    assert all(str(root / "loop") not in p for p in found)
    os.mkfifo(root / "a" / "pipe.png")
    with pytest.raises(files.UserError, match="pipe.png is not a regular file"):
        files.walk(root, lambda n: n.endswith(".png"))
    # a pipe not asked for is passed by
    assert len(files.walk(root, lambda n: n.endswith(".txt"))) == 1
    (root / "a" / "pipe.png").unlink()
    (root / "dead.png").symlink_to(tmp_path / "nowhere")
    with pytest.raises(files.UserError, match="dead.png"):
        files.walk(root, lambda n: n.endswith(".png"))


def test_the_opener_names_a_folder_a_pipe_and_a_dead_link_in_one_line(tmp_path):
    (tmp_path / "dir.json").mkdir()
    os.mkfifo(tmp_path / "pipe.json")
    (tmp_path / "dead.json").symlink_to(tmp_path / "nowhere")
    (tmp_path / "self.json").symlink_to(tmp_path / "self.json")
    for name, why in (("dir", "is a folder"), ("pipe", "not a regular file"),
                      ("dead", "No such file"), ("self", "symbolic links")):
        path = tmp_path / f"{name}.json"
        for read in (lambda p: files.read_json(p, "summary.json"), files.read_jsonl,
                     files.load_checkpoint):
            with pytest.raises(files.UserError, match=why):
                read(str(path))


def test_a_lock_that_is_a_folder_and_odd_names_are_one_line_and_leave_nothing(
        fmnist_folder, tmp_path, run, monkeypatch):
    tiny = [*SHORT, "--data-dir", fmnist_folder]
    (tmp_path / "L" / ".lock").mkdir(parents=True)
    code, _, err = run(pretrain, *tiny, "--out", tmp_path / "L")
    assert one_line_error(code, err) and ".lock is a folder" in err
    monkeypatch.chdir(tmp_path)
    for args in ([*tiny, "--out", ""], [*tiny, "--data-dir", "", "--out", "x"],
                 [*tiny, "--out", "a\udcffb"]):
        code, _, err = run(pretrain, *args)
        assert one_line_error(code, err), err
    for args in (["--ckpt", "", "--out", "y"], ["--ckpt", "c\udcfe.pt"]):
        code, _, err = run(linprobe, *args)
        assert one_line_error(code, err), err
    assert sorted(os.listdir(tmp_path)) == ["L"]  # no .lock, no folder
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"a checkpoint")
    (tmp_path / "V").mkdir()
    (tmp_path / "V" / ".lock").symlink_to(victim)  # a lock opened through it would truncate it
    code, _, err = run(pretrain, *tiny, "--out", tmp_path / "V")
    assert (one_line_error(code, err) and "symbolic link" in err
            and victim.read_bytes() == b"a checkpoint")
    # a folder whose log.jsonl's temp file fits in PATH_MAX (4,095 characters) but its
    # recon-0001.png's does not
    out, left = str(tmp_path), 4079 - len(str(os.getpid())) - len(str(tmp_path))
    while left > 202:
        out, left = out + "/" + "x" * 200, left - 201
    out += "/" + "y" * (left - 1)
    code, _, err = run(pretrain, *tiny, "--out", out)
    assert one_line_error(code, err) and "recon-0000.png" in err, err


def test_image_and_class_names_that_are_not_text_are_read(tmp_path):
    write_folder(tmp_path / "d", per_class=2)
    root = os.fsencode(tmp_path / "d")
    os.rename(os.path.join(root, b"train", b"cat", b"0.png"),
              os.path.join(root, b"train", b"cat", b"\xff.png"))
    os.rename(os.path.join(root, b"train", b"dog"), os.path.join(root, b"train", b"d\xfeg"))
    os.rename(os.path.join(root, b"test", b"dog"), os.path.join(root, b"test", b"d\xfeg"))
    x, y = data.load("folder", "train", str(tmp_path / "d"), 16)
    assert len(x) == 4 and sorted(y.tolist()) == [0, 0, 1, 1]
    # and from its cache
    assert torch.equal(data.load("folder", "train", str(tmp_path / "d"), 16)[0], x)


def test_report_counts_a_copied_run_once_and_walks_no_loop(pre, fmnist_folder, tmp_path, run):
    runs = tmp_path / "R"
    assert run(linprobe, *probe_args(pre / "ckpt.pt", fmnist_folder, runs / "a"))[0] == 0
    shutil.copytree(runs / "a", runs / "b")  # cp -r of a run
    (runs / "loop").symlink_to(runs)
    code, out, _ = run(report, runs)
    assert code == 0 and "(n=" not in out  # one run, not two or eighty
    assert (f"{runs / 'b' / 'results.json'} is a copy of {runs / 'a' / 'results.json'}: "
            "counted once" in out)
    os.mkfifo(runs / "c.json")
    (runs / "d").mkdir()
    os.mkfifo(runs / "d" / "results.json")
    code, _, err = subprocess.run([sys.executable, "report.py", str(runs)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=60).returncode, None, None
    assert code == 2  # named, never a read that hangs


def test_an_image_folder_holding_a_pipe_is_one_line_not_a_hang(tmp_path):
    write_folder(tmp_path / "d", per_class=2)
    os.mkfifo(tmp_path / "d" / "train" / "cat" / "pipe.png")
    p = subprocess.run([sys.executable, "pca_project.py", "--dataset", "folder",
                        "--data-dir", str(tmp_path / "d"), "--image-size", "16",
                        "--out", str(tmp_path / "g.png")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert one_line_error(p.returncode, p.stderr) and "pipe.png is not a regular file" in p.stderr


# 2. Numbers the machine cannot honour

def test_every_number_past_what_the_code_honours_is_refused_by_its_flag_before_any_data(
        tmp_path, run):
    nowhere = ["--data-dir", tmp_path / "no-data", "--out", tmp_path / "o"]
    tiny = [*SHORT, *nowhere]
    cases = [
        (pretrain, [*tiny, "--image-size", 100000]), (pretrain, [*tiny, "--patch-size", 5000]),
        (pretrain, [*tiny, "--dim", 100000]), (pretrain, [*tiny, "--depth", 10**6]),
        (pretrain, [*tiny, "--decoder-heads", 10**6]), (pretrain, [*tiny, "--batch-size", 10**20]),
        (pretrain, [*tiny, "--seed", -1]), (pretrain, [*tiny, "--seed", 2**40]),
        (pretrain, [*tiny, "--blr", 1e6]),
        (pretrain, [*tiny, "--sigma", 1e9, "--corruption", "gaussian"]),
        (pretrain, [*tiny, "--epochs", 10**12]), (pretrain, [*tiny, "--knn-train", 10**12]),
        (pretrain, [*tiny, "--subset", 10**12]), (pretrain, [*tiny, "--ckpt-every", 10**12]),
        (pretrain, [*tiny, "--weight-decay", 1e9]),
        (pretrain, [*tiny, "--dim", 8192, "--depth", 256, "--heads", 4]),  # 2e11 weights
        (pretrain, [*tiny, "--image-size", 1024, "--patch-size", 1]),  # a 1024 x 1024 patch grid
        (finetune, [*FT, *nowhere, "--mixup", 1e9]), (finetune, [*FT, *nowhere, "--cutmix", 1e9]),
        (finetune, [*FT, *nowhere, "--mixup", 1e-300]),  # a Beta distribution it underflows
        (finetune, [*FT, *nowhere, "--dim", 8192, "--depth", 256]),
        (linprobe, ["--ckpt", tmp_path / "c.pt", *nowhere, "--batch-size", 99999999999999999999]),
        (pca_project, ["--dataset", "folder", "--data-dir", tmp_path / "no-data",
                       "--n-images", 10**9]),
    ]
    for script, args in cases:
        code, _, err = run(script, *args)
        assert one_line_error(code, err), (args, err)
        assert "no-data" not in err and "not found" not in err, (args, err)  # before any data
    assert not os.path.exists(tmp_path / "o")


def test_the_probe_records_the_batch_it_used(pre, fmnist_folder, tmp_path, run):
    assert run(linprobe, *probe_args(pre / "ckpt.pt", fmnist_folder, tmp_path / "p",
                                     "--batch-size", 100000))[0] == 0
    results = json.loads((tmp_path / "p" / "results.json").read_text())
    assert results["used"]["batch_size"] == 200  # the train split: 20 images of 10 classes
    assert results["used"]["precision"] == "fp32"  # the features' (no --amp on a CPU)
    assert results["config"]["amp_dtype"] == "bf16"  # what --amp would take here, as ever recorded


# 3. An output never replaces an input

def test_export_never_writes_over_its_input_or_a_file_of_a_run(pre, tmp_path, run):
    shutil.copytree(pre, tmp_path / "RUN")
    before = {p: (tmp_path / "RUN" / p).read_bytes() for p in os.listdir(tmp_path / "RUN")}
    (tmp_path / "link.pt").symlink_to(tmp_path / "RUN" / "ckpt.pt")
    for out in ("RUN/ckpt.pt", "link.pt", "RUN/ckpt.prev.pt", "RUN/log.jsonl", "RUN/summary.json",
                # the last three not there yet
                "RUN/keep-0009.pt", "RUN/results.json", "RUN/./features.pt"):
        code, _, err = run(export, tmp_path / "RUN" / "ckpt.pt", tmp_path / out)
        assert (one_line_error(code, err)
                and ("input" in err or "a file name of the pretrain.py run" in err)), err
    assert {p: (tmp_path / "RUN" / p).read_bytes() for p in os.listdir(tmp_path / "RUN")} == before
    os.mkfifo(tmp_path / "pipe.pt")
    (tmp_path / "dead.pt").symlink_to(tmp_path / "nowhere")
    for out in ("pipe.pt", "dead.pt"):  # there, and no file: not silently replaced
        code, _, err = run(export, tmp_path / "RUN" / "ckpt.pt", tmp_path / out)
        assert one_line_error(code, err) and "no regular file" in err, err
    for _ in range(2):  # a new file beside the run, and written again
        assert run(export, tmp_path / "RUN" / "ckpt.pt", tmp_path / "RUN" / "encoder.pt")[0] == 0
    code, _, err = run(pca_project, "--ckpt", tmp_path / "RUN" / "ckpt.pt",
                       "--out", tmp_path / "RUN" / "recon-0002.png")
    assert one_line_error(code, err) and "a file name of the pretrain.py run" in err
    code, _, err = run(pca_project, "--ckpt", tmp_path / "RUN" / "ckpt.pt",
                       "--cache", tmp_path / "RUN" / "ckpt.prev.pt", "--refit",
                       "--out", tmp_path / "g.png")
    assert one_line_error(code, err) and "a file name of the pretrain.py run" in err
    code, _, err = run(pca_project, "--ckpt", tmp_path / "RUN" / "ckpt.pt",
                       "--cache", tmp_path / "fit.png", "--out", tmp_path / "fit.png")
    assert one_line_error(code, err) and "input" in err
    assert {p: (tmp_path / "RUN" / p).read_bytes() for p in os.listdir(tmp_path / "RUN")
            if p != "encoder.pt"} == before


def test_no_script_writes_into_another_scripts_run_and_says_so_before_any_data(
        pre, fmnist_folder, tmp_path, run):
    probe = tmp_path / "probe"
    assert run(linprobe, *probe_args(pre / "ckpt.pt", fmnist_folder, probe))[0] == 0
    shutil.copytree(pre, tmp_path / "RUN")
    nowhere = ["--data-dir", tmp_path / "no-data"]
    cases = [
        (linprobe, probe_args(pre / "ckpt.pt", tmp_path / "no-data", tmp_path / "RUN"),
         "pretrain.py"),
        (pretrain, [*SHORT, *nowhere, "--out", probe], "linprobe.py"),
        (finetune, [*FT, *nowhere, "--out", tmp_path / "RUN"], "pretrain.py"),
        (finetune, [*FT, *nowhere, "--out", probe, "--resume"], "linprobe.py"),
    ]
    for script, args, holder in cases:
        code, _, err = run(script, *args)
        assert one_line_error(code, err) and f"holds a {holder} run" in err, err
    # nor into the folders its data is read from (its pictures would be read as images)
    for script, args in ((pretrain, SHORT), (finetune, FT)):
        code, _, err = run(script, *args, "--data-dir", fmnist_folder,
                           "--out", fmnist_folder / "train" / "class0")
        assert one_line_error(code, err) and "which the data is read from" in err, err
    assert not [p for p in (fmnist_folder / "train" / "class0").iterdir()
                if not p.name.endswith(".png")]
    # and a run of this script with another config is refused before the data too
    code, _, err = run(
        linprobe, *probe_args(pre / "ckpt.pt", tmp_path / "no-data", probe, "--pool", "mean"))
    assert one_line_error(code, err) and "differs in pool" in err


# 4. Results that say what they are

def test_weights_of_a_stop_mid_epoch_are_reported_with_their_steps_never_as_untrained(
        pre, fmnist_folder, tmp_path, run):
    ckpt = torch.load(pre / "ckpt.pt", weights_only=True)
    mid = tmp_path / "mid"
    mid.mkdir()
    # as --ckpt-every 2 leaves it, killed at step 2
    torch.save(ckpt | {"epoch": 0, "step": 2}, mid / "ckpt.pt")
    assert run(linprobe, *probe_args(mid / "ckpt.pt", fmnist_folder, tmp_path / "R" / "p"))[0] == 0
    results = json.loads((tmp_path / "R" / "p" / "results.json").read_text())
    assert (results["pretrain_epoch"], results["pretrain_step"]) == (0, 2)
    code, out, _ = run(report, tmp_path / "R")
    assert code == 0 and "pretrain ep 0 + 2 steps of 2" in out and report.UNTRAINED not in out
    code, out, _ = run(export, mid / "ckpt.pt", tmp_path / "e.pt")
    assert code == 0 and "epoch 0 + 2 steps" in out
    torch.save(ckpt | {"epoch": 0, "step": 0}, mid / "ckpt.pt")  # the initialisation
    assert run(linprobe, *probe_args(mid / "ckpt.pt", fmnist_folder, tmp_path / "R" / "p0"))[0] == 0
    assert report.UNTRAINED in run(report, tmp_path / "R")[1]


def test_a_run_is_ended_only_once_everything_it_writes_is_written(
        fmnist_folder, tmp_path, run, monkeypatch):
    args = [*SHORT, "--data-dir", fmnist_folder, "--out", tmp_path / "r"]

    def killed(*a, **k):
        raise KeyboardInterrupt  # as a kill between the curves and the band chart
    chart = report.explained_chart
    monkeypatch.setattr(report, "explained_chart", killed)
    assert run(pretrain, *args)[0] == 130
    assert not (tmp_path / "r" / "summary.json").exists()  # not ended
    monkeypatch.setattr(report, "explained_chart", chart)
    code, out, _ = run(pretrain, *args, "--resume")
    assert code == 0 and "already ended" not in out
    assert ((tmp_path / "r" / "explained.svg").exists()
            and (tmp_path / "r" / "summary.json").exists())


def test_a_results_json_with_a_figure_out_of_its_range_is_no_results_json(
        pre, fmnist_folder, tmp_path, run):
    assert run(linprobe, *probe_args(pre / "ckpt.pt", fmnist_folder, tmp_path / "good"))[0] == 0
    good = json.loads((tmp_path / "good" / "results.json").read_text())
    assert report.read_result(tmp_path / "good" / "results.json")["accuracy"] == good["accuracy"]
    pre_cfg = good["pretrain_config"]
    for i, (key, value) in enumerate((
            ("accuracy", 1.7), ("accuracy", -3), ("epochs", -1), ("epochs", 0), ("knn", 2.0),
            ("accuracy", True), ("pretrain_epoch", -1), ("seconds", -5),
            ("accuracy", 1e400), ("seconds", 1e400),
            ("eval", "bogus"), ("pretrain_epoch", 99), ("pretrain_config", {}),
            ("pretrain_config", pre_cfg | {"dim": None}),
            ("pretrain_config", pre_cfg | {"dim": True}),
            ("pretrain_config", pre_cfg | {"epochs": True}),
            ("pretrain_config", pre_cfg | {"target": "sideways"}),
            ("pretrain_config", pre_cfg | {"target": "bottom", "pct": -300}),
            ("pretrain_config", pre_cfg | {"target": "bottom", "pct": "x"}),
            ("pretrain_config", {k: v for k, v in pre_cfg.items() if k != "epochs"}),
            ("pretrain_config", pre_cfg | {"masking": "pca", "pca_mask_share": None}),
            ("config", good["config"] | {"layer_decay": 7}),
            ("config", good["config"] | {"layer_decay": "x"}),
            ("used", "fp32"), ("used", {"precision": 16}), ("used", {"bf16_epochs": 3}),
            ("config", good["config"] | {"tensors_sha1": ["a"]}), ("pretrain_precision", 16))):
        path = tmp_path / f"bad{i}" / "results.json"
        path.parent.mkdir()
        path.write_text(json.dumps(good | {key: value}))
        with pytest.raises(files.UserError, match="not a results.json"):
            report.read_result(path)
    summary = tmp_path / "s" / "summary.json"
    summary.parent.mkdir()
    for seconds in (-360000, "abc", 1e400):
        summary.write_text(json.dumps({"train_seconds": seconds}))
        code, out, err = run(report, tmp_path / "s")
        assert one_line_error(code, err) and out == "", err  # nothing printed before the refusal
    shutil.rmtree(tmp_path / "s")
    # the ends are in range
    for key, value in (("accuracy", 0), ("accuracy", 1), ("knn", None), ("epochs", 1)):
        path = tmp_path / "edge" / "results.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(good | {key: value}))
        assert report.read_result(path)[key] == value


def test_a_flag_the_checkpoint_overrides_is_refused_where_it_contradicts_it(
        pre, fmnist_folder, tmp_path, run):
    # as the bottom-25% run it could have been
    ckpt = torch.load(pre / "ckpt.pt", weights_only=True)
    torch.save(ckpt | {"config": ckpt["config"] | {"target": "bottom", "pct": 25}},
               tmp_path / "band.pt")
    pca = ["--ckpt", tmp_path / "band.pt", "--data-dir", fmnist_folder, "--out", tmp_path / "g.png"]
    for flag, value in (("--pct", 10), ("--image-size", 32), ("--dataset", "cifar10"),
                        ("--aug", "none"), ("--images", "unlabeled")):
        code, _, err = run(pca_project, *pca, flag, value)
        assert (one_line_error(code, err)
                and f"{flag} {value} contradicts the checkpoint's" in err), err
    assert run(pca_project, *pca, "--image-size", 16, "--dataset", "folder", "--pct", 25)[0] == 0
    code, _, err = run(
        linprobe, *probe_args(pre / "ckpt.pt", fmnist_folder, tmp_path / "p", "--image-size", 32))
    assert one_line_error(code, err)


# 5. Failures leave nothing behind, and say what is true

def test_a_refusal_after_the_claim_leaves_no_folder_and_no_lock(fmnist_folder, tmp_path, run):
    tiny = [*SHORT, "--data-dir", tmp_path / "no-data"]
    code, _, err = run(pretrain, *tiny, "--out", tmp_path / "new" / "deep")
    assert one_line_error(code, err) and not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    code, _, err = run(pretrain, *tiny, "--out", tmp_path / "mine")
    assert one_line_error(code, err) and os.listdir(tmp_path / "mine") == ["notes.txt"]
    code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--stop-epoch", 0,
                       "--out", tmp_path / "s")
    assert one_line_error(code, err) and not (tmp_path / "s").exists()


def test_resume_of_a_folder_that_holds_no_run_says_so(fmnist_folder, tmp_path, run):
    code, out, _ = run(pretrain, *SHORT, "--data-dir", fmnist_folder,
                       "--out", tmp_path / "new", "--resume")
    assert code == 0 and f"--resume: {tmp_path / 'new'} holds no run yet; starting it" in out
    # the lock goes with the process
    assert sorted(os.listdir(tmp_path / "new")).count(".lock") == 0


def test_ctrl_c_before_the_first_checkpoint_promises_nothing(
        fmnist_folder, tmp_path, run, monkeypatch):
    def stop(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "save_checkpoint", stop)
    code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--out", tmp_path / "r")
    assert code == 130 and "nothing was saved yet" in err and "--resume" not in err


# 6. Disk and permission faults everywhere

def test_a_full_disk_when_taking_the_lock_is_one_line(
        pre, fmnist_folder, tmp_path, run, monkeypatch):
    real = files.open_file

    class Full:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(files, "open_file", lambda *a, **k: Full(real(*a, **k)))
    code, _, err = run(linprobe, *probe_args(pre / "ckpt.pt", fmnist_folder, tmp_path / "p"))
    assert one_line_error(code, err) and "No space left on device" in err


def test_a_read_only_data_folder_without_a_cache_folder_warns_and_goes_on(
        tmp_path, monkeypatch, capsys):
    write_folder(tmp_path / "d", per_class=2)
    real = os.makedirs

    def read_only(path, *a, **k):
        if "cache" in str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(path, *a, **k)
    monkeypatch.setattr(os, "makedirs", read_only)
    x, y = data.load("folder", "train", str(tmp_path / "d"), 16)
    assert len(x) == 4 and "warning: cannot write the cache" in capsys.readouterr().err
    assert not (tmp_path / "d" / "cache").exists()


def test_a_band_monitor_without_figures_draws_no_chart(tmp_path):
    """--pca-mask-share 1e-300 hides no component: every band has no figure, and no chart is drawn."""
    logs = [{"epoch": e, "loss": 0.1,
             "explained": {"top 75%": None, "10-25%": None, "bottom 10%": None}}
            for e in (1, 2)]
    assert report.explained_chart(logs, tmp_path / "e.svg", "the image") is False
    assert not (tmp_path / "e.svg").exists()


def test_a_checkpoint_path_that_is_there_but_no_file_is_named_even_for_an_ended_probe(
        pre, fmnist_folder, tmp_path, run):
    assert run(linprobe, *probe_args(pre / "ckpt.pt", fmnist_folder, tmp_path / "p"))[0] == 0
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir.pt").mkdir()
    for ckpt in (tmp_path / "fifo", tmp_path / "dir.pt"):
        code, _, err = run(linprobe, *probe_args(ckpt, fmnist_folder, tmp_path / "p", "--resume"))
        assert one_line_error(code, err) and str(ckpt) in err, err


def test_a_band_that_holds_no_variance_is_refused(fmnist_folder, tmp_path, run):
    """200 images of 768 pixels vary along at most 199 components: a bottom band of the others would
    make every target the mean image, whatever --pct names."""
    for script, args in ((pretrain, [*SHORT, "--target", "bottom"]),
                         (finetune, [*FT, "--input", "bottom"])):
        code, _, err = run(script, *args, "--pct", 1e-9, "--data-dir", fmnist_folder,
                           "--out", tmp_path / "o")
        assert one_line_error(code, err) and "no variance" in err, err
        assert not (tmp_path / "o").exists()
