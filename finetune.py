"""Fine-tune a pretrained encoder as a classifier, or train the same ViT from scratch.

    python finetune.py --ckpt runs/pretrain/ckpt.pt --dataset cifar10
    python finetune.py --init none --dataset cifar10                  # the no-pretraining baseline
    python finetune.py --init none --input bottom --pct 25            # supervised on the bottom band

--input bottom|top trains and tests on band-projected images (PCA fitted on the train split):
with --init none this is Balestriero & LeCun's experiment. Reports the final epoch's test accuracy.
"""
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torchvision.transforms import v2

import data
import pca_project
from model import Classifier, Encoder, get_lr, param_groups
from pretrain import (batches, check_sizes, default_patch_size, epoch_loss, load_pretrained, log_epoch,
                      main_process, make_batch, note_step, pretrained_encoder, read_log, restore, save_checkpoint,
                      set_lr, setup_distributed, target_name, train_step)

RUNTIME_FLAGS = {"out", "resume", "device", "compile", "data_dir", "download", "ckpt_every"}
SIZE_FLAGS = ("patch_size", "dim", "depth", "heads")
VIT_TINY = {"dim": 192, "depth": 12, "heads": 3}


def get_args(argv=None):
    p = data.parser(__doc__.splitlines()[0])  # an argparse.ArgumentParser with the data flags
    p.add_argument("--ckpt", help="a pretrain.py checkpoint to start from")
    p.add_argument("--init", choices=("none",), help="none: random initialisation (no pretraining)")
    p.add_argument("--input", default="original", choices=("original", "bottom", "top"))
    p.add_argument("--pct", type=float, help="variance share of the input band in percent")
    p.add_argument("--pool", default="cls", choices=("cls", "mean"))
    for name in SIZE_FLAGS:  # from the checkpoint with --ckpt; ViT-Tiny with --init none
        p.add_argument("--" + name.replace("_", "-"), type=int)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--blr", type=float, default=1e-3, help="base lr; lr = blr * batch / 256")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--layer-decay", type=float, default=0.75, help="lr factor per layer below the head")
    p.add_argument("--drop-path", type=float, default=0.1)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--aug", default="crop", choices=data.AUGMENTATIONS)
    p.add_argument("--mixup", type=float, default=0.0, help="MixUp alpha (0: off; MAE used 0.8)")
    p.add_argument("--cutmix", type=float, default=0.0, help="CutMix alpha (0: off; MAE used 1.0)")
    p.add_argument("--val-split", type=float, default=0.0, help="share of train held out for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--out", default="runs/finetune")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints within an epoch (0: none)")
    args = p.parse_args(argv)
    if (args.ckpt is None) == (args.init is None):
        p.error("give --ckpt RUN/ckpt.pt to fine-tune, or --init none for the no-pretraining baseline")
    if args.input == "original" and args.pct is not None:
        p.error("--pct selects a band: it goes with --input bottom or top")
    if args.input != "original" and args.pct is None:
        p.error(f"--input {args.input} needs --pct")
    if args.pct is not None and not 0 < args.pct < 100:
        p.error(f"--pct must be in (0, 100), got {args.pct:g}")
    if not 0 <= args.val_split < 1:
        p.error(f"--val-split must be in [0, 1), got {args.val_split:g}")
    for name in ("epochs", "batch_size") + SIZE_FLAGS:
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


@torch.no_grad()
def accuracy(model, x_uint8, y, pca, band, autocast, batch_size=1024):
    model.eval()
    correct = 0
    for i in range(0, len(x_uint8), batch_size):
        _, x = make_batch(x_uint8[i:i + batch_size], "none", pca, band)
        with autocast:
            correct += (model(x).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x_uint8)


