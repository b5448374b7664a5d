"""The output rule of every script: OUT is new, or it holds this very run and --resume is given,
and a run that has ended is left as it is, even where its checkpoint is gone (committed results
have none); an output never replaces an input, nor a file of another script's run.

    check_out(out, "pretrain.py", cfg, resume)   # before any data is read
    ckpt = claim_out(out, cfg, resume)       # None for a new run; files.Finished for an ended one
    path = claim_file(path, inputs)          # a file a script writes (export.py, pca_project.py)
"""
import os
import re
import sys

from files import (Finished, UserError, hold, load_checkpoint, read_json, read_jsonl,
                   remove_leftovers, writable)
from older import CHANGED_TRAINING, REPLACED


RUN_FILES = ("log.jsonl", "summary.json", "results.json")  # what a run leaves beside its state file


def ended_config(out):
    """The config of the run that ended in OUT, from the summary.json or results.json written at its
    end (committed results have them without their checkpoints), or None."""
    for name in RUN_FILES[1:]:
        path = os.path.join(out, name)
        if not os.path.exists(path):
            continue
        config = read_json(path, name).get("config")
        if not isinstance(config, dict):
            raise UserError(f"{path} is not a {name} of this project (it holds no config)")
        return config
    return None


def run_in(folder):
    """Which script's run `folder` holds (pretrain.py, finetune.py or linprobe.py), or None: told
    by the files each writes (a pretraining's summary.json and kept copies, a probe's features.pt,
    a results.json's eval, a checkpoint's config, a log's lines)."""
    if not os.path.isdir(folder):
        return None
    names = set(os.listdir(folder))
    if "summary.json" in names or any(n.startswith("keep-") for n in names):
        return "pretrain.py"
    if "features.pt" in names:
        return "linprobe.py"
    if "results.json" in names:
        results = read_json(os.path.join(folder, "results.json"), "results.json")
        return "linprobe.py" if results.get("eval") == "linprobe" else "finetune.py"
    for state in ("ckpt.pt", "ckpt.prev.pt"):
        if state in names:
            ckpt = load_checkpoint(os.path.join(folder, state))
            config = ckpt.get("config") if isinstance(ckpt, dict) else None
            if isinstance(config, dict):  # else no state of ours: claim_out names it
                return "pretrain.py" if "mask_ratio" in config else "finetune.py"
    if "log.jsonl" in names:
        log = read_jsonl(os.path.join(folder, "log.jsonl"))
        return "finetune.py" if any("test_accuracy" in line for line in log) else "pretrain.py"
    return None


def check_out(out, script, cfg, resume, state="ckpt.pt", inputs=()):
    """Before any data is read: OUT can be written and holds no run of another script; a run of
    this one is refused where its config differs (but for data_sha1, not known yet: claim_out
    checks it, and says whether the run has ended) or --resume is not given. --resume of a folder
    that holds no run says so, and starts one. inputs: the folders the data is read from, which
    OUT may not be in (its pictures would be read as data)."""
    real = os.path.realpath(out)
    if inside := next((i for i in inputs if os.path.commonpath([real, os.path.realpath(i)])
                       == os.path.realpath(i)), None):
        raise UserError(f"{out} is inside {inside}, which the data is read from: give --out "
                        "a folder outside it")
    writable(os.path.join(out, "recon-0000.png"))  # the longest name a run writes
    hold(out)
    holder = run_in(out)
    if holder not in (None, script):
        raise UserError(f"{out} holds a {holder} run: give this {script} run another --out")
    if holder is None:
        empty = not set(os.listdir(out)) - {".lock"}
        if resume and empty and os.environ.get("RANK", "0") == "0":
            print(f"--resume: {out} holds no run yet; starting it", flush=True)
        return
    paths = [os.path.join(out, state), os.path.join(out, state.replace(".pt", ".prev.pt"))]
    ended = ended_config(out)
    old = ended
    if old is None and (path := next((p for p in paths if os.path.exists(p)), None)):
        state = load_checkpoint(path)
        old = state.get("config") if isinstance(state, dict) else None
    if not isinstance(old, dict):
        return  # claim_out says what is wrong with it
    check_same_run(out, cfg | {"data_sha1": old.get("data_sha1")}, as_ran(cfg, old), resume,
                   ended=ended is not None)


# The files a run writes, which its resume and its evaluations read.
RUN_FILE = re.compile(r"(ckpt|ckpt\.prev|features|keep-\d+)\.pt|log\.jsonl|summary\.json"
                      r"|results\.json|recon-\d+\.png|(curves|explained)\.svg")


def claim_file(path, inputs=()):
    """An output file's path, tried before any work (files.writable), refused where it is one of
    the command's inputs or bears the name of a run's file in a run's folder, there yet or not (it
    would replace or confuse what the run, its resume or its evaluations read)."""
    writable(path)
    def same(i):  # one file by two names (a link), or one name, there yet or not
        both = os.path.exists(path) and os.path.exists(i)
        return both and os.path.samefile(path, i) or os.path.realpath(path) == os.path.realpath(i)
    if any(same(i) for i in inputs):
        raise UserError(f"{path} is this command's input: writing it would replace it; "
                        "give another file name")
    folder = os.path.dirname(os.path.abspath(path))
    if RUN_FILE.fullmatch(os.path.basename(path)) and (holder := run_in(folder)):
        raise UserError(f"{path} is a file name of the {holder} run in {folder}: writing it "
                        "would replace or confuse what the run reads; give another file name")
    return path


