"""The plumbing of a training run, shared by pretrain.py and finetune.py (and linprobe.py's flags):
plain functions, each called once from a script's loop, which keeps the method in sight:

    sched = schedule(args, n_train)     # global batch, this process's slice, steps, peak lr
    start_epoch, start_step, resumed_sums, log = claim_or_resume(out, cfg, model, ...)
    for epoch ...:                      # the loop itself lives in the script
        set_lr(optimizer, get_lr(step, ...)); forward; backward; step
        bad_step = first_bad_step(bad_step, loss, step)   # the NaN watch, no sync with the device
        stop_if_not_finite(bad_step, out)                 # exit 3 before anything is saved
        save_checkpoint(...) / save_epoch(...)            # ckpt.pt (with the log), log.jsonl
"""
import argparse
import datetime
import json
import os
import sys
import time
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import cli
import files
import older
import outfolder
from files import UserError, save_atomic, save_text


# Flags that change where or how fast a run goes, not what it computes: left out of its config.
RUNTIME_FLAGS = {"out", "resume", "device", "compile", "amp", "amp_dtype", "data_dir", "download",
                 "ckpt_every",
                 "stop_epoch"}


def add_flags(p, epochs, warmup, batch_size, blr, out, head_only=False):
    """The flags of a training run (schedule, seed, output, resume), with the script's defaults;
    head_only (the linear probe): without those of a network's training."""
    p.warmup_share = warmup  # check_schedule's default, the one the help states
    p.add_argument("--epochs", type=cli.positive, default=epochs)
    p.add_argument("--warmup-epochs", type=cli.count,
                   help=f"default: {100 * warmup:.3g}%% of --epochs")
    p.add_argument("--batch-size", type=cli.batch, default=batch_size)
    p.add_argument("--blr", type=cli.rate, default=blr,
                   help="base lr; lr = blr * batch / 256")
    p.add_argument("--seed", type=cli.seed, default=0)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="autocast to --amp-dtype; default: on with CUDA, off on a CPU (see the "
                        "README's benchmarks)")
    p.add_argument("--amp-dtype", choices=("bf16", "fp16"),
                   help="default: bf16, but fp16 on a GPU older than Ampere (V100, T4), which only "
                        "emulates bf16; under fp16 training scales its loss (GradScaler) and skips "
                        "a step whose gradients overflowed")
    p.add_argument("--out", type=cli.path, default=out)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    if not head_only:
        p.add_argument("--subset", type=cli.positive, metavar="N",
                       help="train on N images spread evenly over the train split: a quick try of "
                            "the real data (the header says so)")
        p.add_argument("--weight-decay", type=cli.nonnegative, default=0.05)
        p.add_argument("--compile", action="store_true",
                       help="torch.compile the model (minutes to compile on a CPU)")
        p.add_argument("--ckpt-every", type=cli.count, default=500,
                       help="steps between checkpoints in an epoch (0: none)")
        p.add_argument("--stop-epoch", type=cli.positive, metavar="E",
                       help="stop after epoch E, the schedule still that of --epochs (as nanoGPT's "
                            "max_iters and lr_decay_iters); --resume without it continues")


def check_schedule(p, args):
    """--warmup-epochs: by default the script's share of the run (add_flags' warmup: 10% in the
    pretraining recipe), and never longer than the run, whose learning rate would then never reach
    its peak."""
    if args.warmup_epochs is None:
        args.warmup_epochs = round(p.warmup_share * args.epochs)
    if args.warmup_epochs > args.epochs:
        p.error(f"--warmup-epochs {args.warmup_epochs} is longer than the run "
                f"({args.epochs} epochs)")
    if getattr(args, "stop_epoch", None) is not None and args.stop_epoch >= args.epochs:
        p.error(f"--stop-epoch {args.stop_epoch} is not before the run's end "
                f"({args.epochs} epochs)")


FIRST_READ_WAIT = datetime.timedelta(hours=3)