def main(argv=None):
    args = get_args(argv)
    t_start = time.time()
    rank, world, device = setup_distributed(args.device)
    x_train, y_train = data.load(args.dataset, "train", args.data_dir, args.image_size, args.download)
    x_test, y_test = data.load(args.dataset, "test", args.data_dir, args.image_size, args.download)
    shape = tuple(x_train.shape[1:])

    torch.manual_seed(args.seed)
    if args.ckpt:
        ckpt = load_pretrained(args.ckpt)
        pre = ckpt["config"]
        for name in SIZE_FLAGS:
            if getattr(args, name) is not None and getattr(args, name) != pre[name]:
                raise data.UserError(f"--{name.replace('_', '-')} {getattr(args, name)} contradicts the checkpoint's "
                                     f"{pre[name]}; leave it out to use the checkpoint's")
            setattr(args, name, pre[name])
        encoder = pretrained_encoder(ckpt, shape, args.ckpt)
        for block, rate in zip(encoder.blocks, torch.linspace(0, args.drop_path, len(encoder.blocks)).tolist()):
            block.drop_path = rate
    else:
        pre = None
        args.patch_size = args.patch_size or default_patch_size(shape[-1])
        for name, value in VIT_TINY.items():
            setattr(args, name, getattr(args, name) or value)
        check_sizes(shape, args.patch_size, (args.dim, args.heads))
        encoder = Encoder(shape[1], args.patch_size, shape[0], args.dim, args.depth, args.heads, args.drop_path)
    num_classes = int(y_train.max()) + 1
    model = Classifier(encoder, num_classes, args.pool).to(device)

    pca = band = None
    band_desc = "the image"
    if args.input != "original":
        fit, _ = pca_project.load_or_fit(args.dataset, args.data_dir, args.image_size, download=args.download,
                                         device=device)
        pca = {k: fit[k].to(device, torch.float32) for k in ("mean", "eigvecs")}
        band = pca_project.band_slice(fit, args.input, args.pct)
        band_desc = f"its {args.input} {args.pct:g}% band ({pca['eigvecs'][:, band].shape[1]:,} of " \
                    f"{len(fit['mean']):,} components)"

    # A validation split cut from train by a fixed permutation, for anyone who selects on it.
    n_val = round(args.val_split * len(x_train))
    split = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed))
    x_val, y_val = x_train[split[:n_val]].to(device), y_train[split[:n_val]].to(device)
    x_train, y_train = x_train[split[n_val:]].to(device), y_train[split[n_val:]].to(device)

    batch_size = min(args.batch_size, len(x_train))
    if batch_size % world:
        raise data.UserError(f"batch size {batch_size} does not split over {world} processes")
    local = slice(rank * batch_size // world, (rank + 1) * batch_size // world)  # this process's share
    steps_per_epoch = len(x_train) // batch_size
    total_steps, warmup_steps = args.epochs * steps_per_epoch, args.warmup_epochs * steps_per_epoch
    lr = args.blr * batch_size / 256
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, args.layer_decay), lr=lr,
                                  betas=(0.9, 0.999), fused=device.type == "cuda")
    cfg = {k: v for k, v in vars(args).items() if k not in RUNTIME_FLAGS}
    start_epoch, start_step, resumed_sum = restore(args.out, cfg, model, optimizer, args.resume)
    mixes = [mixer(alpha=alpha, num_classes=num_classes) for mixer, alpha in ((v2.MixUp, args.mixup),
                                                                              (v2.CutMix, args.cutmix)) if alpha > 0]
    mix = v2.RandomChoice(mixes) if mixes else None

    def loss_fn(logits, labels):
        return F.cross_entropy(logits.float(), labels, label_smoothing=args.label_smoothing)

    if main_process():
        print(f"device {device}{f' x {world} processes' if world > 1 else ''} | {args.dataset}: {len(x_train):,} "
              f"train / {n_val:,} val / {len(x_test):,} test images | input: {band_desc} | init: "
              f"{'pretrained ' + target_name(pre) + ' from ' + args.ckpt if pre else 'none'} "
              f"| ViT dim {args.dim} depth {args.depth} patch {args.patch_size} "
              f"| {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters | {args.epochs} epochs of "
              f"{steps_per_epoch} steps"
              + (f" | resuming at epoch {start_epoch + 1}, step {start_step}" if start_epoch or start_step else ""))

    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
    step_model = DistributedDataParallel(model) if world > 1 else model
    step_model = torch.compile(step_model) if args.compile else step_model
    bad_step = torch.full((), -1, device=device)
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        model.train()
        start = start_step if epoch == start_epoch else 0
        loss_sum = resumed_sum.to(device) if start else torch.zeros((), device=device)
        for i, idx in batches(len(x_train), batch_size, args.seed, epoch, args.epochs, device, start):
            step = epoch * steps_per_epoch + i
            set_lr(optimizer, get_lr(step, lr, warmup_steps, total_steps))
            u = torch.rand(batch_size, 5, device=device)[local] if args.aug != "none" else None
            _, x = make_batch(x_train[idx[local]], args.aug, pca, band, u)
            labels = y_train[idx[local]]
            if mix is not None:
                x, labels = mix(x, labels)
            loss = train_step(step_model, optimizer, x, labels, autocast, loss_fn)
            loss_sum += loss
            bad_step = note_step(loss, step, bad_step, steps_per_epoch, args.ckpt_every, args.out, model, optimizer,
                                 cfg, loss_sum)
        mean_loss = epoch_loss(loss_sum, bad_step, steps_per_epoch, args.out)
        seconds = time.time() - t0
        log = {"epoch": epoch + 1, "loss": mean_loss,
               "lr": max(g["lr"] for g in optimizer.param_groups),
               "images_per_s": (steps_per_epoch - start) * batch_size / seconds, "seconds": seconds}
        if n_val and main_process():
            log["val_accuracy"] = accuracy(model, x_val, y_val, pca, band, autocast)
        log_epoch(args.out, log)
        save_checkpoint(args.out, model, optimizer, cfg, epoch + 1)

    if not main_process():
        dist.destroy_process_group()
        return
    test_accuracy = accuracy(model, x_test.to(device), y_test.to(device), pca, band, autocast)
    logs = read_log(args.out)
    results = {"dataset": args.dataset, "target": target_name(pre) if pre else "no pretraining", "eval": "finetune",
               "input": "original" if band is None else f"{args.input} {args.pct:g}%", "accuracy": test_accuracy,
               "val_accuracy": logs[-1].get("val_accuracy"), "epochs": args.epochs,
               "seconds": sum(l["seconds"] for l in logs), "wall_seconds_this_session": time.time() - t_start,
               "config": cfg, "pretrain_config": pre, "commit": data.git_commit()}
    data.save_json(results, os.path.join(args.out, "results.json"))
    print(f"fine-tune: test accuracy {test_accuracy:.4f} (final epoch of {args.epochs}); wrote {args.out}/results.json")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    data.main_guard(main)
