"""The first hour of a researcher: what the scripts say before and around a run."""
import argparse
import json
import subprocess
import sys

import pytest

import finetune
import linprobe
import pca_project
import pretrain
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
    valued = [a for a in parsers[0]._actions if a.option_strings
              and a.default not in (None, False, [], argparse.SUPPRESS)]
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
    header = out.splitlines()[0]
    pretrained_on = json.loads((pre / "summary.json").read_text())["config"]
    assert f"the checkpoint's data: --dataset folder --data-dir {pretrained_on['data_dir']} " \
           "--image-size 16" in header
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert (result["config"]["dataset"], result["config"]["image_size"]) == ("folder", 16)
    # told otherwise: the flag wins (Fashion-MNIST's own files at 28 px do not fit this encoder)
    code, _, err = run(script, "--ckpt", pre / "ckpt.pt", "--dataset", "fashion-mnist",
                       "--out", tmp_path / "other")
    assert code == 2 and "pretrained on 3x16x16 images; this dataset has 1x28x28" in err, err
