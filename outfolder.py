"""The output-folder rule of every training script: OUT is new, or it holds this very run and
--resume is given, and a run that has ended is left as it is, even where its checkpoint is gone
(committed results have none).

    ckpt = claim_out(out, cfg, resume)       # None for a new run; files.Finished for an ended one
"""
import os
import sys

from files import Finished, UserError, hold, load_checkpoint, read_json, remove_leftovers, writable
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
    # A run under way that older code started goes on only as that code trained it (an ended run
    # is left as it is, whatever it lacks).
    old = ckpt["config"]
    older = {k: CHANGED_TRAINING[k] for k in cfg.keys() - old.keys() if k in CHANGED_TRAINING}
    ended = [f for f in RUN_FILES[1:] if os.path.exists(os.path.join(out, f))]  # written last
    check_same_run(out, cfg, older | old, resume, ended=bool(ended) and not repair)
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
