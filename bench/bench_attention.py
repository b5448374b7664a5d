"""Wave-ViT's attention against plain attention: training-step time, side by side in one run.

    .venv/bin/python bench/bench_attention.py [--batch-size 128] [--rounds 5]

A fine-tuning step (forward, backward, AdamW) of the same ViT classifier with each attention, and an
MAE pretraining step (75% of the patches masked), on CIFAR-shaped batches: 3 x 32 x 32, patch 4
(an 8 x 8 grid), dim 128, depth 6, 4 heads (the CIFAR-10 study's encoder), and ViT-Tiny at patch 2.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_pretrain import interleaved  # noqa: E402
from model import MAE, Classifier, Encoder  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"mean of {args.rounds} interleaved rounds")
    x, y = torch.rand(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))
    for patch, dim, depth, heads in ((4, 128, 6, 4), (2, 192, 12, 3)):
        steps = {}
        for attention in (None, "wave"):
            clf = Classifier(Encoder(32, patch, 3, dim, depth, heads, attention=attention), 10)
            mae = MAE(32, patch, 3, dim, depth, heads, 128, 2, 4, attention=attention)
            for name, net, loss in (("fine-tune", clf, lambda net: F.cross_entropy(net(x), y)),
                                    ("pretrain", mae, lambda net: net(x, x)[0])):
                opt = torch.optim.AdamW(net.parameters(), fused=True)

                def step(net=net, opt=opt, loss=loss):
                    opt.zero_grad(set_to_none=True)
                    loss(net).backward()
                    opt.step()
                steps[name, attention] = step
        names = list(steps)
        seconds = dict(zip(names, interleaved([steps[k] for k in names], args.rounds)))
        for name in ("fine-tune", "pretrain"):
            plain, wave = seconds[name, None], seconds[name, "wave"]
            print(f"patch {patch}, dim {dim}, depth {depth}, {name} step: "
                  f"plain {1e3 * plain:.0f} ms, wave {1e3 * wave:.0f} ms, "
                  f"wave / plain {wave / plain:.2f}x")


if __name__ == "__main__":
    main()
