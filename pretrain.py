"""Pretrain an MAE whose target is the image, or the image rebuilt from a PCA variance band.

    python pretrain.py --dataset cifar10 --target bottom --pct 25

The pretraining images (--images: the train split by default; a --subset of them) live on the
device as one uint8 tensor; each step indexes a batch,
augments it on the device, and projects the *augmented* batch onto the band for the target.
--out DIR receives ckpt.pt, log.jsonl, reconstruction grids and summary.json; --resume continues.
"""
import os
import time

import torch

import cli
import files
import data
import dataset_pca
import outfolder
import pca_project
import report
import training
from checkpoints import build_model
from features import extract_features, knn_accuracy
from model import MASKINGS, default_patch_size, get_lr, grid_cell, normalize_patches, param_groups
from monitor import band_monitor, save_grid, shown

BAND_MONITOR_LEGEND = ("; explained: the share of each PCA band's hidden variance that the model's "
                       "guess recovers (1 all of it, 0 no more than the mean image, n/a a band "
                       "outside the target)")
# How often the monitors run, their bands and the copies kept: not part of the run's config, so a
# resume may change them (the kNN monitor's image counts are: its figures depend on them).
RUNTIME_FLAGS = training.RUNTIME_FLAGS | {"eval_every", "band_edges", "keep_epochs"}


def get_args(argv=None):
    p = cli.parser(__doc__.splitlines()[0])  # the data flags every script takes, and --device
    # the target and the corruption
    p.add_argument("--target", default="original", choices=("original", "bottom", "top"))
    p.add_argument("--pct", type=cli.within(0, 100),
                   help="variance share of the target band in percent")
    p.add_argument("--images", choices=("train", "unlabeled", "train+unlabeled"),
                   help="what it pretrains on (and fits its PCA on): default STL-10's "
                        "train+unlabeled, every other dataset's train split; the kNN monitor "
                        "uses the labelled train and test splits")
    p.add_argument("--aug", default="flip", choices=data.AUGMENTATIONS,
                   help="none reproduces the original work; the PCA is fitted on the views it "
                        "makes, so that a band holds its share of what the model sees")
    p.add_argument("--masking", default="random", choices=MASKINGS)
    p.add_argument("--corruption", choices=("gaussian",),
                   help="gaussian: no masking; the encoder sees every patch of the image plus "
                        "--sigma times N(0, 1) noise, and the loss covers every patch "
                        "(default: masking)")
    p.add_argument("--sigma", type=cli.rate,
                   help="noise level of --corruption gaussian (pixels in [0, 1])")
    p.add_argument("--mask-ratio", type=cli.within(0, 1), default=0.75,
                   help="share of the patches masked (patch maskings)")
    p.add_argument("--pca-mask-share", type=cli.within(0, 1), default=0.2,
                   help="with --masking pca: variance share of the principal components hidden "
                        "from each image")
    p.add_argument("--norm-pix-loss", action="store_true",
                   help="normalise each target patch (MAE paper)")
    # the model: ViT-Tiny and its decoder (docs/method.md, 3)
    p.add_argument("--attention", choices=("wave",),
                   help="wave: Wave-ViT's attention in the encoder (default: plain)")
    p.add_argument("--patch-size", type=cli.side,
                   help="default: about 16 x 16 patches (2 at 32 px, 6 at 96 px)")
    sizes = {"dim": (192, cli.width), "depth": (12, cli.layers), "heads": (3, cli.layers),
             "decoder-dim": (192, cli.width), "decoder-depth": (4, cli.layers),
             "decoder-heads": (3, cli.layers)}
    for name, (size, kind) in sizes.items():
        p.add_argument("--" + name, type=kind, default=size)
    # the schedule (docs/method.md, 4), the monitors and the copies
    training.add_flags(p, epochs=400, warmup=0.1, batch_size=512, blr=1.5e-4, out="runs/pretrain")
    p.add_argument("--eval-every", type=cli.positive, default=10,
                   help="epochs between kNN monitor and grids")
    p.add_argument("--knn-train", type=cli.positive, default=5000,
                   help="train images in the kNN monitor")
    p.add_argument("--knn-test", type=cli.positive, default=1000,
                   help="test images in the kNN and band monitors")
    p.add_argument("--band-edges", type=float, nargs="*", default=[10, 25],
                   help="cumulative variance shares (percent, from the bottom) cutting the "
                        "spectrum into the bands of the monitor; 10 25: top 75%%, 10-25%%, "
                        "bottom 10%%; none given: no band monitor")
    p.add_argument("--keep-epochs", type=cli.count, nargs="*", default=[], metavar="E",
                   help="keep a copy of the model (weights, config, log) after each epoch E as "
                        "OUT/keep-EEEE.pt; 0: the initialisation. linprobe.py, finetune.py and "
                        "pca_project.py --ckpt take them")
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(p, args):
    """One line and exit 2 for flags that do not go together, before any data is read."""
    training.check_schedule(p, args)
    args.images = args.images or data.default_images(args.dataset)
    if args.images != "train" and "unlabeled" not in data.SPLITS.get(args.dataset, ()):
        p.error(f"--images {args.images}: {args.dataset} has no unlabelled images; pass --images train")
    if any(e > args.epochs for e in args.keep_epochs):
        p.error(f"--keep-epochs {max(args.keep_epochs)} is past the run's end "
                f"({args.epochs} epochs)")
    if args.attention == "wave" and args.masking != "pca" and not args.corruption:
        p.error("--attention wave needs the whole patch grid: its BatchNorm would learn from the "
                "zeros of the masked patches; pretrain it with --masking pca or "
                "--corruption gaussian")
    if (args.target == "original") != (args.pct is None):
        p.error("--pct selects the band: give it with --target bottom or top, and only then")
    edges = args.band_edges
    if any(not 0 < e < 100 for e in edges) or sorted(set(edges)) != edges:
        p.error("--band-edges must be increasing percentages in (0, 100)")
    noise = args.corruption is not None
    if noise != (args.sigma is not None) or noise and args.masking != "random":
        p.error("--corruption gaussian takes --sigma and no --masking; --sigma only goes with it")
    if args.masking == "grid" and grid_cell(args.mask_ratio) is None:
        accepted = ", ".join(f"{1 - 1 / s**2:.10g}" for s in (2, 3, 4))
        p.error("--masking grid keeps one patch of every s x s cell: --mask-ratio 1 - 1/s^2 to 6 "
                f"decimals ({accepted}, ...), not {args.mask_ratio:g}")


