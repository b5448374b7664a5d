"""Issue 23's second round: the inputs the first round did not reach, each group held by the one
mechanism that should catch it (the folder lock, the label check, the image decoder, the data
identity, the argument checks before any data, the JSON readers, the temp-file sweep)."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import cli
import data
import dataset_pca
import files
import finetune
import linprobe
import pca_project
import pretrain
import report
from conftest import SHORT, TINY, write_cifar10, write_folder
from test_pca import ROOT, one_line_error



def dead_pid():
    """The pid of a process that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# 1. Data lost

def test_a_held_folder_refuses_a_second_process_and_a_killed_holder_leaves_it_free(
        fmnist_folder, tmp_path):
    out = tmp_path / "R"
    cmd = [sys.executable, "pretrain.py",
           *map(str, [*SHORT, "--data-dir", fmnist_folder, "--out", out])]
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import files, os; os.makedirs({str(out)!r}); "
         f"files.hold({str(out)!r}); print('held', flush=True); "
         "import time; time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert (one_line_error(second.returncode, second.stderr)
            and f"process {holder.pid}" in second.stderr)
    assert sorted(os.listdir(out)) == [".lock"]  # nothing of the second run written
    holder.kill()
    holder.wait()
    third = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr


def test_a_folder_is_held_until_the_script_ends(pre, fmnist_folder, tmp_path, run):
    probe = ["--ckpt", pre / "ckpt.pt", "--data-dir", fmnist_folder, "--epochs", 1,
             "--out", tmp_path / "p"]
    assert run(linprobe, *probe)[0] == 0
    assert not files._HELD  # main_guard let go of it
    files.hold(tmp_path / "p")  # as another process would
    try:
        p = subprocess.run([sys.executable, "linprobe.py", *map(str, probe), "--resume"], cwd=ROOT,
                           capture_output=True, text=True)
    finally:
        files.release_folders()
    assert one_line_error(p.returncode, p.stderr) and "in use by another run" in p.stderr


# 2. Silently wrong results

def test_folder_labels_follow_the_train_classes_whatever_the_cache(tmp_path):
    write_folder(tmp_path, classes=("c0", "c1"), per_class=2)
    assert data.load("folder", "test", tmp_path, 16)[1].tolist() == [0, 0, 1, 1]  # now cached
    (tmp_path / "train" / "a0").mkdir()
    shutil.copy(tmp_path / "train" / "c0" / "0.png", tmp_path / "train" / "a0")
    assert data.load("folder", "test", tmp_path, 16)[1].tolist() == [1, 1, 2, 2]  # a0 sorts first
    shutil.rmtree(tmp_path / "train" / "a0")
    shutil.move(tmp_path / "train" / "c1", tmp_path / "c1")
    with pytest.raises(files.UserError, match="test/c1 is a class with no train folder"):
        data.load("folder", "test", tmp_path, 16)


def test_a_train_class_without_images_is_refused(tmp_path):
    write_folder(tmp_path, classes=("c0", "c1", "c2"), per_class=2)
    for f in (tmp_path / "train" / "c2").iterdir():
        f.rename(f.with_suffix(".gif"))  # a format the folder reader skips
    with pytest.raises(files.UserError, match="train/c2 holds no image files"):
        data.load("folder", "train", tmp_path, 16)


def rewrite_cifar(root, name, change):
    path = root / "cifar-10-batches-py" / name
    batch = pickle.loads(path.read_bytes())
    path.write_bytes(pickle.dumps(change(batch)))


@pytest.mark.parametrize("name, change, says", [
    ("test_batch", lambda b: b | {"labels": [25] + b["labels"][1:]},
     "image 0 has label 25, not one of the 10"),
    ("test_batch", lambda b: b | {"labels": [-1] + b["labels"][1:]}, "image 0 has label -1"),
    ("data_batch_1", lambda b: b | {"labels": [10] + b["labels"][1:]},
     "train split at .* label 10"),
    ("test_batch", lambda b: b | {"labels": b["labels"][2:]}, "18 labels for 20 images"),
    ("test_batch", lambda b: b | {"data": b["data"].astype(np.float32)},
     "float32 images .* not uint8"),
    ("test_batch", lambda b: b | {"data": b["data"][:, :3000]}, "not uint8 .3, 32, 32.|corrupt"),
    ("test_batch", lambda b: [b], "holds a list, not a dict"),
    ("test_batch", lambda b: b | {"data": b["data"].tolist()}, "data is a list, not an array"),
])
def test_cifar_batches_that_cannot_be_right_are_refused_naming_the_problem(
        tmp_path, name, change, says):
    write_cifar10(tmp_path)
    data.load("cifar10", "test", tmp_path)  # a good cache first: the files' change must be seen
    rewrite_cifar(tmp_path, name, change)
    with pytest.raises(files.UserError, match=says):
        data.load("cifar10", "train" if "data_batch" in name else "test", tmp_path)