def setup_distributed(device):
    """This process's device; under torchrun (RANK, LOCAL_RANK set) the process group: NCCL, or gloo
    on CPU."""
    if "RANK" not in os.environ:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    # The others wait at a barrier while the first process reads the data and fits the PCA
    # (data.first_process_first): a first read of a large folder outlasts NCCL's 10 minutes.
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=FIRST_READ_WAIT)
    return device


def main_process():
    """Only rank 0 prints and writes files."""
    return not dist.is_initialized() or dist.get_rank() == 0


def end_distributed():
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(t):
    if not dist.is_initialized():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def rng_state():
    """The generators a run draws from (nothing here uses NumPy's or Python's): torch's CPU one and
    that of the GPU this process draws on (every process's are alike: seeded alike, drawn alike)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(older.cuda_rng_state(state["cuda"]))


def save_checkpoint(out, model, optimizer, cfg, epoch, step=0, loss_sum=None, log=(),
                    scaler=None):
    """ckpt.pt after `epoch` whole epochs and `step` steps of the next (loss_sum: that epoch's step
    sums so far), with the log of those epochs (and fp16's loss scale), written whole; the previous
    one becomes ckpt.prev.pt."""
    if loss_sum is not None:  # every process takes part; rank 0 writes
        loss_sum = mean_over_processes(loss_sum).cpu()
    if not main_process():
        return
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": cfg,
             "epoch": epoch, "step": step, "loss_sum": loss_sum,
             "rng": rng_state(), "log": list(log)}
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    previous = os.path.join(out, "ckpt.prev.pt")
    save_atomic(state, os.path.join(out, "ckpt.pt"), keep_previous=previous)


def claim_or_resume(out, cfg, model, optimizer, resume, scaler=None):
    """Claim OUT for this run (outfolder.claim_out), and continue the run there (weights, optimizer,
    fp16's loss scale, RNG, log) when `resume`. Returns (whole epochs done, steps done in the next,
    that epoch's step sums so far or None, the log of the epochs done)."""
    ckpt = outfolder.claim_out(out, cfg, resume)
    if ckpt is None:
        return 0, 0, None, []
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and scaler.is_enabled() and "scaler" in ckpt:
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    log = older.checkpoint_log(ckpt, lambda: read_log(out))  # the checkpoint's is the true one
    if main_process():
        write_log(out, log)
    return ckpt["epoch"], ckpt["step"], ckpt["loss_sum"], log


def write_log(out, log):
    save_text("".join(json.dumps(line) + "\n" for line in log), os.path.join(out, "log.jsonl"))


def read_log(out):
    return files.read_jsonl(os.path.join(out, "log.jsonl"))


def set_lr(optimizer, lr):
    """The step's learning rate, scaled per group by its lr_scale (layer-wise decay in fine-tuning).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


class Schedule(NamedTuple):
    """A run's schedule in steps. batch_size: the global batch (at most the train split); local: the
    slice of it this process trains on, of world processes; peak_lr: blr * batch_size / 256."""
    batch_size: int
    local: slice
    world: int
    steps_per_epoch: int
    peak_lr: float
    warmup_steps: int
    total_steps: int


def schedule(args, n_train):
    """The Schedule of args' flags on n_train images. The global batch and the lr do not depend on
    the number of processes: each takes a slice (a batch that does not split is refused)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    batch_size = min(args.batch_size, n_train)
    if batch_size % world:
        used = f" (a batch of all {n_train} images)" if batch_size < args.batch_size else ""
        raise UserError(f"--batch-size {args.batch_size}{used} does not split over {world} "
                        f"processes: pass --batch-size {batch_size - batch_size % world}")
    share = batch_size // world
    steps_per_epoch = n_train // batch_size
    return Schedule(batch_size, slice(rank * share, (rank + 1) * share), world, steps_per_epoch,
                    peak_lr=args.blr * batch_size / 256,
                    warmup_steps=args.warmup_epochs * steps_per_epoch,
                    total_steps=args.epochs * steps_per_epoch)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(args, device):
    """--amp-dtype as given, else bf16 where the device has it (a CPU's autocast, a GPU from Ampere
    on), else fp16: a V100 or T4 has no bf16 units, and torch emulates them."""
    if args.amp_dtype is not None:
        return args.amp_dtype
    # compute capability 8 (Ampere) brought bf16 units: torch's own test, of the device used
    native = device.type != "cuda" or torch.cuda.get_device_capability(device)[0] >= 8
    return "bf16" if native else "fp16"


def precision(args, device):
    """What a run computes in: amp_dtype under --amp (by default on with CUDA, off on a CPU), else
    fp32."""
    amp = device.type == "cuda" if args.amp is None else args.amp
    return amp_dtype(args, device) if amp else "fp32"


def wrap(model, compile):
    """The model a step calls: DDP under torchrun, torch.compile'd with --compile."""
    distributed = dist.is_initialized() and dist.get_world_size() > 1
    step_model = DistributedDataParallel(model) if distributed else model
    return torch.compile(step_model) if compile else step_model


def notes(args, sched, precision, start_epoch, start_step):
    """What the header line adds about the run: autocast, a batch cut to the train split, and where
    a resumed run starts."""
    notes = {"fp32": "", "bf16": " | bf16 autocast",
             "fp16": " | fp16 autocast, loss scaling"}[precision]
    if sched.batch_size < args.batch_size:
        notes += f" | batch {sched.batch_size} (the whole train split), lr {sched.peak_lr:.3g}"
    if start_epoch or start_step:
        notes += f" | resuming at epoch {start_epoch + 1}, step {start_step}"
    return notes


def draw(sample, sched, *shape, device, generator=None):
    """sample (torch.rand, torch.randn) of shape (global batch, *shape): every process draws the
    numbers of the whole global batch and keeps its slice, so N processes compute what one would."""
    numbers = sample(sched.batch_size, *shape, device=device, generator=generator)
    return numbers[sched.local]


def permutation(n, seed, epoch, device):
    """The order of an epoch's images: drawn from (seed, epoch) alone, so a resumed run (and every
    process) draws the same."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    return torch.randperm(n, generator=g).to(device)


PLAIN_EVERY = 30  # seconds between progress lines where no bar is shown (output to a file)


def progress(first, steps, epoch, epochs, sums, batch_size):
    """The epoch's steps from `first`. Rank 0 says how the epoch goes: on a terminal a bar with the
    running loss and images/s, elsewhere (output to a file) a plain line every PLAIN_EVERY
    seconds. sums: the epoch's step sums, the loss's first, which the loop adds to in place."""
    terminal = sys.stderr.isatty()
    bar = tqdm(range(first, steps), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
               disable=not (terminal and main_process()), mininterval=1, initial=first,
               total=steps)
    t_start = t_shown = time.time()
    for i in bar:
        yield i
        now = time.time()
        if not main_process() or now - t_shown < (1 if terminal else PLAIN_EVERY):
            continue
        t_shown = now
        speed = (i + 1 - first) * batch_size / (now - t_start)
        status = f"loss {sums[0].item() / (i + 1):.4f}, {speed:,.0f} images/s"
        if terminal:
            bar.set_postfix_str(status, refresh=False)
        else:
            print(f"epoch {epoch + 1}/{epochs}, step {i + 1}/{steps}: {status}", flush=True)


def first_bad_step(bad_step, loss, step):
    """The first step whose loss was not finite, -1 while there is none: a tensor kept on the
    device, so that watching for NaN never makes the host wait."""
    return torch.where(torch.isfinite(loss) | (bad_step >= 0), bad_step, step)


def mid_epoch_checkpoint(step, sched, every):
    """Whether a checkpoint is due after this global step: every `every` steps (0: never), except
    at an epoch's end, which has its own."""
    return every > 0 and (step + 1) % every == 0 and (step + 1) % sched.steps_per_epoch > 0


def stop_if_not_finite(bad_step, out):
    """Exit 3, before anything is saved, when a loss was NaN or inf (every process, or none)."""
    if dist.is_initialized():
        dist.all_reduce(bad_step, op=dist.ReduceOp.MAX)
    if bad_step.item() >= 0:
        good = os.path.join(out, "ckpt.pt")
        if main_process():
            print(f"error: loss is NaN or inf at step {bad_step.item()}; the last good "
                  f"checkpoint is {good if os.path.exists(good) else 'none'}", file=sys.stderr)
        sys.exit(3)


def epoch_line(epoch, sums, names, sched, first, lr, precision, seconds):
    """The epoch's log line: the means of its step sums (named by names, over all processes), the
    last step's lr, bf16 (fp16 too where used), speed and time."""
    means = (mean_over_processes(sums) / sched.steps_per_epoch).tolist()
    line = {"epoch": epoch + 1, "step": (epoch + 1) * sched.steps_per_epoch}
    line |= dict(zip(names, means))
    line |= {"lr": lr, "bf16": precision == "bf16"}
    if precision == "fp16":
        line["fp16"] = True
    images = (sched.steps_per_epoch - first) * sched.batch_size
    return line | {"images_per_s": images / seconds, "seconds": seconds}


def epoch_text(line, epochs):
    """An epoch's log line as a person reads it (log.jsonl keeps every figure): the loss beside the
    trivial guess's, the evaluations, the band monitor, time and speed."""
    parts = [f"epoch {line['epoch']}/{epochs}", f"loss {line['loss']:.4f}"]
    if line.get("trivial_loss"):
        ratio = line["loss"] / line["trivial_loss"]
        parts[-1] += f" ({ratio:.2f}x the trivial guess's {line['trivial_loss']:.4f})"
    named = {"knn": "kNN", "test_accuracy": "test accuracy", "val_accuracy": "val accuracy"}
    parts += [f"{name} {line[key]:.4f}" for key, name in named.items() if key in line]
    if line.get("explained"):
        shares = [f"{band} {'n/a' if v is None else format(v, '.3f')}"
                  for band, v in line["explained"].items()]
        parts.append("explained: " + ", ".join(shares))
    parts.append(f"{line['seconds']:.3g} s, {line['images_per_s']:,.0f} images/s")
    return " | ".join(parts)


def save_epoch(out, model, optimizer, cfg, log, epochs, scaler=None):
    """After an epoch: its checkpoint, then log.jsonl with its line (rank 0 prints it, as
    epoch_text): the checkpoint holds the log too, so a stop between the two loses nothing."""
    save_checkpoint(out, model, optimizer, cfg, len(log), log=log, scaler=scaler)
    if main_process():
        print(epoch_text(log[-1], epochs), flush=True)
        write_log(out, log)


def keep_copy(out, model, cfg, epoch, log):
    """OUT/keep-EEEE.pt: the weights, config and log after `epoch` epochs (0: the initialisation),
    which the evaluations take like a final checkpoint; a copy already kept is left as it is."""
    path = os.path.join(out, f"keep-{epoch:04d}.pt")
    if main_process() and not os.path.exists(path):
        save_atomic({"model": model.state_dict(), "config": cfg, "epoch": epoch,
                     "log": list(log)}, path)


def used(sched, log):
    """What the run used where its flags say otherwise or nothing: the batch (at most the train
    split) and its peak lr, and the epochs run in bf16 or fp16 (a resume may change --amp)."""
    return {"batch_size": sched.batch_size, "peak_lr": sched.peak_lr,
            "bf16_epochs": [line["epoch"] for line in log if line.get("bf16")],
            "fp16_epochs": [line["epoch"] for line in log if line.get("fp16")]}


def stopped(log, epochs):
    """The line that says where a run stopped by --stop-epoch stands."""
    return (f"stopped after epoch {len(log)} of {epochs}: the same command without --stop-epoch, "
            "with --resume, continues it")
