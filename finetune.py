"""Fine-tune a pretrained encoder as a classifier, or train the same ViT from scratch.

    python finetune.py --ckpt runs/pretrain/ckpt.pt --dataset cifar10
    python finetune.py --init none --dataset cifar10          # the no-pretraining baseline
    python finetune.py --init none --input bottom --pct 25    # supervised on the bottom band

--input bottom|top trains and tests on band-projected images (PCA fitted on the whole train split,
--val-split's images included; never the test split), the
band taken of the whole image in both, before augmentation: with --init none this is Balestriero &
LeCun's experiment. Logs the test accuracy of each epoch (the
curve) and reports the final epoch's."""
import os
import time

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

import cli
import data
import dataset_pca
import files
import outfolder
import pca_project
import training
from checkpoints import (check_sizes, check_weights, data_note, data_of, load_pretrained,
                         pretrained, take_flags)
from model import Classifier, Encoder, default_patch_size, get_lr, param_groups
from report import pretrain_precision, target_name

SIZE_FLAGS = ("patch_size", "dim", "depth", "heads", "attention")
VIT_TINY = {"dim": 192, "depth": 12, "heads": 3}


def get_args(argv=None):
    # the data flags every script takes (by default the checkpoint's data), and --device
    p = cli.parser(__doc__.splitlines()[0], data_from_ckpt=True)
    # where the encoder comes from, and what it sees
    p.add_argument("--ckpt", type=cli.path, help="a pretrain.py checkpoint to start from")
    p.add_argument("--init", choices=("none",),
                   help="none: random initialisation (no pretraining)")
    p.add_argument("--input", default="original", choices=("original", "bottom", "top"))
    p.add_argument("--pct", type=cli.within(0, 100),
                   help="variance share of the input band in percent")
    p.add_argument("--pool", default="cls", choices=("cls", "mean"))
    kinds = {"patch_size": cli.side, "dim": cli.width, "depth": cli.layers, "heads": cli.layers}
    for name, kind in kinds.items():  # from the checkpoint with --ckpt; ViT-Tiny with --init none
        p.add_argument("--" + name.replace("_", "-"), type=kind)
    p.add_argument("--attention", choices=("wave",),
                   help="wave: Wave-ViT's attention (default: plain)")
    # the recipe (docs/method.md, 4)
    training.add_flags(p, epochs=100, warmup=0.05, batch_size=1024, blr=1e-3, out="runs/finetune")
    p.add_argument("--layer-decay", type=cli.within(0, 1, high_in=True), default=0.75,
                   help="lr factor per layer below the head")
    p.add_argument("--drop-path", type=cli.within(0, 1, low_in=True), default=0.1)
    p.add_argument("--label-smoothing", type=cli.within(0, 1, low_in=True), default=0.1)
    p.add_argument("--aug", default="crop", choices=data.AUGMENTATIONS)
    p.add_argument("--mixup", type=cli.alpha, default=0.0,
                   help="MixUp alpha (0: off; MAE used 0.8)")
    p.add_argument("--cutmix", type=cli.alpha, default=0.0,
                   help="CutMix alpha (0: off; MAE used 1.0)")
    p.add_argument("--val-split", type=cli.within(0, 1, low_in=True), default=0.0,
                   help="share of train held out for validation")
    args = p.parse_args(argv)
    training.check_schedule(p, args)
    if (args.ckpt is None) == (args.init is None):
        p.error("give --ckpt RUN/ckpt.pt to fine-tune, or --init none for the no-pretraining "
                "baseline")
    if (args.input == "original") != (args.pct is None):
        p.error("--pct selects the band: give it with --input bottom or top, and only then")
    return args


@torch.no_grad()
def accuracy(model, x_uint8, y, pcs, autocast, batch_size=1024):
    model.eval()
    correct = 0
    for i in range(0, len(x_uint8), batch_size):
        x = pca_project.to_band(x_uint8[i:i + batch_size].float() / 255, pcs)
        with autocast:
            correct += (model(x).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x_uint8)


def pretrained_encoder(args, ckpt, shape):
    """The checkpoint's encoder, its sizes taken into args (a size flag that contradicts them is
    refused), with drop path at args' rate."""
    take_flags(args, {name: ckpt["config"].get(name) for name in SIZE_FLAGS})
    encoder = pretrained(ckpt, shape, args.ckpt).encoder
    encoder.set_drop_path(args.drop_path)
    return encoder


def fresh_encoder(args, shape):
    """The same ViT from MAE's init (ViT-Tiny unless told otherwise), its sizes taken into args."""
    args.patch_size = args.patch_size or default_patch_size(shape[-1])
    for name, value in VIT_TINY.items():
        setattr(args, name, getattr(args, name) or value)
    check_sizes(shape, args.patch_size, (args.dim, args.heads), attention=args.attention)
    check_weights((args.dim, args.depth))
    return Encoder(shape[1], args.patch_size, shape[0], args.dim, args.depth, args.heads,
                   args.drop_path, args.attention)