def write_stl10(root, labels, extra_bytes=0):
    base = root / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        pixels = np.random.default_rng(0).integers(
            0, 256, 10 * 3 * 96 * 96 + extra_bytes, dtype=np.uint8)
        pixels.tofile(base / f"{split}_X.bin")
        np.array(labels, np.uint8).tofile(base / f"{split}_y.bin")


@pytest.mark.parametrize("labels, extra, says", [
    ([0] + [1] * 9, 0, r"label 0, not one of the 10 classes \(1..10\)"),
    ([1] * 7, 0, "7 labels for 10 images"),
    ([1] * 10, 100, "corrupt .*not a whole number of 3x96x96 images"),
])
def test_stl10_files_that_cannot_be_right_are_refused(tmp_path, labels, extra, says):
    write_stl10(tmp_path, labels, extra)
    with pytest.raises(files.UserError, match=says):
        data.load("stl10", "train", tmp_path)


def test_a_truncated_fashion_mnist_file_is_called_corrupt_not_missing(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            b"\0\0\x08\x03" + (10).to_bytes(4, "big") * 3 + bytes(99))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            b"\0\0\x08\x01" + (10).to_bytes(4, "big") + bytes(10))
    with pytest.raises(files.UserError, match="corrupt"):
        data.load("fashion-mnist", "train", tmp_path)


@pytest.mark.parametrize("array, mode", [(np.full((8, 8), 254, np.int32), "I"),
                                         (np.full((8, 8), 0.5, np.float32), "F")])
def test_images_without_a_fixed_range_are_refused_naming_the_file(tmp_path, array, mode):
    path = tmp_path / "x.tif"
    Image.fromarray(array).save(path)
    assert Image.open(path).mode == mode
    with pytest.raises(files.UserError, match=f"{path}.*mode {mode}"):
        data.read_image(path, 8)


def test_a_single_class_dataset_is_refused_for_evaluation_not_for_its_pca(pre, tmp_path, run):
    write_folder(tmp_path / "one", classes=("a",), per_class=4)
    folder = ["--dataset", "folder", "--data-dir", tmp_path / "one", "--image-size", 16]
    for script, args in ((pretrain, [*SHORT, "--data-dir", tmp_path / "one"]),
                         (linprobe, ["--ckpt", pre / "ckpt.pt", *folder]),
                         (finetune, ["--ckpt", pre / "ckpt.pt", *folder, "--epochs", 1])):
        code, _, err = run(script, *args, "--out", tmp_path / script.__name__)
        assert (one_line_error(code, err)
                and "1 class: evaluation needs two" in err), (script.__name__, err)
    assert run(pca_project, *folder, "--out", tmp_path / "grid.png")[0] == 0


def test_resume_on_other_data_is_refused(fmnist_folder, tmp_path, run):
    args = [*TINY, "--epochs", 3, "--stop-epoch", 1, "--out", tmp_path / "r"]
    assert run(pretrain, *args, "--data-dir", fmnist_folder)[0] == 0
    other = tmp_path / "other"
    shutil.copytree(fmnist_folder, other, ignore=shutil.ignore_patterns("cache", "1*.png"))
    code, _, err = run(pretrain, *args, "--data-dir", other, "--resume")
    assert one_line_error(code, err) and "data_sha1 (the images or labels)" in err
    shutil.rmtree(other)
    # the same images elsewhere
    shutil.copytree(fmnist_folder, other, ignore=shutil.ignore_patterns("cache"))
    assert run(pretrain, *args, "--data-dir", other, "--resume")[0] == 0


def test_the_batch_lr_and_precision_used_are_recorded(fmnist_folder, tmp_path, run):
    args = [*TINY, "--data-dir", fmnist_folder, "--epochs", 2, "--batch-size", 4096,
            "--out", tmp_path]
    code, out, _ = run(pretrain, *args, "--stop-epoch", 1)
    assert code == 0 and "batch 200 (the whole train split)" in out
    assert run(pretrain, *args, "--resume", "--amp")[0] == 0
    used = json.loads((tmp_path / "summary.json").read_text())["used"]
    # and the kNN monitor's images: the default 5,000 and 1,000 cut to the 200 and 50 of the splits
    assert used == {"batch_size": 200, "peak_lr": 2e-3 * 200 / 256, "bf16_epochs": [2],
                    "fp16_epochs": [], "knn_train": 200, "knn_test": 50}
    assert [
        line["bf16"] for line in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
    ] == [False, True]


