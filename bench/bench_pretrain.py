"""Pretraining throughput on this machine, each figure beside its reference from the same run.

    .venv/bin/python bench/bench_pretrain.py [--batch-size 64] [--steps 5]

1. pretrain.py's full step (index the uint8 split, augment, project onto the bottom-25% band,
   forward, backward, AdamW) against the bare model step on pre-made batches;
2. the FLOP/s that full step achieves against a plain fp32 matmul (2048^3);
both in eager mode and with --compile (torch.compile, which fuses the memory-bound
element-wise work);
3. bf16 autocast (--amp) against fp32 steps, for ViT-Tiny and for the laptop-scale model;
4. batched augmentation (data.augment) against a torchvision PIL pipeline through a DataLoader.
ViT-Tiny defaults on CIFAR-shaped images (real Fashion-MNIST pictures, 3 x 32 x 32, patch 2).
"""
import argparse
import os
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import pca_project  # noqa: E402
import pretrain  # noqa: E402
from bench_pca import cifar_shaped  # noqa: E402
from checkpoints import build_model  # noqa: E402


def train_step(model, optimizer, x, target, autocast):
    """pretrain.py's forward, backward and step."""
    with autocast:
        loss = model(x, target)[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def interleaved(fns, rounds):
    """Seconds per call of each function, called in turn so that machine noise hits all alike."""
    for fn in fns:
        fn()  # warm-up
    total = [0.0] * len(fns)
    for _ in range(rounds):
        for j, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            total[j] += time.perf_counter() - t0
    return [t / rounds for t in total]


class PILImages(torch.utils.data.Dataset):
    def __init__(self, x, transform):
        self.x, self.transform = x, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.transform(v2.functional.to_pil_image(self.x[i]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    x_train = cifar_shaped(10000)
    pca = pca_project.fit(x_train)
    pcs = pca_project.on_device(pca, "cpu", pca_project.band_slice(pca, "bottom", 25))
    cfg = vars(pretrain.get_args(["--patch-size", "2"])) | {"patch_size": 2}
    model = build_model(cfg, (3, 32, 32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=True)
    autocast, b = torch.autocast("cpu", enabled=False), args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu "
          f"({torch.backends.cpu.get_cpu_capability()}); ViT-Tiny MAE "
          f"({sum(q.numel() for q in model.parameters()) / 1e6:.2f}M parameters), batch {b}, "
          f"{args.steps} steps each")

    x_pre, t_pre = data.make_batch(x_train[:b], "crop", pcs)
    perm = torch.randperm(len(x_train))
    with FlopCounterMode(display=False) as counter:
        train_step(model, opt, x_pre, t_pre, autocast)
    flops = counter.get_total_flops()
    print(f"model FLOPs/image  {flops / b / 1e9:8.2f} GFLOP "
          "(forward + backward, counted by FlopCounterMode)")

    for name, step_model in (("eager", model), ("compiled", torch.compile(model))):
        def bare():
            train_step(step_model, opt, x_pre, t_pre, autocast)

        def full():  # as in pretrain.py's loop: index the uint8 split, augment, project, step
            i = torch.randint(0, len(x_train) // b, ()).item()
            x, target = data.make_batch(x_train[perm[i * b:(i + 1) * b]], "crop", pcs)
            train_step(step_model, opt, x, target, autocast)

        a, m = torch.randn(2048, 2048), torch.randn(2048, 2048)
        t_bare, t_full, t_matmul = interleaved([bare, full, lambda: a @ m], args.steps)
        matmul = 2 * 2048**3 / t_matmul
        print(f"{name:8s} bare model step {b / t_bare:6.1f} images/s, "
              f"full pretrain step {b / t_full:6.1f} images/s "
              f"= {t_bare / t_full:.0%} (goal >= 90%); {flops / t_full / 1e9:.1f} GFLOP/s = "
              f"{flops / t_full / matmul:.0%} of fp32 matmul at {matmul / 1e9:.1f} GFLOP/s "
              "(goal >= 50%)")

    # bf16 autocast against fp32, the same step side by side: ViT-Tiny at patch 2 and the
    # laptop-scale model.
    laptop = build_model(vars(pretrain.get_args("--patch-size 4 --dim 64 --depth 4 --heads 4 "
                                                "--decoder-dim 64 --decoder-depth 2 "
                                                "--decoder-heads 4".split())), (1, 28, 28))
    x_fm = data.load("fashion-mnist", "train")[0][:256].float() / 255
    for name, m, x, t in (("ViT-Tiny, patch 2, batch %d" % b, model, x_pre, t_pre),
                          ("laptop scale (dim 64, depth 4, patch 4), batch 256",
                           laptop, x_fm, x_fm)):
        o = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=True)
        fp32, bf16 = (torch.autocast("cpu", torch.bfloat16, enabled=on) for on in (False, True))
        t32, t16 = interleaved([lambda: train_step(m, o, x, t, fp32),
                                lambda: train_step(m, o, x, t, bf16)], args.steps)
        print(f"{name}: fp32 {len(x) / t32:,.1f} images/s, "
              f"bf16 autocast {len(x) / t16:,.1f} images/s = {t32 / t16:.2f}x")

    n = 4096
    xb = x_train[:n]
    pil = v2.Compose([v2.RandomResizedCrop(32, scale=(0.2, 1.0), antialias=True),
                      v2.RandomHorizontalFlip(), v2.PILToTensor(),
                      v2.ToDtype(torch.float32, scale=True)])
    loader = torch.utils.data.DataLoader(PILImages(xb, pil), batch_size=256, num_workers=2,
                                         persistent_workers=True)

    def batched():  # in pretrain.py's batches of 512
        for i in range(0, n, 512):
            data.augment(xb[i:i + 512].float().div_(255), "crop")

    t_batched, t_pil = interleaved([batched, lambda: [_ for _ in loader]], 3)
    print(f"augmentation (crop + flip, {n} images): batched on the tensor, 512 at a time, "
          f"{n / t_batched:,.0f} images/s, PIL transforms in a DataLoader (2 workers) "
          f"{n / t_pil:,.0f} images/s: {t_pil / t_batched:.0f}x (goal >= 20x)")


if __name__ == "__main__":
    main()