def main(argv=None):
    args = get_args(argv)
    t_start = time.time()
    if args.ckpt and not os.path.lexists(args.ckpt):  # committed results have no checkpoints
        known = {k: v for k, v in vars(args).items() if k not in training.RUNTIME_FLAGS}
        known["ckpt"] = None  # its path differs between clones; without the file, not known
        outfolder.skip_if_ended(args.out, known, args.resume)
    device = training.setup_distributed(cli.device(args.device))
    # The model first: all that the arguments and the checkpoint refuse is refused before any data
    # is read. The checkpoint's data (dataset, folder, image size) unless the flags say otherwise.
    ckpt = load_pretrained(args.ckpt) if args.ckpt else None
    pre = ckpt["config"] if ckpt else None
    data_used, taken = data_of(pre, args.dataset, args.data_dir, args.image_size)
    args.dataset, args.data_dir = data_used["dataset"], data_used["data_dir"]
    shape = data.image_shape(args.dataset, data_used["image_size"])
    args.image_size = shape[-1]  # the size used (a fixed-size dataset ignores the flag)
    torch.manual_seed(args.seed)
    encoder = pretrained_encoder(args, ckpt, shape) if ckpt else fresh_encoder(args, shape)
    cfg = {k: v for k, v in vars(args).items() if k not in training.RUNTIME_FLAGS}
    if args.input != "original" and args.aug != "none":
        cfg["band_first"] = True  # the band of the whole image, then augmentation
    outfolder.check_out(args.out, "finetune.py", cfg, args.resume,  # before any data is read
                        inputs=data.sources(args.dataset, args.data_dir))
    model = Classifier(encoder, data.num_classes(args.dataset, args.data_dir), args.pool)
    model = model.to(device)

    where = (args.data_dir, args.image_size, args.download)
    x_train, y_train = data.load(args.dataset, "train", *where)
    x_test, y_test = data.load(args.dataset, "test", *where)
    # A validation split cut from train by a fixed permutation, for anyone who selects on it.
    n_val = round(args.val_split * len(x_train))
    if n_val == len(x_train):
        raise files.UserError(f"--val-split {args.val_split:g} leaves none of the {len(x_train)} "
                              "train images to train on")
    split = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed))
    x_val, y_val = x_train[split[:n_val]].to(device), y_train[split[:n_val]].to(device)
    x_train, y_train = x_train[split[n_val:]].to(device), y_train[split[n_val:]].to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)

    pcs = None
    band_desc = "the image"
    if args.input != "original":
        fit, _ = dataset_pca.load_or_fit(args.dataset, args.data_dir, args.image_size,
                                         download=args.download, device=device)
        pcs = pca_project.on_device(fit, device, dataset_pca.band_of(fit, args.input, args.pct))
        band_desc = "its " + pca_project.band_name(fit, args.input, args.pct)

    cfg["data_sha1"] = data.identity(x_train, y_train, x_val, y_val, x_test, y_test)
    pick, subset = data.subset(args.subset, len(x_train))
    if pick is not None:  # a quick try: images spread over the split
        x_train, y_train = x_train[pick.to(device)], y_train[pick.to(device)]
    groups = param_groups(model, args.weight_decay, args.layer_decay)
    # AdamW, built the same way on every device (fused: CUDA and CPU); the loop sets its lr.
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), fused=True)
    sched = training.schedule(args, len(x_train))  # global batch, this process's slice, steps, lr
    precision = training.precision(args, device)  # fp32, or --amp's bf16 or fp16
    # fp16: the loss scaled so that small gradients survive (a step whose gradients overflowed is
    # skipped); bf16 and fp32 need none, and the scaler passes their steps through
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    start_epoch, start_step, resumed_sums, log = training.claim_or_resume(
        args.out, cfg, model, optimizer, args.resume, scaler)
    step_model = training.wrap(model, args.compile)  # DDP under torchrun, --compile
    autocast = torch.autocast(device.type, training.DTYPES[precision], enabled=precision != "fp32")
    mixers = ((v2.MixUp, args.mixup), (v2.CutMix, args.cutmix))
    n_classes = model.head.out_features
    mixes = [mixer(alpha=alpha, num_classes=n_classes) for mixer, alpha in mixers if alpha > 0]
    mix = v2.RandomChoice(mixes) if mixes else None

    if training.main_process():
        processes = f" x {sched.world} processes" if sched.world > 1 else ""
        init = f"pretrained {target_name(pre)} from {args.ckpt}" if pre else "none"
        n_params = sum(p.numel() for p in model.parameters())
        notes = training.notes(args, sched, precision, start_epoch, start_step)
        notes += data_note(data_used, taken)
        print(" | ".join([
            f"device {device}{processes}",
            f"{args.dataset}: {len(x_train):,} train{subset} / {n_val:,} val / "
            f"{len(x_test):,} test images",
            f"input: {band_desc}", f"init: {init}",
            f"ViT dim {args.dim} depth {args.depth} patch {args.patch_size}",
            f"{n_params / 1e6:.2f}M parameters",
            f"{args.epochs} epochs of {sched.steps_per_epoch} steps{notes}"]))

    bad_step = torch.full((), -1, device=device)  # the first step whose loss was not finite
    last_epoch = args.epochs if args.stop_epoch is None else args.stop_epoch
    for epoch in range(start_epoch, last_epoch):
        model.train()
        t_epoch = time.time()
        first = start_step if epoch == start_epoch else 0  # a resumed epoch goes on mid-way
        sums = resumed_sums.to(device) if first else torch.zeros(1, device=device)  # of the loss
        perm = training.permutation(len(x_train), args.seed, epoch, device)
        steps = training.progress(first, sched.steps_per_epoch, epoch, args.epochs, sums,
                                  sched.batch_size)
        for i in steps:
            step = epoch * sched.steps_per_epoch + i
            # the batch: this process's slice of the global batch's images
            idx = perm[i * sched.batch_size:(i + 1) * sched.batch_size][sched.local]
            lr = get_lr(step, sched.peak_lr, sched.warmup_steps, sched.total_steps)
            training.set_lr(optimizer, lr)
            # its band, as the test images' (of the whole image, not of a crop that smooths it),
            # then augmented on the device (each image's crop box and flip), then mixed
            x = pca_project.to_band(x_train[idx].float().div_(255), pcs)
            u_aug = None
            if args.aug != "none":
                u_aug = training.draw(torch.rand, sched, 5, device=device)
            x, labels = data.augment(x, args.aug, u_aug), y_train[idx]
            if mix is not None:
                x, labels = mix(x, labels)
            # forward, backward, step
            with autocast:
                loss = F.cross_entropy(step_model(x).float(), labels,
                                       label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            # the epoch's loss sum and the NaN watch, on the device: the host never waits for it
            sums += loss.detach()
            bad_step = training.first_bad_step(bad_step, loss.detach(), step)
            if training.mid_epoch_checkpoint(step, sched, args.ckpt_every):  # never of a NaN
                training.stop_if_not_finite(bad_step, args.out)
                training.save_checkpoint(args.out, model, optimizer, cfg, epoch, step=i + 1,
                                         loss_sum=sums, log=log, scaler=scaler)

        training.stop_if_not_finite(bad_step, args.out)
        line = training.epoch_line(epoch, sums, ("loss",), sched, first, lr, precision,
                                   seconds=time.time() - t_epoch)
        if training.main_process():  # the test curve, to see it flatten; the result: the last epoch
            line["test_accuracy"] = accuracy(model, x_test, y_test, pcs, autocast)
            if n_val:
                line["val_accuracy"] = accuracy(model, x_val, y_val, pcs, autocast)
        log.append(line)
        training.save_epoch(args.out, model, optimizer, cfg, log, args.epochs, scaler)  # ckpt, log

    if training.main_process() and len(log) < args.epochs:
        print(training.stopped(log, args.epochs))
    elif training.main_process():
        test_accuracy = log[-1]["test_accuracy"]
        band = "original" if pcs is None else f"{args.input} {args.pct:g}%"
        results = {"dataset": args.dataset, "target": target_name(pre) if pre else "no pretraining",
                   "eval": "finetune", "input": band, "accuracy": test_accuracy,
                   "val_accuracy": log[-1].get("val_accuracy"), "epochs": args.epochs,
                   "seconds": sum(line["seconds"] for line in log),
                   "wall_seconds_this_session": time.time() - t_start,
                   "config": cfg, "pretrain_config": pre,
                   "pretrain_epoch": ckpt["epoch"] if pre else None,
                   "pretrain_step": ckpt.get("step", 0) if pre else None,
                   "pretrain_precision": pretrain_precision(ckpt) if pre else None,
                   "commit": files.git_commit(), "used": training.used(sched, log)}
        files.save_json(results, os.path.join(args.out, "results.json"))
        print(f"fine-tune: test accuracy {test_accuracy:.4f} (final epoch of {args.epochs}); "
              f"wrote {args.out}/results.json")
    training.end_distributed()


if __name__ == "__main__":
    cli.main_guard(main)