def result(acc, seed=0, **pre):
    base = {"dim": 32, "depth": 2, "patch_size": 4, "epochs": 10, "seed": seed,
            "target": "original", "masking": "random", "norm_pix_loss": False, "data_sha1": "aaa"}
    return {"dataset": "folder", "target": "original", "eval": "linprobe", "accuracy": acc,
            "knn": None, "epochs": 30, "config": {"seed": 0}, "pretrain_config": base | pre}


def test_report_rows_show_whatever_sets_them_apart(tmp_path):
    results = [result(0.40), result(0.50, seed=1), result(0.45, data_sha1="bbb"),
               result(0.30, masking="block"), result(0.35, norm_pix_loss=True)]
    rows = [line for line in report.table([report.read_result(write(tmp_path / str(i), r))
                                           for i, r in enumerate(results)]).splitlines()
            if "| folder |" in line]
    assert len(rows) == len(set(rows)) == 4, rows
    assert any("0.450 ± 0.071 (n=2)" in r and "data_sha1 aaa" in r for r in rows), rows
    assert any("0.450, 30 ep" in r and "data_sha1 bbb" in r for r in rows), rows
    assert any("block masking" in r for r in rows) and any("norm-pix" in r for r in rows), rows
    # A result made before data_sha1 existed is gathered with its seeds, not set apart.
    older = result(0.60, seed=2)
    del older["pretrain_config"]["data_sha1"]
    table = report.table([report.read_result(write(tmp_path / str(i), r))
                          for i, r in enumerate(results[:2] + [older])])
    assert "(n=3)" in table


def write(folder, r):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(r))
    return folder / "results.json"


# 3. Late crashes: refused from the arguments, before any data is read

def test_what_the_arguments_show_is_refused_before_any_data_is_read(
        pre, fmnist_folder, tmp_path, run, monkeypatch):
    (tmp_path / "text.png").write_text("not an image")
    folder = ["--dataset", "folder", "--data-dir", fmnist_folder, "--image-size", 16]
    cases = [
        (finetune, [*folder, "--ckpt", tmp_path / "missing.pt"]),
        (pretrain, [*SHORT, "--data-dir", fmnist_folder, "--patch-size", 5]),
        (pretrain, [*SHORT, "--data-dir", fmnist_folder, "--dim", 30, "--heads", 4]),
        (pretrain, [*SHORT, "--data-dir", fmnist_folder, "--image-size", 33]),
        (pretrain, [*SHORT, "--data-dir", fmnist_folder, "--out", tmp_path / "text.png"]),  # a file
        (linprobe, ["--ckpt", pre / "ckpt.pt", "--data-dir", fmnist_folder, "--batch-size", 1]),
        *[(pca_project, [*folder, "--image", tmp_path / name])
          for name in ("nonexist.png", "text.png", ".")],
        *[(pca_project, [*folder, "--out", tmp_path / name])
          for name in ("x.xyz", "noextension", "a" * 300 + ".png")],
    ]
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data read before the refusal"))
    monkeypatch.setattr(dataset_pca, "load_or_fit",
                        lambda *a, **k: pytest.fail("PCA fitted before the refusal"))
    for i, (script, args) in enumerate(cases):
        if "--out" not in args:
            args = [*args, "--out",
                    tmp_path / f"out{i}" / ("grid.png" if script is pca_project else "")]
        code, _, err = run(script, *args)
        assert one_line_error(code, err), (script.__name__, args, err)
    assert "text.png is a file, not a folder" in run(pretrain, *cases[4][1])[2]


def test_a_checkpoint_of_older_code_is_completed_with_what_that_code_did(
        pre, fmnist_folder, tmp_path, run):
    ckpt = torch.load(pre / "ckpt.pt", weights_only=True)
    for key in ("pca_mask_share", "masking", "image_shape", "norm_pix_loss", "knn_test"):
        del ckpt["config"][key]
    torch.save(ckpt, tmp_path / "old.pt")
    code, _, err = run(pca_project, "--ckpt", tmp_path / "old.pt", "--data-dir", fmnist_folder,
                       "--out", tmp_path / "g.png")
    assert code == 0, err
    assert run(linprobe, "--ckpt", tmp_path / "old.pt", "--data-dir", fmnist_folder, "--epochs", 1,
               "--out", tmp_path / "p")[0] == 0
    # --resume of a run whose checkpoint predates a key: not a difference the user made
    shutil.copytree(pre, tmp_path / "run")
    del ckpt["config"]["knn_train"]
    torch.save(ckpt | {"epoch": 1, "log": ckpt["log"][:1]}, tmp_path / "run" / "ckpt.pt")
    (tmp_path / "run" / "summary.json").unlink()
    code, out, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder,
                         "--out", tmp_path / "run", "--resume")
    assert code == 0 and "resuming at epoch 2" in out, err