# Where a run's data was, not what it was (data_sha1 says that): a resume may find it elsewhere.
PLACES = {"data_dir"}


def differences(cfg, old):
    """The keys two configs disagree on, but for PLACES. A key the old config lacks is not one: the
    run predates it (older code), and nothing the user passed differs."""
    keys = set(old) - PLACES
    for gone, new in REPLACED.items():
        keys -= {gone} if new in old else {gone, new}
    return sorted(k for k in keys if cfg.get(k) != old.get(k))


def skip_if_ended(out, known, resume):
    """Before any data is read: a run that has ended in OUT with the settings known so far (config
    keys the arguments give; None: not known yet) is files.Finished with --resume, refused without;
    the rest goes on."""
    if os.path.isdir(out):
        hold(out)
    ended = ended_config(out)
    if ended is not None and all(v is None or ended.get(k) == v for k, v in known.items()):
        check_same_run(out, {}, {}, resume, ended=True)
        raise Finished(f"{out} holds this run, already ended: its files left as they are")


def as_ran(cfg, old):
    """The config `old` of a run in OUT as its code trained it: keys that older code lacked, and
    whose training has changed since (older.CHANGED_TRAINING), take what that code did. A run
    under way goes on only as it was trained (an ended run is left as it is, whatever it lacks)."""
    older = {k: CHANGED_TRAINING[k] for k in cfg.keys() - old.keys() if k in CHANGED_TRAINING}
    return older | old


def claim_out(out, cfg, resume, state="ckpt.pt"):
    """The output-folder rule of every script. OUT is new, or it holds this very run (its state
    file, ckpt.pt or linprobe's features.pt, has the same config; without one, the config in the
    summary.json or results.json it ended with) and --resume is given; a log without its state
    file is refused. Returns the state, or None. A corrupt ckpt.pt gives way to ckpt.prev.pt. A
    run that has ended (written summary.json or results.json) is left as it is: files.Finished,
    exit 0. OUT is held until the process ends (a second process is refused), and temp files that
    killed processes left in it are removed."""
    # OUT made and tried up front: a run never fails at its end for want of it
    writable(os.path.join(out, "log.jsonl"))
    hold(out)  # from here to the process's end: two runs into one folder would mix their files
    remove_leftovers(out)
    paths = [os.path.join(out, state), os.path.join(out, state.replace(".pt", ".prev.pt"))]
    if not any(os.path.exists(p) for p in paths):
        ended = ended_config(out)
        if ended is not None:
            check_same_run(out, cfg, ended, resume, ended=True)
            raise Finished(f"{out} holds this run, already ended: its files left as they are")
        if os.path.exists(os.path.join(out, RUN_FILES[0])):
            raise UserError(f"{out} holds a run's {RUN_FILES[0]} but no {state}: "
                            "choose another --out")
        return None
    try:
        ckpt, repair = load_checkpoint(paths[0]), False
    except UserError as e:
        if not os.path.exists(paths[1]):
            raise
        print(f"warning: {e}; resuming from {paths[1]}", file=sys.stderr)
        ckpt, repair = load_checkpoint(paths[1]), True
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict):
        raise UserError(f"{paths[0]} is not a {state} of this project")
    ended = [f for f in RUN_FILES[1:] if os.path.exists(os.path.join(out, f))]  # written last
    check_same_run(out, cfg, as_ran(cfg, ckpt["config"]), resume, ended=bool(ended) and not repair)
    if ended and not repair:
        raise Finished(f"{out} holds this run, already ended: {ended[0]} left as it is")
    return ckpt


def check_same_run(out, cfg, old, resume, ended=False):
    """Refuse a run of another config in OUT, naming a folder to pass; and this run without
    --resume, saying what --resume would do (continue it, or nothing: it has ended)."""
    if diff := differences(cfg, old):
        named = [f"{k} (the images or labels)" if k == "data_sha1" else k for k in diff]
        # a folder named after what differs, for this run
        values = [f"{k}-{cfg.get(k)}".replace("_", "-") for k in diff if k != "data_sha1"]
        suggested = "-".join([os.path.normpath(out), *values] if values else [out, "2"])
        raise UserError(f"{out} holds a run of another config (differs in {', '.join(named)}); "
                        f"give this one another --out, such as --out {suggested}")
    if not resume and ended:
        raise UserError(f"{out} holds this run, already ended: nothing to do (with --resume, "
                        "exit 0, its files left as they are); to run it again, choose another "
                        "--out")
    if not resume:
        raise UserError(f"{out} already holds this run: pass --resume to continue it, "
                        "or choose another --out")
