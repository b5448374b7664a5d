"""Pretrain an MAE whose target is the image, or the image rebuilt from a PCA variance band.

    python pretrain.py --dataset cifar10 --target bottom --pct 25

The whole train split lives on the device as one uint8 tensor; each step indexes a batch,
augments it on the device, and projects the *augmented* batch onto the band for the target.
--out DIR receives ckpt.pt, log.jsonl, reconstruction grids and summary.json; --resume continues.
"""
import json
import os
import random
import sys
import time

import numpy as np

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import data
import pca_project
import report
from model import MAE, MASKINGS, extract_features, get_lr, grid_cell, knn_accuracy, param_groups

# Flags that change where or how fast a run goes, not what it computes.
RUNTIME_FLAGS = {"out", "resume", "device", "compile", "data_dir", "download", "eval_every", "ckpt_every", "band_edges"}


def get_args(argv=None):
    p = data.parser(__doc__.splitlines()[0])  # an argparse.ArgumentParser with the data flags
    p.add_argument("--target", default="original", choices=("original", "bottom", "top"))
    p.add_argument("--pct", type=float, help="variance share of the target band in percent (bottom/top only)")
    p.add_argument("--aug", default="crop", choices=data.AUGMENTATIONS, help="none reproduces the original work")
    p.add_argument("--masking", default="random", choices=MASKINGS)
    p.add_argument("--mask-ratio", type=float, default=0.75, help="share of the patches masked (patch maskings)")
    p.add_argument("--pca-mask-share", type=float, default=0.2,
                   help="with --masking pca: variance share of the principal components hidden from each image")
    p.add_argument("--norm-pix-loss", action="store_true", help="normalise each target patch (MAE paper)")
    p.add_argument("--patch-size", type=int, help="default: about 16 x 16 patches (2 at 32 px, 6 at 96 px)")
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--decoder-dim", type=int, default=192)
    p.add_argument("--decoder-depth", type=int, default=4)
    p.add_argument("--decoder-heads", type=int, default=3)
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--warmup-epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--blr", type=float, default=1.5e-4, help="base lr; lr = blr * batch / 256")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=10, help="epochs between kNN monitor and grids")
    p.add_argument("--knn-train", type=int, default=5000, help="train images in the kNN monitor")
    p.add_argument("--knn-test", type=int, default=1000, help="test images in the kNN and band monitors")
    p.add_argument("--band-edges", type=float, nargs="*", default=[10, 25],
                   help="cumulative variance shares (percent, from the bottom) cutting the spectrum into the bands "
                        "whose explained variance is logged every epoch; 10 25: top 75%%, 10-25%%, bottom 10%%; "
                        "none given: no band monitor")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (minutes to compile on a CPU)")
    p.add_argument("--out", default="runs/pretrain")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints within an epoch (0: none)")
    args = p.parse_args(argv)
    if args.target == "original" and args.pct is not None:
        p.error("--pct selects a band: it goes with --target bottom or top, not original")
    if args.target != "original" and args.pct is None:
        p.error(f"--target {args.target} needs --pct")
    if args.pct is not None and not 0 < args.pct < 100:
        p.error(f"--pct must be in (0, 100), got {args.pct:g}")
    if not 0 < args.mask_ratio < 1:
        p.error(f"--mask-ratio must be in (0, 1), got {args.mask_ratio:g}")
    if not 0 < args.pca_mask_share < 1:
        p.error(f"--pca-mask-share must be in (0, 1), got {args.pca_mask_share:g}")
    if any(not 0 < e < 100 for e in args.band_edges) or sorted(set(args.band_edges)) != args.band_edges:
        p.error("--band-edges must be increasing percentages in (0, 100)")
    if args.masking == "grid" and grid_cell(args.mask_ratio) is None:
        p.error(f"--masking grid keeps one patch of every s x s cell: mask ratio 1 - 1/s^2 (0.75, 0.8889, ...), "
                f"not {args.mask_ratio:g}")
    for name in ("epochs", "batch_size", "dim", "depth", "heads", "decoder_dim", "decoder_depth", "decoder_heads"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def default_patch_size(image_size):
    """The divisor of the image size that gives the patch grid closest to 16 x 16."""
    return min((p for p in range(1, image_size + 1) if image_size % p == 0), key=lambda p: abs(image_size / p - 16))


def check_sizes(image_shape, patch_size, *widths_and_heads):
    """A UserError unless the images are square, divisible into patches, and every transformer
    width is divisible by 4 (sin-cos positions) and by its number of heads."""
    _, h, w = image_shape
    if h != w or h % patch_size:
        raise data.UserError(f"image size {h}x{w} is not a square divisible by patch size {patch_size}")
    for d, heads in widths_and_heads:
        if d % heads or d % 4:
            raise data.UserError(f"width {d} must be divisible by 4 and by its number of heads ({heads})")


def build_model(cfg, image_shape):
    """The MAE a config describes, for images of shape (C, H, W); a UserError when they do not fit."""
    c, h, _ = image_shape
    check_sizes(image_shape, cfg["patch_size"], (cfg["dim"], cfg["heads"]), (cfg["decoder_dim"], cfg["decoder_heads"]))
    if cfg["masking"] == "grid" and (h // cfg["patch_size"]) % grid_cell(cfg["mask_ratio"]):
        raise data.UserError(f"--masking grid needs the patch grid ({h // cfg['patch_size']}) divisible by "
                             f"{grid_cell(cfg['mask_ratio'])}")
    return MAE(h, cfg["patch_size"], c, cfg["dim"], cfg["depth"], cfg["heads"], cfg["decoder_dim"],
               cfg["decoder_depth"], cfg["decoder_heads"], cfg["mask_ratio"], cfg["masking"], cfg["norm_pix_loss"])


def load_checkpoint(path):
    if not os.path.isfile(path):
        raise data.UserError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise data.UserError(f"checkpoint {path} is corrupt or not a checkpoint ({type(e).__name__})") from None


def load_pretrained(path):
    """A pretrain.py checkpoint (a dict with model, config, ...), checked to be one."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "mask_ratio" not in ckpt.get("config", {}) or "model" not in ckpt:
        raise data.UserError(f"{path} is not a pretrain.py checkpoint")
    return ckpt


def pretrained_encoder(ckpt, image_shape, path):
    """The encoder of a pretrain.py checkpoint, for images of image_shape (C, H, W)."""
    cfg = ckpt["config"]
    if tuple(cfg["image_shape"]) != tuple(image_shape):
        raise data.UserError(f"{path} was pretrained on {'x'.join(map(str, cfg['image_shape']))} images; "
                             f"this dataset has {'x'.join(map(str, image_shape))}")
    mae = build_model(cfg, image_shape)
    try:
        mae.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise data.UserError(f"{path} holds weights of another model than its config describes") from None
    return mae.encoder


def target_name(cfg):
    """How results name a pretraining target: original, bottom 25%, top 75%, and PCA masking when used."""
    name = "original" if cfg["target"] == "original" else f"{cfg['target']} {cfg['pct']:g}%"
    return name + (f", PCA masking {100 * cfg['pca_mask_share']:g}%" if cfg["masking"] == "pca" else "")


def setup_distributed(device_name):
    """(rank, world size, device). Under torchrun (which sets RANK, WORLD_SIZE, LOCAL_RANK) this
    joins the process group: NCCL on CUDA, one GPU per process, or gloo on CPU."""
    device = data.device(device_name)
    if "RANK" not in os.environ:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def main_process():
    """Only rank 0 prints and writes files."""
    return not dist.is_initialized() or dist.get_rank() == 0


def rng_state():
    """Every random number generator a run may touch: torch (CPU, CUDA), NumPy, Python."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": np_state[2],
                      "has_gauss": np_state[3], "gauss": np_state[4]}} | \
        ({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out, model, optimizer, cfg, epoch, step=0, loss_sum=None):
    """ckpt.pt after `epoch` whole epochs and `step` steps of the next, written crash-safely, the
    previous checkpoint kept as ckpt.prev.pt."""
    if not main_process():
        return
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": cfg, "epoch": epoch,
             "step": step, "loss_sum": None if loss_sum is None else loss_sum.cpu(), "rng": rng_state()}
    data.save_atomic(state, os.path.join(out, "ckpt.pt"), keep_previous=os.path.join(out, "ckpt.prev.pt"))


