"""Crash safety (kill -9, corrupt checkpoints, NaN) and the bad-input matrix across the
scripts."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import torch

import finetune
import linprobe
import model
import pca_project
import pretrain
import training
from conftest import TINY
from test_pca import ROOT, one_line_error


def pretrain_cmd(folder, out, *extra):
    return [sys.executable, "pretrain.py",
            *map(str, [*TINY, "--data-dir", folder, "--epochs", 60, "--eval-every", 20,
                       "--ckpt-every", 2, "--target", "bottom", "--pct", 25, "--out", out, *extra])]


def logs_without_timing(out):
    return [{k: v for k, v in line.items()
             if k not in ("seconds", "images_per_s", "monitor_seconds")}
            for line in training.read_log(out)]


def assert_same_run(a, b):
    wa = torch.load(a / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(b / "ckpt.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert logs_without_timing(a) == logs_without_timing(b)


def test_kill_9_then_resume_is_bit_identical(fmnist_folder, tmp_path):
    subprocess.run(pretrain_cmd(fmnist_folder, tmp_path / "a"), cwd=ROOT, check=True,
                   capture_output=True)
    proc = subprocess.Popen(pretrain_cmd(fmnist_folder, tmp_path / "b"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "b" / "ckpt.prev.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(0).uniform(0.2, 1.0))  # somewhere mid-run, mid-epoch or mid-write
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    assert done["epoch"] < 60
    p = subprocess.run(pretrain_cmd(fmnist_folder, tmp_path / "b", "--resume"), cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "resuming at epoch" in p.stdout
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_a_checkpoint_keeps_the_generator_of_its_own_gpu_and_resumes_on_a_machine_with_fewer(
        monkeypatch):
    """On a GPU (simulated: no CUDA here), a checkpoint keeps the state of the GPU the process draws
    on, not one per GPU it sees; an older one holding eight resumes on one GPU from the first (the
    one drawn on), where restoring all eight failed."""
    states = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: torch.tensor([7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state: states.update(cuda=state))
    def all_gpus(*_):
        raise AssertionError("one state per GPU: a machine with fewer GPUs cannot restore them")
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", all_gpus)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", all_gpus)
    saved = training.rng_state()
    assert torch.equal(saved["cuda"], torch.tensor([7], dtype=torch.uint8))
    training.set_rng_state(saved)
    assert torch.equal(states["cuda"], saved["cuda"])
    eight = [torch.tensor([i], dtype=torch.uint8) for i in range(8)]
    training.set_rng_state({"torch": torch.get_rng_state(), "cuda": eight})
    assert torch.equal(states["cuda"], eight[0])


def test_autocast_takes_fp16_on_a_gpu_without_bf16_units_unless_told(monkeypatch):
    """A V100 or T4 (simulated) has no bf16 units: by default its autocast is fp16; an Ampere GPU's
    and a CPU's is bf16; --amp-dtype wins; no --amp on a CPU is fp32. A probe's config names the
    dtype --amp takes there, given or not, as a CPU probe's always did (bf16)."""
    native = {}
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: (8 if native["gpu"] else 7, 0))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    def precision(argv, device, has_bf16=True):
        native["gpu"] = has_bf16
        return training.precision(pretrain.get_args(argv), device)
    assert precision([], cuda) == "bf16" and precision([], cuda, has_bf16=False) == "fp16"
    assert precision(["--amp-dtype", "bf16"], cuda, has_bf16=False) == "bf16"
    assert precision(["--amp-dtype", "fp16"], cuda) == "fp16"
    assert precision([], cpu) == "fp32" and precision(["--amp"], cpu, has_bf16=False) == "bf16"
    assert precision(["--no-amp"], cuda, has_bf16=False) == "fp32"
    assert training.amp_dtype(linprobe.get_args(["--ckpt", "x.pt"]), cpu) == "bf16"


def test_processes_wait_hours_not_minutes_for_the_first_to_read_the_data(monkeypatch):
    """Under torchrun the others wait at a barrier while the first reads the data and fits the PCA:
    the process group's timeout (NCCL's default is 10 minutes) must outlast a large first read."""
    made = {}
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(training.dist, "init_process_group",
                        lambda backend, **kw: made.update(kw, backend=backend))
    assert training.setup_distributed(torch.device("cpu")) == torch.device("cpu")
    assert made["backend"] == "gloo" and made["timeout"].total_seconds() >= 3600


def test_corrupt_checkpoint_falls_back_to_the_previous_one(fmnist_folder, tmp_path, run):
    args = [*TINY, "--data-dir", fmnist_folder, "--epochs", 3, "--ckpt-every", 4]
    assert run(pretrain, *args, "--out", tmp_path / "a")[0] == 0
    assert run(pretrain, *args, "--out", tmp_path / "b")[0] == 0
    ckpt = tmp_path / "b" / "ckpt.pt"
    prev = torch.load(tmp_path / "b" / "ckpt.prev.pt", weights_only=True)
    assert (prev["epoch"], prev["step"]) == (2, 4)  # the mid-epoch checkpoint before the last one
    ckpt.write_bytes(ckpt.read_bytes()[:5000])  # a truncated write
    code, out, err = run(pretrain, *args, "--out", tmp_path / "b", "--resume")
    assert code == 0 and "ckpt.prev.pt" in err and len(err.strip().splitlines()) == 1, err
    assert "resuming at epoch 3, step 4" in out
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_nan_loss_stops_with_exit_3_and_keeps_the_last_good_checkpoint(
        fmnist_folder, tmp_path, run, monkeypatch):
    args = [*TINY, "--data-dir", fmnist_folder, "--epochs", 4, "--out", tmp_path]
    forward = model.MAE.forward
    calls = []

    def poisoned(self, x, target, generator=None, scores=None):
        loss, pred, mask = forward(self, x, target, generator, scores)
        calls.extend([1] if self.training else [])  # training steps only, not the monitors' calls
        return (loss * float("nan") if len(calls) == 15 else loss), pred, mask

    monkeypatch.setattr(model.MAE, "forward", poisoned)
    code, _, err = run(pretrain, *args)
    assert (code == 3 and "step 14" in err and "ckpt.pt" in err
            and len(err.strip().splitlines()) == 1), err
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert len(training.read_log(tmp_path)) == 2