@torch.no_grad()
def trivial_guess(model, x_pre, pcs, args):
    """The guess of nothing whose loss each log line carries beside the model's, (1, T, p*p*C): the
    mean target patch over the stored pretraining images. That is their mean image (bands and
    hidden components keep it); the training views' mean differs from it by what the augmentation
    moves (a flip: a mean square of 1.2e-6 on the CIFAR-10 JPEG copy, against its trivial loss of
    0.0614). With norm-pix loss, the mean of the normalised target patches, as the mean image
    normalised is no mean of them."""
    if not args.norm_pix_loss:
        return model.patchify(data.mean_image(x_pre)[None])
    g = torch.Generator(x_pre.device).manual_seed(0)
    total = 0
    for chunk in x_pre.split(1024):
        hidden = None
        if args.masking == "pca":
            u = torch.rand(len(chunk), len(pcs["share"]), device=x_pre.device, generator=g)
            hidden = pca_project.hide_components(pcs["share"], args.pca_mask_share, u)
        _, target = data.make_batch(chunk, "none", pcs, hidden=hidden)
        total = total + normalize_patches(model.patchify(target)).sum(0)
    return (total / len(x_pre))[None]


def header(device, sched, args, x_pre, subset, band_desc, n_params):
    """The run's first line: where it runs, the data, the target, the model, the masking, the
    schedule."""
    processes = f" x {sched.world} processes" if sched.world > 1 else ""
    shape = "x".join(map(str, x_pre.shape[1:]))
    if args.corruption:
        corruption = f"gaussian noise {args.sigma:g}"
    else:
        share = args.pca_mask_share if args.masking == "pca" else args.mask_ratio
        corruption = f"{args.masking} masking {share:g}"
    decoder = f"{args.decoder_dim}x{args.decoder_depth}"
    model = f"MAE dim {args.dim} depth {args.depth}, decoder {decoder}, patch {args.patch_size}"
    parts = [f"device {device}{processes}",
             f"{args.dataset}: {len(x_pre):,} {args.images} images {shape}{subset}",
             f"target: {band_desc}", f"{model}, {corruption}", f"{n_params / 1e6:.2f}M parameters",
             f"{args.epochs} epochs of {sched.steps_per_epoch} steps"]
    return " | ".join(parts)


