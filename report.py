"""The results table, in the shape of SPEC 5, from every results.json under a folder.

    python report.py runs/            # --charts also redraws each run's explained.svg

Each row is one dataset, pretraining target and scale; the paper's numbers (ViT-Tiny, 400
pretraining epochs, one V100) stand beside ours. Band-input rows (finetune.py --input) follow
in a second table: Balestriero & LeCun's supervised-on-a-band experiment.
explained_chart draws pretrain.py's per-band explained variance over epochs.
"""
import glob
import itertools
import json
import math
import os
from xml.sax.saxutils import escape

import cli

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


def line_chart(series, title, subtitle, xlabel, ylabel, low=-0.25, high=1.0, step=0.25):
    """An SVG line chart, as text: series {name: [value at x = 1, 2, ...; None where there is none]},
    coloured from red (the first) to blue (the last), y ticks every `step` with the 0 line dark, a
    legend naming each series. A value beyond [low, high] is drawn at the edge as an open triangle
    pointing off the chart; the log keeps the exact number."""
    width, height, left, right, top, bottom = 600, 340, 64, 180, 50, 50
    pw, ph = width - left - right, height - top - bottom
    n = max(len(values) for values in series.values())
    x = lambda i: left + pw * i / max(n - 1, 1)  # noqa: E731  (value i sits at x = i + 1)
    y = lambda v: top + ph * (high - min(max(v, low), high)) / (high - low)  # noqa: E731
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12">', '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left + pw / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<text x="{left + pw / 2}" y="38" text-anchor="middle">{escape(subtitle)}</text>',
           f'<text x="{left + pw / 2}" y="{height - 12}" text-anchor="middle">{escape(xlabel)}</text>',
           f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>']
    for v in [low + k * step for k in range(round((high - low) / step) + 1)]:
        zero = abs(v) < 1e-9
        svg += [f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                f'stroke="{"black" if zero else "#ddd"}" stroke-width="{1.5 if zero else 1}"/>',
                f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>']
    for i in range(0, n, math.ceil(n / 10)):
        svg += [f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top + ph}" y2="{top + ph + 5}" stroke="black"/>',
                f'<text x="{x(i):.1f}" y="{top + ph + 18}" text-anchor="middle">{i + 1}</text>']
    svg.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    clipped = False
    for k, (name, values) in enumerate(series.items()):
        color = f"hsl({240 * k / max(len(series) - 1, 1):.0f}, 80%, 42%)"
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        for missing, run in itertools.groupby(enumerate(values), key=lambda p: p[1] is None):
            if not missing:  # one polyline per unbroken stretch
                svg.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                           + " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run) + '"/>')
        for i, v in points:
            if low <= v <= high:
                svg.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>')
            else:
                clipped, tip = True, (6 if v < low else -6)
                svg.append(f'<polygon points="{x(i) - 5:.1f},{y(v) - tip:.1f} {x(i) + 5:.1f},{y(v) - tip:.1f} '
                           f'{x(i):.1f},{y(v) + tip:.1f}" fill="white" stroke="{color}" stroke-width="1.5"/>')
        ly = top + 10 + 20 * k
        svg += [f'<line x1="{left + pw + 14}" x2="{left + pw + 38}" y1="{ly}" y2="{ly}" stroke="{color}" '
                'stroke-width="2"/>',
                f'<text x="{left + pw + 44}" y="{ly + 4}">{escape(name)}{"" if points else " (none)"}</text>']
    if clipped:
        svg.append(f'<text x="{left + pw + 14}" y="{top + ph}" font-size="10">open triangle: beyond the axis</text>')
    return "\n".join(svg + ["</svg>\n"])


def explained_chart(logs, path, target):
    """explained.svg: the share of the hidden variance of each spectrum band that the model explains,
    over epochs, from pretrain.py's log rows (bands outside a band target have no line)."""
    rows = [log["explained"] for log in logs if "explained" in log]
    series = {name: [row.get(name) for row in rows] for name in rows[-1]}
    cli.save_text(line_chart(series, "Hidden variance explained, per PCA band", f"target: {target}", "epoch",
                             "share explained (1 = all, 0 = none)"), path)


def main():
    p = cli.Parser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default="runs")
    p.add_argument("--charts", action="store_true", help="also redraw explained.svg of each pretraining run")
    args = p.parse_args()
    for path in sorted(glob.glob(os.path.join(args.folder, "**", "log.jsonl"), recursive=True)) if args.charts else []:
        with open(path) as f:
            logs = [json.loads(line) for line in f]
        run, summary = os.path.dirname(path), os.path.join(os.path.dirname(path), "summary.json")
        target = run  # until the run ends and its summary.json names the target
        if os.path.exists(summary):
            with open(summary) as f:
                target = json.load(f)["target"]
        if any("explained" in log for log in logs):
            explained_chart(logs, os.path.join(run, "explained.svg"), target)
    paths = sorted(glob.glob(os.path.join(args.folder, "**", "results.json"), recursive=True))
    if not paths:
        raise cli.UserError(f"no results.json under {args.folder}: run finetune.py or linprobe.py first")
    results = []
    for path in paths:
        with open(path) as f:
            results.append(json.load(f))
    print(table(results))


if __name__ == "__main__":
    cli.main_guard(main)