def note_step(loss, step, bad_step, steps_per_epoch, ckpt_every, out, model, optimizer, cfg, loss_sum):
    """After each step: remember the first step whose loss was not finite (on the device: no
    sync), and write the mid-epoch checkpoint every ckpt_every steps."""
    bad_step = torch.where(torch.isfinite(loss) | (bad_step >= 0), bad_step, step)
    epoch, i = divmod(step + 1, steps_per_epoch)
    if ckpt_every and (step + 1) % ckpt_every == 0 and i:
        stop_if_not_finite(bad_step, out)
        save_checkpoint(out, model, optimizer, cfg, epoch, i, mean_over_processes(loss_sum))
    return bad_step


def stop_if_not_finite(bad_step, out):
    """Exit 3, before anything is saved, when a loss was NaN or inf (bad_step >= 0 names the step)."""
    if dist.is_initialized():  # every rank stops, or none
        dist.all_reduce(bad_step, op=dist.ReduceOp.MAX)
    if bad_step.item() >= 0:
        good = os.path.join(out, "ckpt.pt")
        if main_process():
            print(f"error: loss is NaN or inf at step {bad_step.item()}; the last good checkpoint is "
                  f"{good if os.path.exists(good) else 'none'}", file=sys.stderr)
        sys.exit(3)


