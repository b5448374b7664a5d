"""The study recipes of the Makefile, run by the shell with every script replaced by a stub that
prints its arguments: each loop must pass each argument whole, stop at a script's failure, and
issue 37's study must run what the issue lists, in its order."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["demo", "laptop", "laptop20", "alternatives", "cifar10-laptop", "cifar10-study",
           "cifar10-bands", "cifar10-study3"]
# The scripts' stand-in: prints its arguments as a JSON list; exits 1 where it is the one in FAIL.
STUB = ("import json, os, sys; print(json.dumps(sys.argv[1:]));"
        " sys.exit(sys.argv[1] == os.environ.get('FAIL'))")


def dry_run(target, tmp_path, fail=None):
    """Each command a recipe runs, as its argument list, with make's status and stderr; nothing is
    installed, and no data is read but the check that the data folder is there."""
    os.makedirs(tmp_path / "data" / "train", exist_ok=True)
    # a make of the test's own (make test) must not pass its flags (-j, -w) on to this one
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["FAIL"] = fail or ""
    # FASHION_MNIST: an existing folder, so that Debian's dataset is taken as there
    p = subprocess.run(["make", "-s", "-o", ".venv/ready", target,
                        f"PY={sys.executable} -c \"{STUB}\"", f"FASHION_MNIST={tmp_path}",
                        f"DATA={tmp_path / 'data'}", f"C10_OUT={tmp_path / 'out'}"],
                       cwd=ROOT, capture_output=True, text=True, env=env)
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines()], p.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_each_recipe_passes_each_argument_whole_and_stops_where_a_script_fails(target, tmp_path):
    rc, commands, stderr = dry_run(target, tmp_path)
    assert (rc, stderr) == (0, "") and commands
    assert all(c[0].endswith(".py") for c in commands)
    # a target of several words (bottom --pct 25) split into them, none left with a space inside
    assert all(arg and " " not in arg for c in commands for arg in c)
    for script in sorted({c[0] for c in commands}):
        rc, ran, _ = dry_run(target, tmp_path, fail=script)
        assert rc != 0 and ran[-1][0] == script and [c[0] for c in ran[:-1]].count(script) == 0


def test_study3_runs_the_issues_arms_in_order_and_fine_tunes_no_pretraining_for_50_epochs_once(
        tmp_path):
    _, commands, _ = dry_run("cifar10-study3", tmp_path)
    outs = [os.path.relpath(c[c.index("--out") + 1], tmp_path / "out") for c in commands[:-1]]
    expected = []
    for run in ["original-s0", "bottom25-s0", "original-s1", "bottom25-s1",
                "original-normpix-s0", "original-normpix-s1", "bottom10-s0"]:
        run = f"mae100-{run}"
        expected += [run] + [f"{run}/linprobe-{e:04d}" for e in (0, 10, 20, 40, 70)]
        expected += [f"{run}/linprobe"] + ([] if "bottom10" in run else [f"{run}/finetune5"])
        expected += ["finetune50-none"] if run == "mae100-original-normpix-s1" else []
    assert outs == expected
    none50 = commands[outs.index("finetune50-none")]
    assert none50[none50.index("--init") + 1] == "none"
    # argparse keeps an option's last value: the 50 epochs must come after the recipe's 5
    assert [none50[i + 1] for i, arg in enumerate(none50) if arg == "--epochs"][-1] == "50"
    assert commands[-1][0] == "report.py"
