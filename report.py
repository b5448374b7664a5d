"""The results table, in the shape of SPEC 5, from every results.json under a folder.

    python report.py runs/            # --charts also redraws each run's explained.png

Each row is one dataset, pretraining target and scale; the paper's numbers (ViT-Tiny, 400
pretraining epochs, one V100) stand beside ours. Band-input rows (finetune.py --input) follow
in a second table: Balestriero & LeCun's supervised-on-a-band experiment.
explained_chart draws pretrain.py's per-band explained variance over epochs.
"""
import glob
import itertools
import json
import os

import torch

import data

# SPEC 5: (fine-tune, linear probe) test accuracy of the original work.
PAPER = {
    ("stl10", "original"): (0.695, 0.460), ("stl10", "no pretraining"): (0.629, None),
    ("stl10", "bottom 25%"): (0.785, 0.539), ("stl10", "bottom 10%"): (0.704, 0.483),
    ("stl10", "top 75%"): (0.649, 0.398), ("stl10", "top 60%"): (0.650, 0.445),
    ("cifar10", "original"): (0.885, 0.615), ("cifar10", "no pretraining"): (0.813, None),
    ("cifar10", "bottom 25%"): (0.902, 0.638), ("cifar10", "bottom 10%"): (0.922, 0.636),
    ("cifar10", "top 75%"): (0.894, 0.607), ("cifar10", "top 60%"): (0.880, 0.560),
    ("cifar100", "original"): (0.671, 0.370), ("cifar100", "no pretraining"): (0.593, None),
    ("cifar100", "bottom 25%"): (0.682, 0.373), ("cifar100", "top 75%"): (0.643, 0.270),
}


def scale(r):
    """Model and pretraining schedule of a result, in a few words."""
    c = r["pretrain_config"] or r["config"]
    model = f"ViT {c['dim']}x{c['depth']}, patch {c['patch_size']}"
    return model + (f", {c['epochs']} pretrain ep" if r["pretrain_config"] else "")


def cell(r):
    if r is None:
        return "-"
    return f"{r['accuracy']:.3f}" + (f" (kNN {r['knn']:.3f})" if r.get("knn") is not None else "") + \
        f", {r['epochs']} ep"


def paper(value):
    return "-" if value is None else f"{value:.3f}"


def table(results):
    rows, bands = {}, {}
    for r in results:
        if r["eval"] == "finetune" and r.get("input", "original") != "original":
            bands[(r["dataset"], r["input"], r["target"], scale(r))] = r
        else:
            rows.setdefault((r["dataset"], r["target"], scale(r)), {})[r["eval"]] = r
    lines = ["| dataset | target | scale | fine-tune | linear probe | paper fine-tune | paper linear probe |",
             "|---|---|---|---|---|---|---|"]
    for (dataset, target, sc), evals in sorted(rows.items()):
        ft, lp = PAPER.get((dataset, target), (None, None))
        lines.append(f"| {dataset} | {target} | {sc} | {cell(evals.get('finetune'))} | {cell(evals.get('linprobe'))} "
                     f"| {paper(ft)} | {paper(lp)} |")
    if bands:
        lines += ["", "| dataset | classifier input | init | scale | test accuracy |", "|---|---|---|---|---|"]
        for (dataset, band, target, sc), r in sorted(bands.items()):
            lines.append(f"| {dataset} | {band} band | {target} | {sc} | {cell(r)} |")
    return "\n".join(lines)


def line_chart(lines, colors, width=300, height=150, pad=10, low=-0.25):
    """Lines of values in [low, 1] (lists over the same x steps; None leaves a line out) drawn on a
    white image (3, H, W): gridlines at every quarter (dark at 0), one at each x step, a dot per value."""
    img = torch.ones(3, height + 2 * pad, width + 2 * pad)
    n = max(len(values) for values in lines)
    x = lambda t: pad + (t / max(n - 1, 1) * (width - 1)).round().long()  # noqa: E731
    y = lambda v: pad + ((1 - v.clamp(low, 1)) / (1 - low) * (height - 1)).round().long()  # noqa: E731
    img[:, pad:pad + height, x(torch.arange(n))] = 0.9
    for q in torch.arange(low, 1.01, 0.25):
        img[:, y(q), pad:pad + width] = 0.3 if q == 0 else 0.85
    for values, color in zip(lines, colors):
        if None in values:
            continue
        v = torch.tensor(values, dtype=torch.float)
        t = torch.linspace(0, n - 1, 60 * n)  # dense points along the polyline
        i = t.long().clamp(max=max(n - 2, 0))
        along = torch.lerp(v[i], v[(i + 1).clamp(max=n - 1)], t - i)
        for dy, dx in itertools.product((-1, 0, 1), repeat=2):  # a line 3 pixels wide
            img[:, y(along) + dy, x(t) + dx] = color[:, None]
        for dy, dx in itertools.product(range(-3, 4), repeat=2):  # a 7 x 7 dot at each value
            img[:, y(v) + dy, x(torch.arange(n)) + dx] = color[:, None]
    return img


def explained_chart(logs, path):
    """PNG of the variance of each spectrum band the model explains over epochs, from pretrain.py's log rows:
    one line per band, from red (the top, high-variance band) through green to blue (the bottom)."""
    rows = [log["explained"] for log in logs if "explained" in log]
    names = list(rows[-1])
    hues = torch.linspace(0, 2 / 3, len(names)) if len(names) > 1 else torch.zeros(1)
    colors = [0.85 * torch.stack([(6 * h - 3).abs() - 1, 2 - (6 * h - 2).abs(), 2 - (6 * h - 4).abs()]).clamp(0, 1)
              for h in hues]  # hue to RGB
    data.save_png(line_chart([[row.get(name) for row in rows] for name in names], colors), path)


def main():
    p = data.Parser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default="runs")
    p.add_argument("--charts", action="store_true", help="also redraw explained.png of each pretraining run")
    args = p.parse_args()
    for path in sorted(glob.glob(os.path.join(args.folder, "**", "log.jsonl"), recursive=True)) if args.charts else []:
        with open(path) as f:
            logs = [json.loads(line) for line in f]
        if any("explained" in log for log in logs):
            explained_chart(logs, os.path.join(os.path.dirname(path), "explained.png"))
    paths = sorted(glob.glob(os.path.join(args.folder, "**", "results.json"), recursive=True))
    if not paths:
        raise data.UserError(f"no results.json under {args.folder}: run finetune.py or linprobe.py first")
    results = []
    for path in paths:
        with open(path) as f:
            results.append(json.load(f))
    print(table(results))


if __name__ == "__main__":
    data.main_guard(main)
