"""The study recipes of the Makefile, run by the shell with every script replaced by `echo`: each
loop must get through without a shell error, and issue 37's study must run what the issue lists."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["demo", "laptop", "laptop20", "alternatives", "cifar10-laptop", "cifar10-study",
           "cifar10-bands", "cifar10-study3"]
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # the Makefile's prerequisite of that name


def dry_run(target, tmp_path):
    """The commands a recipe would run, one a line, and its stderr; nothing is set up or read."""
    os.makedirs(tmp_path / "data" / "train", exist_ok=True)
    # -o: take the virtualenv and Debian's dataset as made, so that nothing is installed here
    p = subprocess.run(["make", "-s", "-o", ".venv/ready", "-o", FASHION_MNIST, target, "PY=echo",
                        f"DATA={tmp_path / 'data'}", f"C10_OUT={tmp_path / 'out'}"],
                       cwd=ROOT, capture_output=True, text=True)
    return p.returncode, p.stdout.splitlines(), p.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_each_recipe_runs_in_the_shell_without_an_error(target, tmp_path):
    rc, commands, stderr = dry_run(target, tmp_path)
    assert (rc, stderr) == (0, "")
    assert commands and all(c.split()[0].endswith(".py") for c in commands)


def test_study3_runs_the_issues_arms_in_order_and_fine_tunes_no_pretraining_for_50_epochs_once(
        tmp_path):
    _, commands, _ = dry_run("cifar10-study3", tmp_path)
    runs = [c.split("--out ")[1].rsplit("/", 1)[1] for c in commands if c.startswith("pretrain.py")]
    assert runs == ["mae100-original-s0", "mae100-bottom25-s0", "mae100-original-s1",
                    "mae100-bottom25-s1", "mae100-original-normpix-s0",
                    "mae100-original-normpix-s1", "mae100-bottom10-s0"]
    scratch50 = [i for i, c in enumerate(commands) if c.endswith("/finetune50-none")]
    assert len(scratch50) == 1 and "--init none" in commands[scratch50[0]]
    assert "--epochs 50" in commands[scratch50[0]]
    assert commands[scratch50[0] - 1].endswith("/mae100-original-normpix-s1/finetune5")
