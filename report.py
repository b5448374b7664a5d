"""The results table, in the shape of SPEC 5, from every results.json under a folder.

    python report.py runs/

Each row is one dataset, pretraining target and scale; the paper's numbers (ViT-Tiny, 400
pretraining epochs, one V100) stand beside ours. Band-input rows (finetune.py --input) follow
in a second table: Balestriero & LeCun's supervised-on-a-band experiment.
"""
import glob
import json
import os

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


def main():
    p = data.Parser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default="runs")
    args = p.parse_args()
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