def main(argv=None):
    args = get_args(argv)
    device = training.setup_distributed(cli.device(args.device))
    # The model first: all that the arguments alone can refuse is refused before any data is read.
    image_shape = data.image_shape(args.dataset, args.image_size)
    args.image_size = image_shape[-1]  # the size used (a fixed-size dataset ignores the flag)
    args.patch_size = args.patch_size or default_patch_size(image_shape[-1])
    cfg = {k: v for k, v in vars(args).items() if k not in RUNTIME_FLAGS}
    cfg["image_shape"] = list(image_shape)
    cfg["data_dir"] = os.path.abspath(args.data_dir)  # where evaluations find the data by default
    fits_pca = args.target != "original" or args.masking == "pca" or args.band_edges
    if args.aug != "none" and fits_pca:
        cfg["pca_fit"] = "views"  # its target, masking or monitor: the PCA of its training views
    torch.manual_seed(args.seed)
    model = build_model(cfg, image_shape).to(device)
    outfolder.check_out(args.out, "pretrain.py", cfg, args.resume,  # before any data is read
                        inputs=data.sources(args.dataset, args.data_dir))
    data.num_classes(args.dataset, args.data_dir)  # the kNN monitor tells classes apart
    where = (args.data_dir, args.image_size, args.download)
    x_train, y_train = data.load(args.dataset, "train", *where)  # labelled: the kNN monitor's
    x_test, y_test = data.load(args.dataset, "test", *where)
    x_pre = x_train if args.images == "train" else data.images(args.dataset, args.images, *where)
    labelled = (y_train, x_test, y_test) if x_pre is x_train else (x_train, y_train, x_test, y_test)
    cfg["data_sha1"] = data.identity(x_pre, *labelled)  # --resume: the same data
    pick, subset = data.subset(args.subset, len(x_pre))
    if pick is not None:  # a quick try: images spread over the split
        x_pre = x_pre[pick]

    # The PCA: for a band target, PCA masking and the band monitor.
    pcs = input_share = None
    band_desc = "the image"
    if fits_pca:
        fit, _ = dataset_pca.load_or_fit(args.dataset, args.data_dir, args.image_size,
                                         download=args.download, device=device, images=args.images,
                                         aug=args.aug)
        band = None
        if args.target != "original":
            band = dataset_pca.band_of(fit, args.target, args.pct)
        bands = pca_project.spectrum_bands(fit, args.band_edges) if args.band_edges else ()
        pcs = pca_project.on_device(fit, device, band, bands, full=args.masking == "pca")
        if band is not None:
            band_desc = pca_project.band_name(fit, args.target, args.pct)
            # what the band holds of the variance of the inputs themselves, augmented as in training
            sample = x_pre[data.spread(len(x_pre), 5000)]
            u = torch.rand(len(sample), 5, generator=torch.Generator().manual_seed(0))
            views = data.augment(sample.float() / 255, args.aug, u).to(device)
            input_share = pca_project.band_share(views, pcs)
            band_desc = band_desc[:-1] + f"; {100 * input_share:.2f}% of the training inputs' " \
                f"under --aug {args.aug})"
    if args.masking == "pca":
        band_desc = f"the hidden components' part of {band_desc}"

    # AdamW, built the same way on every device (fused: CUDA and CPU); the loop sets its lr.
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), betas=(0.9, 0.95),
                                  fused=True)
    sched = training.schedule(args, len(x_pre))  # global batch, this process's slice, steps, lr
    precision = training.precision(args, device)  # fp32, or --amp's bf16 or fp16
    # fp16: the loss scaled so that small gradients survive (a step whose gradients overflowed is
    # skipped); bf16 and fp32 need none, and the scaler passes their steps through
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    start_epoch, start_step, resumed_sums, log = training.claim_or_resume(
        args.out, cfg, model, optimizer, args.resume, scaler)
    if 0 in args.keep_epochs and not (start_epoch or start_step):
        training.keep_copy(args.out, model, cfg, epoch=0, log=[])
    step_model = training.wrap(model, args.compile)  # DDP under torchrun, --compile
    autocast = torch.autocast(device.type, training.DTYPES[precision], enabled=precision != "fp32")
    n_params = sum(p.numel() for p in model.parameters())
    if training.main_process():
        notes = training.notes(args, sched, precision, start_epoch, start_step)
        print(header(device, sched, args, x_pre, subset, band_desc, n_params) + notes)
        print("each epoch: the loss against the trivial guess's (the mean target patch; below 1x "
              "the model knows more)" + (BAND_MONITOR_LEGEND if args.band_edges else ""))

    x_pre = x_pre.to(device)
    # Fixed subsets for the monitors: kNN on class tokens, the band monitor, the grids.
    knn_train = data.spread(len(x_train), args.knn_train)
    x_knn = x_train[knn_train].to(device)
    knn_test = data.spread(len(x_test), args.knn_test)
    grid_images = x_test[data.spread(len(x_test), 8)].to(device)  # over the classes
    x_monitor = x_test[knn_test].to(device)
    mean_guess = trivial_guess(model, x_pre, pcs, args)
    bad_step = torch.full((), -1, device=device)  # the first step whose loss was not finite
    last_epoch = args.epochs if args.stop_epoch is None else args.stop_epoch
    t_start = time.time()

    for epoch in range(start_epoch, last_epoch):
        model.train()
        t_epoch = time.time()
        first = start_step if epoch == start_epoch else 0  # a resumed epoch goes on mid-way
        # the sums over the epoch's steps of the loss and of the trivial guess's loss
        sums = resumed_sums.to(device) if first else torch.zeros(2, device=device)
        perm = training.permutation(len(x_pre), args.seed, epoch, device)
        steps = training.progress(first, sched.steps_per_epoch, epoch, args.epochs, sums,
                                  sched.batch_size)
        for i in steps:
            step = epoch * sched.steps_per_epoch + i
            # the batch: this process's slice of the global batch's images
            idx = perm[i * sched.batch_size:(i + 1) * sched.batch_size][sched.local]
            lr = get_lr(step, sched.peak_lr, sched.warmup_steps, sched.total_steps)
            training.set_lr(optimizer, lr)
            # the step's random numbers, from (seed, step) alone: a resumed run draws what it would
            # have, and every process those of the whole global batch (training.draw)
            g = torch.Generator(device).manual_seed(args.seed * 1_000_003 + step)
            u_aug = None
            if args.aug != "none":  # each image's crop box and flip
                u_aug = training.draw(torch.rand, sched, 5, device=device, generator=g)
            hidden = scores = None
            if args.masking == "pca":  # the components hidden from each image
                u_pca = training.draw(torch.rand, sched, len(pcs["share"]), device=device,
                                      generator=g)
                hidden = pca_project.hide_components(pcs["share"], args.pca_mask_share, u_pca)
            elif not args.corruption:  # the patches hidden from each image
                scores = model.mask_scores(sched.batch_size, device, generator=g)[sched.local]
            # The input and target, outside autocast: a band target is made in float32
            # (pca_project.exact_float32 makes sure).
            x, target = data.make_batch(x_pre[idx], args.aug, pcs, u_aug, hidden)
            if args.corruption:  # gaussian: every patch seen, noisy; the target stays clean
                noise = training.draw(torch.randn, sched, *x.shape[1:], device=device, generator=g)
                x = x + args.sigma * noise
            # forward, backward, step
            with autocast:
                loss, _, mask = step_model(x, target, scores=scores)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            # the epoch's sums and the NaN watch, on the device: the host never waits for it
            with torch.no_grad():
                trivial = model.loss(mean_guess.expand(len(x), -1, -1), target, mask)
            sums += torch.stack([loss.detach(), trivial.float()])
            bad_step = training.first_bad_step(bad_step, loss.detach(), step)
            if training.mid_epoch_checkpoint(step, sched, args.ckpt_every):  # never of a NaN
                training.stop_if_not_finite(bad_step, args.out)
                training.save_checkpoint(args.out, model, optimizer, cfg, epoch, step=i + 1,
                                         loss_sum=sums, log=log, scaler=scaler)

        training.stop_if_not_finite(bad_step, args.out)
        line = training.epoch_line(epoch, sums, ("loss", "trivial_loss"), sched, first, lr,
                                   precision,
                                   seconds=time.time() - t_epoch)
        line["trivial_by"] = report.TRIVIAL_BY
        if training.main_process() and args.band_edges:
            t_monitor = time.time()
            line["explained"] = band_monitor(model, x_monitor, pcs, args.pca_mask_share,
                                             args.sigma)
            line["explained_by"] = report.explained_by(cfg)
            line["monitor_seconds"] = time.time() - t_monitor
        evaluate = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs
        if training.main_process() and evaluate:
            amp = {"amp": precision != "fp32", "dtype": training.DTYPES[precision]}
            feats_train = extract_features(model.encoder, x_knn, **amp)
            feats_test = extract_features(model.encoder, x_monitor, **amp)
            line["knn"] = knn_accuracy(feats_train, y_train[knn_train].to(device), feats_test,
                                       y_test[knn_test].to(device))
            rows = shown(model, grid_images, pcs, args.pca_mask_share, args.sigma)
            save_grid(rows, os.path.join(args.out, f"recon-{epoch + 1:04d}.png"))
        log.append(line)
        if epoch + 1 in args.keep_epochs:
            training.keep_copy(args.out, model, cfg, epoch=epoch + 1, log=log)
        training.save_epoch(args.out, model, optimizer, cfg, log, args.epochs, scaler)  # ckpt, log

    if training.main_process() and len(log) < args.epochs:
        print(training.stopped(log, args.epochs))
    elif training.main_process():
        final_knn = next((line["knn"] for line in reversed(log) if "knn" in line), None)
        summary = {"config": cfg, "target": band_desc, "input_share": input_share,
                   "parameters": n_params,
                   "epochs": args.epochs,
                   # the monitors' images too: --knn-train and --knn-test cut to the splits
                   "used": training.used(sched, log) | {"knn_train": len(knn_train),
                                                        "knn_test": len(knn_test)},
                   "final_loss": log[-1]["loss"], "final_knn": final_knn,
                   "final_explained": log[-1].get("explained"),
                   "train_seconds": sum(line["seconds"] for line in log),
                   "wall_seconds_this_session": time.time() - t_start}
        report.curves_chart(log, os.path.join(args.out, "curves.svg"), band_desc, cfg)
        if args.band_edges:
            report.explained_chart(log, os.path.join(args.out, "explained.svg"), band_desc)
        # written last: a run is ended (outfolder.ended_config) only once all it writes is written
        files.save_json(summary, os.path.join(args.out, "summary.json"))
        print(f"done: loss {summary['final_loss']:.4f}, kNN {final_knn:.3f}; wrote {args.out}/")
    training.end_distributed()


if __name__ == "__main__":
    cli.main_guard(main)