# 4. Tracebacks instead of one line

def test_report_refuses_files_it_cannot_read_in_one_line(tmp_path, run):
    good = write(tmp_path / "good", result(0.5))
    cases = {"results.json": [b"\xff\xfe{", b'{"dataset": "folder", "target": "original", '
                                            b'"eval": "linprobe", "accuracy": null, "epochs": 30}'],
             "summary.json": [b'{"config": {', b"[]"],
             "log.jsonl": [b'{"epoch": 1}\n\xff\n{"epoch": 2}\n']}
    for name, contents in cases.items():
        for content in contents:
            folder = tmp_path / "bad"
            folder.mkdir()
            (folder / name).write_bytes(content)
            code, _, err = run(report, tmp_path, "--charts")
            assert one_line_error(code, err) and str(folder / name) in err, (name, content, err)
            shutil.rmtree(folder)
    # A result without pretrain_config (a from-scratch fine-tune of older code) is a row.
    r = result(0.5)
    del r["pretrain_config"]
    write(tmp_path / "scratch", r | {"config": {"dim": 32, "depth": 2, "patch_size": 4}})
    assert run(report, tmp_path)[0] == 0 and good.exists()


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_one(
        fmnist_folder, tmp_path, run, monkeypatch):
    args = [*TINY, "--data-dir", fmnist_folder, "--epochs", 2, "--out", tmp_path]
    assert run(pretrain, *args, "--stop-epoch", 1)[0] == 0
    before = (tmp_path / "ckpt.pt").read_bytes()
    save = torch.save

    def full_disk(obj, f, *a, **k):
        save(obj, f, *a, **k) if "model" not in obj else f.write(b"half") and (_ for _ in ()).throw(
            RuntimeError("PytorchStreamWriter failed writing file"))
    monkeypatch.setattr(torch, "save", full_disk)
    code, _, err = run(pretrain, *args, "--resume")
    assert one_line_error(code, err) and "cannot write" in err and "ckpt.pt" in err, err
    assert (tmp_path / "ckpt.pt").read_bytes() == before and not list(tmp_path.glob("*.tmp*"))


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path, run, monkeypatch):
    write_folder(tmp_path / "d", per_class=3)
    monkeypatch.setattr(torch, "save",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    x, _ = data.load("folder", "train", tmp_path / "d", 16)  # goes on without the cache
    assert len(x) == 6 and not (tmp_path / "d" / "cache" / "folder-train-16px.pt").exists()


# 5. Messages that mislead

def test_grid_masking_names_the_ratios_it_takes(fmnist_folder, run, tmp_path):
    code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--masking", "grid",
                       "--mask-ratio", 0.8889, "--out", tmp_path)
    assert one_line_error(code, err) and "0.8888888889" in err and "0.9375" in err


def test_finetune_takes_the_image_size_of_its_checkpoint(pre, fmnist_folder, tmp_path, run):
    code, out, err = run(finetune, "--ckpt", pre / "ckpt.pt", "--dataset", "folder",
                         "--data-dir", fmnist_folder, "--epochs", 1, "--out", tmp_path)
    assert code == 0, err
    assert json.loads((tmp_path / "results.json").read_text())["config"]["image_size"] == 16


# 6. Left behind

def test_temp_files_of_killed_processes_are_removed_and_a_live_writers_kept(
        pre, fmnist_folder, tmp_path, run):
    out = tmp_path / "p"
    probe = ["--ckpt", pre / "ckpt.pt", "--data-dir", fmnist_folder, "--epochs", 1, "--out", out]
    out.mkdir()
    dead, live = dead_pid(), os.getppid()
    left = [f"features.tmp{dead}.pt", f"results.tmp{dead}.json", f"log.tmp{dead}.jsonl"]
    for name in [*left, f"results.tmp{live}.json", "notes.tmp.txt"]:
        (out / name).write_text("")
    assert run(linprobe, *probe)[0] == 0
    assert sorted(p.name for p in out.iterdir() if "tmp" in p.name) == sorted(
        [f"results.tmp{live}.json", "notes.tmp.txt"])
    cache = tmp_path / "d" / "cache"
    write_folder(tmp_path / "d", per_class=2)
    cache.mkdir()
    (cache / f"folder-train-16px.tmp{dead}.pt").write_bytes(b"")
    data.load("folder", "train", tmp_path / "d", 16)
    assert sorted(p.name for p in cache.iterdir()) == ["folder-train-16px.pt"]