def epoch_loss(loss_sum, bad_step, steps, out):
    """The epoch's mean loss over all processes, after stopping (exit 3) if any step's was not finite."""
    stop_if_not_finite(bad_step, out)
    return mean_over_processes(loss_sum).item() / steps


def mean_over_processes(t):
    if not dist.is_initialized():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def restore(out, cfg, model, optimizer, resume):
    """Continue the run in OUT (weights, optimizer, RNG, log) when --resume.

    Returns (whole epochs done, steps done in the next, that epoch's loss sum so far or None).
    A corrupt ckpt.pt is reported and ckpt.prev.pt used instead. OUT holding a checkpoint of
    another config is refused, and so is OUT holding this run without --resume."""
    data.out_dir(out)
    paths = [os.path.join(out, name) for name in ("ckpt.pt", "ckpt.prev.pt")]
    log_path = os.path.join(out, "log.jsonl")
    if not any(os.path.exists(p) for p in paths):
        if os.path.exists(log_path) and main_process():
            os.remove(log_path)
        return 0, 0, None
    ckpt = None
    for path in paths:
        try:
            ckpt = load_checkpoint(path)
            break
        except data.UserError as e:
            if path == paths[-1] or not os.path.exists(paths[-1]):
                raise
            print(f"warning: {e}; resuming from {paths[-1]}", file=sys.stderr)
    if ckpt.get("config") != cfg:
        old = ckpt.get("config", {})
        diff = sorted(k for k in cfg.keys() | old.keys() if cfg.get(k) != old.get(k))
        raise data.UserError(f"{out} holds a run of another config (differs in {', '.join(diff)}); "
                             "choose another --out")
    if not resume:
        raise data.UserError(f"{out} already holds this run: pass --resume to continue it, or choose another --out")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    if os.path.exists(log_path) and main_process():  # the log keeps the epochs the checkpoint holds, no more
        with open(log_path) as f:
            kept = [line for line in f if json.loads(line)["epoch"] <= ckpt["epoch"]]
        with open(log_path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(log_path + ".tmp", log_path)
    return ckpt["epoch"], ckpt["step"], ckpt["loss_sum"]


def log_epoch(out, log):
    if not main_process():
        return
    print(json.dumps(log))
    with open(os.path.join(out, "log.jsonl"), "a") as f:
        f.write(json.dumps(log) + "\n")


def read_log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def make_batch(x_uint8, aug, pca=None, band=None, u=None, hidden=None):
    """Encoder input and reconstruction target from one uint8 batch, both from the same augmented
    images: the image and the image (or its projection on the band, a slice of pca's components);
    with PCA masking (hidden (N, D) components), the images rebuilt from the visible components
    and from the hidden ones (only those in the band, with a band)."""
    x = data.augment(x_uint8.float().div_(255), aug, u)
    if hidden is not None:
        return pca_project.split(x, pca, hidden, band)
    return x, (x if band is None else pca_project.project(x, pca, pca["eigvecs"][:, band]))


def batches(n, batch_size, seed, epoch, epochs, device, start=0):
    """(step in epoch, indices) of one epoch's batches from step `start` on. The permutation depends
    on (seed, epoch) only, so a resumed run sees the same batches."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).to(device)
    for i in tqdm(range(start, n // batch_size), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                  disable=None if main_process() else True, mininterval=1, initial=start, total=n // batch_size):
        yield i, perm[i * batch_size:(i + 1) * batch_size]


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


def train_step(model, optimizer, x, target, autocast, loss_fn=None, scores=None):
    """One optimizer step: the MAE's own loss, or loss_fn(model(x), target) for a classifier."""
    with autocast:
        loss = model(x, target, scores=scores)[0] if loss_fn is None else loss_fn(model(x), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()  # no .item(): the host does not wait for the device


@torch.no_grad()
def predict(model, x_uint8, pca, band, mask_share):
    """The model on fixed images with the same masks every time: (images, input, target, prediction,
    mask image (1 = masked patch)), the prediction in pixels even with norm-pix-loss."""
    model.eval()
    g = torch.Generator(x_uint8.device).manual_seed(0)
    hidden = None
    if model.masking == "pca":
        u = torch.rand(len(x_uint8), len(pca["share"]), device=x_uint8.device, generator=g)
        hidden = pca_project.hide_components(pca["share"], mask_share, u)
    inp, target = make_batch(x_uint8, "none", pca, band, hidden=hidden)
    _, pred, mask = model(inp, target, generator=g)
    tp = model.patchify(target)
    if model.norm_pix_loss:  # undo the per-patch normalisation with the target's own statistics
        pred = pred * (tp.var(-1, keepdim=True) + 1e-6).sqrt() + tp.mean(-1, keepdim=True)
    m = model.unpatchify(mask[..., None].expand_as(tp))
    return x_uint8.float() / 255, inp, target, model.unpatchify(pred.float()), m


def save_grid(model, x_uint8, pca, band, mask_share, path):
    """Rows: input (masked patches grey), prediction (visible patches from the target; with PCA
    masking, input plus predicted hidden components), target, original."""
    x, inp, target, pred, m = predict(model, x_uint8, pca, band, mask_share)
    if model.masking == "pca":
        rows = [inp, inp + pred - pca["mean"].view_as(x[0]), target, x]
    else:
        rows = [inp * (1 - m) + 0.5 * m, pred * m + target * (1 - m), target, x]
    data.save_png(torch.cat(rows).clamp(0, 1), path, nrow=len(x), padding=1)


def explained_by_band(model, x_uint8, pca, band, mask_share, bands):
    """Per band of the spectrum, the share of the variance of the hidden part of the target (its
    masked patches, or hidden components) that the model's reconstruction explains
    (pca_project.explained); None for bands outside the target band. Measured against the target,
    not the image: cutting patches out of the image would leak its top band into the others."""
    _, inp, target, pred, m = predict(model, x_uint8, pca, band, mask_share)
    mean = pca["mean"].view_as(inp[0])
    if model.masking == "pca":
        truth, seen, guess = inp + target - mean, inp, inp + pred - mean
    else:
        truth, seen, guess = target, target * (1 - m) + mean * m, target * (1 - m) + pred * m
    explained = pca_project.explained(truth, seen, guess, pca, bands)
    if band is not None:
        explained |= {name: None for name, b in bands if b.stop <= band.start or b.start >= band.stop}
    return explained


def main(argv=None):
    args = get_args(argv)
    rank, world, device = setup_distributed(args.device)
    x_train, y_train = data.load(args.dataset, "train", args.data_dir, args.image_size, args.download)
    x_test, y_test = data.load(args.dataset, "test", args.data_dir, args.image_size, args.download)
    args.patch_size = args.patch_size or default_patch_size(x_train.shape[-1])
    cfg = {k: v for k, v in vars(args).items() if k not in RUNTIME_FLAGS} | {"image_shape": list(x_train.shape[1:])}
    torch.manual_seed(args.seed)
    model = build_model(cfg, tuple(x_train.shape[1:])).to(device)

    pca = band = bands = None
    band_desc = "the image"
    if args.target != "original" or args.masking == "pca" or args.band_edges:
        fit, _ = pca_project.load_or_fit(args.dataset, args.data_dir, args.image_size, download=args.download,
                                         device=device)
        pca = {"mean": fit["mean"].to(device, torch.float32), "eigvecs": fit["eigvecs"].to(device, torch.float32),
               "share": pca_project.variance_share(fit).to(device, torch.float32)}
        bands = pca_project.spectrum_bands(fit, args.band_edges) if args.band_edges else None
    if args.target != "original":
        band = pca_project.band_slice(fit, args.target, args.pct)
        band_desc = f"{args.target} {args.pct:g}% band ({pca['eigvecs'][:, band].shape[1]:,} of " \
                    f"{len(fit['mean']):,} components)"
    if args.masking == "pca":
        band_desc = f"the hidden components' part of {band_desc}"

    # The global batch and the lr do not depend on the number of processes: each takes a slice.
    batch_size = min(args.batch_size, len(x_train))
    if batch_size % world:
        raise data.UserError(f"batch size {batch_size} does not split over {world} processes")
    local = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
    steps_per_epoch = len(x_train) // batch_size
    total_steps, warmup_steps = args.epochs * steps_per_epoch, args.warmup_epochs * steps_per_epoch
    lr = args.blr * batch_size / 256
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=lr, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")

    start_epoch, start_step, resumed_sum = restore(args.out, cfg, model, optimizer, args.resume)
    n_params = sum(p.numel() for p in model.parameters())
    if main_process():
        print(f"device {device}{f' x {world} processes' if world > 1 else ''} | {args.dataset}: {len(x_train):,} "
              f"train images {'x'.join(map(str, x_train.shape[1:]))} | target: {band_desc} | MAE dim {args.dim} depth "
              f"{args.depth}, decoder {args.decoder_dim}x{args.decoder_depth}, patch {args.patch_size}, {args.masking} "
              f"masking {args.pca_mask_share if args.masking == 'pca' else args.mask_ratio:g} | "
              f"{n_params / 1e6:.2f}M parameters | {args.epochs} epochs of {steps_per_epoch} steps"
              + (f" | resuming at epoch {start_epoch + 1}, step {start_step}" if start_epoch or start_step else ""))

    x_train = x_train.to(device)
    knn_train = torch.linspace(0, len(x_train) - 1, min(args.knn_train, len(x_train))).long()  # fixed subsets
    knn_test = torch.linspace(0, len(x_test) - 1, min(args.knn_test, len(x_test))).long()
    grid_images = x_test[:8].to(device)
    x_monitor = x_test[knn_test].to(device)
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
    step_model = DistributedDataParallel(model) if world > 1 else model
    step_model = torch.compile(step_model) if args.compile else step_model
    t_start = time.time()

    bad_step = torch.full((), -1, device=device)
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        model.train()
        start = start_step if epoch == start_epoch else 0
        loss_sum = resumed_sum.to(device) if start else torch.zeros((), device=device)
        for i, idx in batches(len(x_train), batch_size, args.seed, epoch, args.epochs, device, start):
            step = epoch * steps_per_epoch + i
            set_lr(optimizer, get_lr(step, lr, warmup_steps, total_steps))
            # Every process draws the random numbers of the whole global batch and keeps its slice,
            # so N processes compute what one would.
            u = torch.rand(batch_size, 5, device=device)[local] if args.aug != "none" else None
            hidden = scores = None
            if args.masking == "pca":
                hidden = pca_project.hide_components(pca["share"], args.pca_mask_share,
                                                     torch.rand(batch_size, len(pca["share"]), device=device)[local])
            else:
                scores = model.mask_scores(batch_size, device)[local]
            x, target = make_batch(x_train[idx[local]], args.aug, pca, band, u, hidden)
            loss = train_step(step_model, optimizer, x, target, autocast, scores=scores)
            loss_sum += loss
            bad_step = note_step(loss, step, bad_step, steps_per_epoch, args.ckpt_every, args.out, model, optimizer,
                                 cfg, loss_sum)
        mean_loss = epoch_loss(loss_sum, bad_step, steps_per_epoch, args.out)
        seconds = time.time() - t0
        log = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "loss": mean_loss,
               "lr": optimizer.param_groups[0]["lr"], "images_per_s": (steps_per_epoch - start) * batch_size / seconds,
               "seconds": seconds}
        if main_process() and bands:
            log["explained"] = explained_by_band(model, x_monitor, pca, band, args.pca_mask_share, bands)
        if main_process() and ((epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs):
            feats_train = extract_features(model.encoder, x_train[knn_train.to(device)])
            feats_test = extract_features(model.encoder, x_monitor)
            log["knn"] = knn_accuracy(feats_train, y_train[knn_train].to(device), feats_test,
                                      y_test[knn_test].to(device))
            save_grid(model, grid_images, pca, band, args.pca_mask_share,
                      os.path.join(args.out, f"recon-{epoch + 1:04d}.png"))
        log_epoch(args.out, log)
        save_checkpoint(args.out, model, optimizer, cfg, epoch + 1)

    if main_process():
        logs = read_log(args.out)
        summary = {"config": cfg, "target": band_desc, "parameters": n_params, "epochs": args.epochs,
                   "final_loss": logs[-1]["loss"],
                   "final_knn": next((l["knn"] for l in reversed(logs) if "knn" in l), None),
                   "final_explained": logs[-1].get("explained"),
                   "train_seconds": sum(l["seconds"] for l in logs), "wall_seconds_this_session": time.time() - t_start}
        data.save_json(summary, os.path.join(args.out, "summary.json"))
        if bands:
            report.explained_chart(logs, os.path.join(args.out, "explained.png"))
        print(f"done: loss {summary['final_loss']:.4f}, kNN {summary['final_knn']:.3f}; wrote {args.out}/")
    if dist.is_initialized():
        dist.destroy_process_group()

if __name__ == "__main__":
    data.main_guard(main)
