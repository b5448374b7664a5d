"""Linear probe of a pretrained encoder: frozen features, BatchNorm without affine + linear head,
SGD.

    python linprobe.py --ckpt runs/pretrain/ckpt.pt --dataset cifar10

Features are extracted once for train and test (eval mode, no gradients; bf16 with --amp, the
default on CUDA) and the head trains on them in memory. Reports the final epoch's test accuracy,
never the best epoch's, and a kNN accuracy (k = 20, cosine) on the same features."""
import hashlib
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import cli
import files
import data
import outfolder
import training
from checkpoints import data_note, data_of, load_pretrained, pretrained
from features import extract_features, knn_accuracy
from model import get_lr
from report import pretrain_precision, target_name


def get_args(argv=None):
    # the data flags every script takes (by default the checkpoint's data), and --device
    p = cli.parser(__doc__.splitlines()[0], data_from_ckpt=True)
    p.add_argument("--ckpt", type=cli.path, required=True, help="a pretrain.py checkpoint")
    p.add_argument("--pool", default="cls", choices=("cls", "mean"),
                   help="class token or mean patch token")
    training.add_flags(p, epochs=90, warmup=10 / 90, batch_size=256, blr=0.1, out="runs/linprobe",
                       head_only=True)
    args = p.parse_args(argv)
    training.check_schedule(p, args)
    return args


def train_probe(feats, y, test_feats, test_y, classes, epochs, warmup_epochs, batch_size, lr,
                seed=0):
    """BatchNorm1d(affine=False) + Linear trained by SGD (momentum 0.9, no weight decay, cosine
    schedule to the peak lr, the recipe's blr * batch_size / 256); returns (final test accuracy,
    per-epoch log)."""
    torch.manual_seed(seed)
    head = nn.Sequential(nn.BatchNorm1d(feats.shape[1], affine=False, eps=1e-6),
                         nn.Linear(feats.shape[1], classes)).to(feats.device)
    nn.init.trunc_normal_(head[1].weight, std=0.01)
    nn.init.zeros_(head[1].bias)
    steps = len(feats) // batch_size
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    log = []
    for epoch in tqdm(range(epochs), desc="linear probe", leave=False, disable=None):
        perm = torch.randperm(len(feats), device=feats.device)
        loss_sum = torch.zeros((), device=feats.device)
        for i in range(steps):
            step_lr = get_lr(epoch * steps + i, lr, warmup_epochs * steps, epochs * steps)
            optimizer.param_groups[0]["lr"] = step_lr
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(head(feats[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        log.append({"epoch": epoch + 1, "loss": loss_sum.item() / steps})
    head.eval()
    with torch.no_grad():
        accuracy = (head(test_feats).argmax(1) == test_y).float().mean().item()
    return accuracy, log


def tensors_sha1(ckpt):
    """What identifies a checkpoint for a probe: its weights, not its file's bytes (a checkpoint
    made again, on a new machine, is the same checkpoint) nor its config (which gains keys as the
    code does)."""
    h = hashlib.sha1()
    for name, t in ckpt["model"].items():
        h.update(name.encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main(argv=None):
    args = get_args(argv)
    t0 = time.time()
    device = cli.device(args.device)
    args.amp_dtype = training.amp_dtype(args, device)  # the config: --amp's dtype, given or not
    # the probe's config: the flags that change its result (with --amp: bf16 features), not the
    # checkpoint's path but, below, its bytes
    left_out = (training.RUNTIME_FLAGS - {"amp", "amp_dtype"}) | {"ckpt"}
    cfg = {k: v for k, v in vars(args).items() if k not in left_out}
    # committed results have no checkpoints: a probe that ended has ended without one
    if not os.path.lexists(args.ckpt):
        known = cfg | {"image_size": None}  # the checkpoint's size, not known without it
        outfolder.skip_if_ended(args.out, known, args.resume)
    ckpt = load_pretrained(args.ckpt)
    pre = ckpt["config"]
    data_used, taken = data_of(pre, args.dataset, args.data_dir, args.image_size)
    dataset = data_used["dataset"]
    # the encoder first: images it cannot take are refused before any data is read
    shape = data.image_shape(dataset, data_used["image_size"])
    encoder = pretrained(ckpt, shape, args.ckpt).encoder.to(device)
    cfg |= {"dataset": dataset, "image_size": shape[-1], "tensors_sha1": tensors_sha1(ckpt)}
    outfolder.check_out(args.out, "linprobe.py", cfg, args.resume, "features.pt",  # before the data
                        inputs=data.sources(dataset, data_used["data_dir"]))
    classes = data.num_classes(dataset, data_used["data_dir"])
    where = (data_used["data_dir"], data_used["image_size"], args.download)
    x_train, y_train = data.load(dataset, "train", *where)
    x_test, y_test = data.load(dataset, "test", *where)
    print(f"device {device} | linear probe of {args.ckpt} (pretrained on {pre['dataset']}, "
          f"target {target_name(pre)}) on {dataset}: {len(x_train):,} train / {len(x_test):,} "
          f"test images, {args.pool} features{data_note(data_used, taken)}")

    # Features once, saved in OUT/features.pt with what made them (the checkpoint's and the images'
    # bytes, the pool, the image size): --resume reuses them only for the very same inputs, and the
    # head's training is seeded, so it ends with the same weights and accuracy.
    cfg["data_sha1"] = data.identity(x_train, y_train, x_test, y_test)
    precision = training.precision(args, device)  # the features': --amp's is on with CUDA
    state = outfolder.claim_out(args.out, cfg, args.resume, "features.pt")
    if state is not None:
        feats, test_feats = state["train"].to(device), state["test"].to(device)
        precision = state.get("precision")  # what they were made in (older files did not say)
    else:
        amp = {"amp": precision != "fp32", "dtype": training.DTYPES[args.amp_dtype]}
        feats = extract_features(encoder, x_train.to(device), args.pool, **amp)
        test_feats = extract_features(encoder, x_test.to(device), args.pool, **amp)
        files.save_atomic({"config": cfg, "precision": precision, "train": feats.cpu(),
                           "test": test_feats.cpu()}, os.path.join(args.out, "features.pt"))
    y_train, y_test = y_train.to(device), y_test.to(device)
    knn = knn_accuracy(feats, y_train, test_feats, y_test)
    batch_size = min(args.batch_size, len(feats))  # at most the train split; recorded as used
    lr = args.blr * batch_size / 256
    accuracy, log = train_probe(feats, y_train, test_feats, y_test, classes, epochs=args.epochs,
                                warmup_epochs=args.warmup_epochs, batch_size=batch_size, lr=lr,
                                seed=args.seed)

    results = {"dataset": dataset, "target": target_name(pre), "eval": "linprobe",
               "accuracy": accuracy, "knn": knn, "epochs": args.epochs,
               "pretrain_epoch": ckpt["epoch"], "pretrain_step": ckpt.get("step", 0),
               "pretrain_precision": pretrain_precision(ckpt),
               "seconds": time.time() - t0,
               "final_loss": log[-1]["loss"],
               "config": cfg, "pretrain_config": pre, "commit": files.git_commit(),
               "used": {"batch_size": batch_size, "peak_lr": lr, "precision": precision}}
    files.save_json(results, os.path.join(args.out, "results.json"))
    print(f"linear probe: test accuracy {accuracy:.4f} (final epoch of {args.epochs}), "
          f"kNN {knn:.4f}; wrote {args.out}/results.json")


if __name__ == "__main__":
    cli.main_guard(main)
