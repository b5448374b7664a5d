"""--dataset tinyimagenet reads tiny-imagenet-200/ as downloaded, on a tiny replica of its
layout."""
import os
import re
import shutil

import pytest
from PIL import Image

import cli
import data
import files
import finetune
from conftest import FASHION_MNIST
from test_pca import one_line_error

WNIDS = ["n02", "n01", "n03"]  # wnids.txt's order, not sorted: the labels follow the file


@pytest.fixture
def tiny(tmp_path):
    """tiny-imagenet-200/ with three classes: 4 train images each, 2 val images each, real pictures
    (Fashion-MNIST's, as 64 px RGB JPEGs), val listed in val_annotations.txt, and its unlabelled
    test/."""
    if not FASHION_MNIST:
        pytest.skip("apt-get install dataset-fashion-mnist")
    x, _ = data.load("fashion-mnist", "test", str(tmp_path / "src"))
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "test" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    picture = iter(Image.fromarray(x[i, 0].numpy()).resize((64, 64)).convert("RGB")
                   for i in range(100))
    notes = []
    for w in WNIDS:
        (root / "train" / w / "images").mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(4):
            next(picture).save(root / "train" / w / "images" / f"{w}_{i}.JPEG")
        for i in range(2):
            name = f"val_{len(notes)}.JPEG"
            next(picture).save(root / "val" / "images" / name)
            notes.append(f"{name}\t{w}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(notes))
    next(picture).save(root / "test" / "images" / "test_0.JPEG")
    return tmp_path


def test_train_and_val_are_read_with_the_classes_of_wnids_txt(tiny):
    x, y = data.load("tinyimagenet", "train", tiny)
    assert x.shape == (12, 3, 64, 64) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    x_test, y_test = data.load("tinyimagenet", "test", tiny)  # val, labelled
    assert x_test.shape == (6, 3, 64, 64) and y_test.tolist() == [0, 0, 1, 1, 2, 2]
    assert x.float().std() > 10  # pictures, not blank
    original = Image.open(tiny / "tiny-imagenet-200" / "train" / "n02" / "images" / "n02_0.JPEG")
    assert (x[0].permute(1, 2, 0).numpy() == original).all()  # 64 px as it comes: no resampling
    assert (data.num_classes("tinyimagenet", tiny) == 3
            and data.image_shape("tinyimagenet") == (3, 64, 64))


@pytest.mark.parametrize("damage, says", [
    (lambda r: os.remove(r / "val" / "val_annotations.txt"), "val_annotations.txt not found"),
    (lambda r: os.remove(r / "val" / "images" / "val_3.JPEG"), "val_3.JPEG, named in"),
    (lambda r: shutil.copytree(r / "train" / "n01", r / "train" / "n09"),
     "n09 is a class folder not in"),
    (lambda r: (r / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn77\t0\t0\t1\t1\n"),
     "n77.* not a class"),
    (lambda r: os.remove(r / "wnids.txt"), "tinyimagenet not found: put it at"),
])
def test_a_damaged_download_is_one_line_before_any_work(tiny, tmp_path, run, damage, says):
    damage(tiny / "tiny-imagenet-200")
    args = ["--init", "none", "--dataset", "tinyimagenet", "--data-dir", tiny, "--dim", 32,
            "--depth", 1, "--heads", 2, "--patch-size", 16, "--epochs", 1, "--batch-size", 4,
            "--out", tmp_path / "out"]
    code, _, err = run(finetune, *args)
    assert one_line_error(code, err) and re.search(says, err), err
    assert not (tmp_path / "out" / "ckpt.pt").exists()


def test_the_supervised_baseline_runs_on_it(tiny, tmp_path, run):
    code, out, err = run(finetune, "--init", "none", "--dataset", "tinyimagenet",
                         "--data-dir", tiny, "--dim", 32, "--depth", 1, "--heads", 2,
                         "--patch-size", 16, "--epochs", 1, "--batch-size", 4,
                         "--input", "bottom", "--pct", 20, "--out", tmp_path / "out")
    assert code == 0, err
    assert "tinyimagenet: 12 train / 0 val / 6 test images" in out
    with pytest.raises(files.UserError):
        data.load("tinyimagenet", "unlabeled", tiny)
