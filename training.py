"""The life of a training run, shared by pretrain.py and finetune.py (and linprobe.py's loading):
its flags, the output folder, checkpoints and --resume, the log, torchrun processes, the NaN
stop, and `Run`, which does what surrounds each step so that a script's loop shows the method:

    run = Run(args, cfg, model, param_groups=..., betas=..., n_train=..., device=...)  # --resume
    for epoch in run.epochs():
        for step, idx in run.batches():          # idx: this process's share of the global batch
            set_lr(run.optimizer, get_lr(step, run.lr, run.warmup_steps, run.total_steps))
            with run.autocast:
                loss = ...                       # forward on x_train[idx]
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            run.tally(loss)                      # the epoch's sums, the NaN watch, checkpoints
        run.save(run.end_epoch() | monitors)     # exit 3 on a NaN loss; log line, checkpoint
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import cli
import outfolder
from cli import UserError, save_atomic, save_text


# Flags that change where or how fast a run goes, not what it computes: left out of its config.
RUNTIME_FLAGS = {"out", "resume", "device", "compile", "amp", "data_dir", "download", "ckpt_every",
                 "stop_epoch"}


def add_flags(p, epochs, warmup, batch_size, blr, out, head_only=False):
    """The flags of a training run (schedule, seed, output, resume), with the script's defaults;
    head_only (the linear probe): without those of a network's training."""
    p.add_argument("--epochs", type=cli.positive, default=epochs)
    p.add_argument("--warmup-epochs", type=cli.count,
                   help=f"default: {100 * warmup:.3g}%% of --epochs")
    p.add_argument("--batch-size", type=cli.batch, default=batch_size)
    p.add_argument("--blr", type=cli.positive_float, default=blr,
                   help="base lr; lr = blr * batch / 256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="bf16 autocast; default: on with CUDA, off on a CPU (see the README's "
                        "benchmarks)")
    p.add_argument("--out", default=out)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    if not head_only:
        p.add_argument("--weight-decay", type=cli.nonnegative, default=0.05)
        p.add_argument("--compile", action="store_true",
                       help="torch.compile the model (minutes to compile on a CPU)")
        p.add_argument("--ckpt-every", type=cli.count, default=500,
                       help="steps between checkpoints in an epoch (0: none)")
        p.add_argument("--stop-epoch", type=cli.count, metavar="E",
                       help="stop after epoch E, the schedule still that of --epochs (as nanoGPT's "
                            "max_iters and lr_decay_iters); --resume without it continues")


def check_schedule(p, args, warmup):
    """--warmup-epochs: by default the share `warmup` of the run (10% in the pretraining recipe),
    and never longer than the run, whose learning rate would then never reach its peak."""
    if args.warmup_epochs is None:
        args.warmup_epochs = round(warmup * args.epochs)
    if args.warmup_epochs > args.epochs:
        p.error(f"--warmup-epochs {args.warmup_epochs} is longer than the run "
                f"({args.epochs} epochs)")
    if getattr(args, "stop_epoch", None) is not None and args.stop_epoch >= args.epochs:
        p.error(f"--stop-epoch {args.stop_epoch} is not before the run's end "
                f"({args.epochs} epochs)")


def setup_distributed(device):
    """This process's device; under torchrun (RANK, LOCAL_RANK set) the process group: NCCL, or gloo
    on CPU."""
    if "RANK" not in os.environ:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
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
    """The generators a run draws from (nothing here uses NumPy's or Python's): torch's, CPU and
    CUDA."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out, model, optimizer, cfg, epoch, step=0, loss_sum=None, log=()):
    """ckpt.pt after `epoch` whole epochs and `step` steps of the next, with the log of those
    epochs, written whole; the previous one becomes ckpt.prev.pt."""
    if not main_process():
        return
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": cfg,
             "epoch": epoch, "step": step, "loss_sum": None if loss_sum is None else loss_sum.cpu(),
             "rng": rng_state(), "log": list(log)}
    previous = os.path.join(out, "ckpt.prev.pt")
    save_atomic(state, os.path.join(out, "ckpt.pt"), keep_previous=previous)


def restore(out, cfg, model, optimizer, resume):
    """Continue the run in OUT (weights, optimizer, RNG, log) when --resume. Returns (whole epochs
    done, steps done in the next, that epoch's loss sum so far or None, the log of the epochs
    done)."""
    ckpt = outfolder.claim_out(out, cfg, resume)
    if ckpt is None:
        return 0, 0, None, []
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    # The checkpoint's log is the true one (older checkpoints had none: the file's lines up to it).
    if "log" in ckpt:
        log = ckpt["log"]
    else:
        log = [line for line in read_log(out) if line["epoch"] <= ckpt["epoch"]]
    if main_process():
        write_log(out, log)
    return ckpt["epoch"], ckpt["step"], ckpt["loss_sum"], log


def write_log(out, log):
    save_text("".join(json.dumps(line) + "\n" for line in log), os.path.join(out, "log.jsonl"))


def read_log(out):
    return cli.read_jsonl(os.path.join(out, "log.jsonl"))


def set_lr(optimizer, lr):
    """The step's learning rate, scaled per group by its lr_scale (layer-wise decay in fine-tuning).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


class Run:
    """One training run in args.out, and what surrounds each of its steps: per-epoch permutations of
    the global batch (each process on its slice), the schedule's lengths (peak lr blr * batch /
    256), AdamW, the model to step (DDP under torchrun, --compile), bf16 autocast with --amp, the
    epoch's loss sums, the NaN stop, checkpoints every --ckpt-every steps and each epoch, --resume.
    """

    def __init__(self, args, cfg, model, param_groups, betas, n_train, device):
        # AdamW built the same way on every device (fused: CUDA and CPU); the loop sets its lr.
        self.optimizer = torch.optim.AdamW(param_groups, betas=betas, fused=True)
        self.args, self.cfg, self.model = args, cfg, model
        self.n_train, self.device = n_train, device
        distributed = dist.is_initialized()
        rank, self.world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        # The global batch and the lr do not depend on the number of processes: each takes a slice.
        self.batch_size = min(args.batch_size, n_train)
        if self.batch_size % self.world:
            used = f" (a batch of all {n_train} images)" if self.batch_size < args.batch_size else ""
            fits = self.batch_size - self.batch_size % self.world
            raise UserError(f"--batch-size {args.batch_size}{used} does not split over {self.world} "
                            f"processes: pass --batch-size {fits}")
        share = self.batch_size // self.world
        self.local = slice(rank * share, (rank + 1) * share)
        self.steps_per_epoch = n_train // self.batch_size
        self.lr = args.blr * self.batch_size / 256
        self.warmup_steps = args.warmup_epochs * self.steps_per_epoch
        self.total_steps = args.epochs * self.steps_per_epoch
        resumed = restore(args.out, cfg, model, self.optimizer, args.resume)
        self.start_epoch, self.start_step, self.resumed_sum, self.log = resumed
        self.amp = device.type == "cuda" if args.amp is None else args.amp
        self.autocast = torch.autocast(device.type, torch.bfloat16, enabled=self.amp)
        step_model = DistributedDataParallel(model) if self.world > 1 else model
        self.step_model = torch.compile(step_model) if args.compile else step_model
        # the first step whose loss was not finite, -1 while there is none
        self.bad_step = torch.full((), -1, device=device)
        self.has_trivial = False
        self.keep_epochs = set(getattr(args, "keep_epochs", ()))
        if 0 in self.keep_epochs and not (self.start_epoch or self.start_step):
            self.keep_copy(0)

    @property
    def notes(self):
        """What the header line adds about the run: bf16, and where a resumed run starts."""
        notes = " | bf16 autocast" if self.amp else ""
        if self.batch_size < self.args.batch_size:
            notes += f" | batch {self.batch_size} (the whole train split), lr {self.lr:.3g}"
        if self.start_epoch or self.start_step:
            notes += f" | resuming at epoch {self.start_epoch + 1}, step {self.start_step}"
        return notes

    def epochs(self):
        """The epochs still to run, each with the model in training mode and its clock started."""
        stop = self.args.epochs if self.args.stop_epoch is None else self.args.stop_epoch
        for epoch in range(self.start_epoch, stop):
            self.epoch, self.t0 = epoch, time.time()
            self.start = self.start_step if epoch == self.start_epoch else 0
            # The sums over the epoch's steps of the loss and of a trivial guess's loss
            # (pretraining's baseline), carried over a mid-epoch resume.
            fresh = torch.zeros(2, device=self.device)
            self.loss_sum = self.resumed_sum.to(self.device) if self.start else fresh
            self.model.train()
            yield epoch

    def rand(self, *shape, generator=None):
        """Uniform numbers (batch, *shape) drawn for the whole global batch; this process's slice.
        """
        draws = torch.rand(self.batch_size, *shape, device=self.device, generator=generator)
        return draws[self.local]

    def randn(self, *shape, generator=None):
        """Normal numbers, drawn like rand."""
        draws = torch.randn(self.batch_size, *shape, device=self.device, generator=generator)
        return draws[self.local]

    def batches(self):
        """(global step, this process's indices) of each of the epoch's steps from where it stands:
        a permutation of (seed, epoch) only, as on resume."""
        n, size, steps = self.n_train, self.batch_size, self.steps_per_epoch
        g = torch.Generator().manual_seed(self.args.seed * 100003 + self.epoch)
        perm = torch.randperm(n, generator=g).to(self.device)
        progress = tqdm(range(self.start, steps), desc=f"epoch {self.epoch + 1}/{self.args.epochs}",
                        leave=False, disable=None if main_process() else True, mininterval=1,
                        initial=self.start, total=steps)
        for i in progress:
            self.i = i
            yield self.epoch * steps + i, perm[i * size:(i + 1) * size][self.local]

    def tally(self, loss, trivial=None):
        """After a step: the epoch's sums (trivial: a trivial guess's loss on the same batch), the
        NaN watch (no sync with the device), and the mid-epoch checkpoint when due."""
        loss = loss.detach()  # no .item(): the host does not wait for the device
        self.has_trivial = trivial is not None
        trivial = loss.new_zeros(()) if trivial is None else trivial.float()
        self.loss_sum += torch.stack([loss, trivial])
        step = self.epoch * self.steps_per_epoch + self.i
        first_bad = torch.isfinite(loss) | (self.bad_step >= 0)
        self.bad_step = torch.where(first_bad, self.bad_step, step)
        every = self.args.ckpt_every
        if every and (step + 1) % every == 0 and self.i + 1 < self.steps_per_epoch:
            self.stop_if_not_finite()
            loss_sum = mean_over_processes(self.loss_sum)
            save_checkpoint(self.args.out, self.model, self.optimizer, self.cfg, self.epoch,
                            step=self.i + 1, loss_sum=loss_sum, log=self.log)

    @property
    def ended(self):
        """Whether every epoch of the schedule is done (not so after --stop-epoch)."""
        return len(self.log) == self.args.epochs

    def stopped(self):
        """The line that says where a run stopped by --stop-epoch stands."""
        return (f"stopped after epoch {len(self.log)} of {self.args.epochs}: the same command "
                "without --stop-epoch, with --resume, continues it")

    def stop_if_not_finite(self):
        """Exit 3, before anything is saved, when a loss was NaN or inf."""
        if dist.is_initialized():  # every rank stops, or none
            dist.all_reduce(self.bad_step, op=dist.ReduceOp.MAX)
        if self.bad_step.item() >= 0:
            good = os.path.join(self.args.out, "ckpt.pt")
            if main_process():
                print(f"error: loss is NaN or inf at step {self.bad_step.item()}; the last good "
                      f"checkpoint is {good if os.path.exists(good) else 'none'}", file=sys.stderr)
            sys.exit(3)

    def end_epoch(self):
        """The epoch's log line: mean loss over all processes (after the NaN stop), lr, speed and
        time."""
        self.stop_if_not_finite()
        seconds = time.time() - self.t0
        loss, trivial = (mean_over_processes(self.loss_sum) / self.steps_per_epoch).tolist()
        steps_done = (self.epoch + 1) * self.steps_per_epoch
        log = {"epoch": self.epoch + 1, "step": steps_done, "loss": loss}
        if self.has_trivial:
            log["trivial_loss"] = trivial
        images = (self.steps_per_epoch - self.start) * self.batch_size
        lr = max(g["lr"] for g in self.optimizer.param_groups)
        return log | {"lr": lr, "bf16": self.amp, "images_per_s": images / seconds,
                      "seconds": seconds}

    def used(self):
        """What the run used where its flags say otherwise or nothing: the batch (at most the train
        split) and its peak lr, and the epochs run in bf16 (a resume may change --amp)."""
        return {"batch_size": self.batch_size, "peak_lr": self.lr,
                "bf16_epochs": [line["epoch"] for line in self.log if line.get("bf16")]}

    def save(self, log):
        """The epoch's checkpoint, then log.jsonl with the epoch's line (rank 0 only): the
        checkpoint holds the log too, so a stop between the two loses nothing."""
        self.log.append(log)
        if self.epoch + 1 in self.keep_epochs:
            self.keep_copy(self.epoch + 1)
        save_checkpoint(self.args.out, self.model, self.optimizer, self.cfg, self.epoch + 1,
                        log=self.log)
        if main_process():
            print(json.dumps(log))
            write_log(self.args.out, self.log)

    def keep_copy(self, epoch):
        """OUT/keep-EEEE.pt: the weights and config after `epoch` epochs (0: the initialisation),
        which the evaluations take like a final checkpoint; a copy already kept is left as it is."""
        path = os.path.join(self.args.out, f"keep-{epoch:04d}.pt")
        if main_process() and not os.path.exists(path):
            copy = {"model": self.model.state_dict(), "config": self.cfg, "epoch": epoch}
            save_atomic(copy, path)