class Payload:
    """Unpickling it runs code: it makes the folder `marker`."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoint_with_pickled_code_is_refused(tmp_path, run):
    torch.save({"model": Payload(tmp_path / "pwned"), "config": {"mask_ratio": 0.75}},
               tmp_path / "evil.pt")
    code, out, err = run(linprobe, "--ckpt", tmp_path / "evil.pt", "--out", tmp_path / "x")
    assert one_line_error(code, err) and not (tmp_path / "pwned").exists()
    # the payload is live: an unsafe load runs it
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert (tmp_path / "pwned").exists()


def test_bad_input_matrix(fmnist_folder, tmp_path, run):
    """Each case: exit 2, one line on stderr, no traceback, nothing left in --out."""
    ckpt = tmp_path / "run"
    assert run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 1, "--out", ckpt)[0] == 0
    (tmp_path / "truncated.pt").write_bytes((ckpt / "ckpt.pt").read_bytes()[:3000])
    resized = torch.load(ckpt / "ckpt.pt", weights_only=True)
    resized["config"]["dim"] = 64  # a checkpoint whose weights are of another model size
    torch.save(resized, tmp_path / "resized.pt")
    (tmp_path / "afile").write_text("")
    (tmp_path / "noimages" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "noimages" / "test" / "cat").mkdir(parents=True)
    tiny = [*TINY, "--data-dir", fmnist_folder, "--epochs", 1]
    cases = [
        (pretrain, ["--dataset", "imagenet"]),
        (pretrain, ["--dataset", "cifar100", "--data-dir", tmp_path / "nothing"]),
        (pretrain, [*tiny, "--target", "bottom", "--pct", 120]),
        (pretrain, [*tiny, "--target", "sideways", "--pct", 20]),
        (pretrain, [*tiny, "--mask-ratio", 1.5]),
        (pretrain, [*tiny, "--masking", "checkerboard"]),
        (pretrain, [*tiny, "--masking", "pca", "--pca-mask-share", 0]),
        (pretrain, [*tiny, "--band-edges", 25, 10]),
        (pretrain, [*tiny, "--band-edges", 100]),
        (pretrain, [*tiny, "--patch-size", 3]),
        (pretrain, [*tiny, "--epochs", -1]),
        (pretrain, [*tiny, "--batch-size", 0]),
        (pretrain, [*tiny, "--out", tmp_path / "afile" / "sub"]),
        (pretrain, [*TINY, "--data-dir", tmp_path / "noimages", "--epochs", 1]),
        (linprobe, ["--ckpt", tmp_path / "missing.pt"]),
        (linprobe, ["--ckpt", tmp_path / "truncated.pt"]),
        (linprobe, ["--ckpt", tmp_path / "resized.pt", "--data-dir", fmnist_folder]),
        (finetune, ["--ckpt", tmp_path / "truncated.pt", "--dataset", "folder",
                    "--data-dir", fmnist_folder]),
        (finetune, ["--init", "none", "--epochs", -3]),
        (pca_project, ["--dataset", "folder", "--data-dir", tmp_path / "noimages"]),
    ]
    for i, (script, args) in enumerate(cases):
        out = tmp_path / f"out{i}"
        if "--out" not in args:
            args = [*args, "--out", out]
        code, _, err = run(script, *args)
        assert one_line_error(code, err), (script.__name__, args, err)
        assert not out.exists() or not any(out.iterdir()), (
            script.__name__, args, list(out.iterdir()))


def test_linprobe_resume_reuses_its_features(fmnist_folder, tmp_path, run, monkeypatch):
    assert run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 1,
               "--out", tmp_path / "pre")[0] == 0
    args = ["--ckpt", tmp_path / "pre" / "ckpt.pt", "--data-dir", fmnist_folder, "--epochs", 5,
            "--out", tmp_path]
    assert run(linprobe, *args)[0] == 0
    first = (tmp_path / "results.json").read_text()
    (tmp_path / "results.json").unlink()  # stopped after the features were saved
    calls = []
    features = model.Encoder.features
    monkeypatch.setattr(model.Encoder, "features", lambda self, x, pool="cls": calls.append(1) or
                        features(self, x, pool))
    assert run(linprobe, *args, "--resume")[0] == 0
    assert calls == []  # no forward pass: the saved features were used
    strip = lambda text: {k: v for k, v in json.loads(text).items()  # noqa: E731
                          if k not in ("seconds", "config")}
    assert strip((tmp_path / "results.json").read_text()) == strip(first)
