"""The results table, in the shape of SPEC 5, from every results.json under a folder.

    python report.py runs/            # --charts also redraws each run's explained.svg
    python report.py results/cifar10-jpeg --as cifar10   # an image folder holding CIFAR-10

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
import pathlib
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
    ("cifar100", "bottom 25%"): (0.682, 0.373), ("cifar100", "top 75%"): (0.643, 0.270)}


def target_name(cfg):
    """How results name a pretraining target: original, bottom 25%, top 75%, and what else sets a
    run apart (norm-pix loss, a masking other than random, PCA masking or noise)."""
    name = "original" if cfg["target"] == "original" else f"{cfg['target']} {cfg['pct']:g}%"
    if cfg.get("norm_pix_loss"):
        name += ", norm-pix loss"
    if cfg.get("corruption"):
        return name + f", gaussian noise {cfg['sigma']:g}"
    masking = cfg.get("masking", "random")
    if masking == "pca":
        return name + f", PCA masking {100 * cfg['pca_mask_share']:g}%"
    return name + (f", {masking} masking" if masking != "random" else "")


def scale(r):
    """Model and pretraining schedule of a result, in a few words, and the (schedule, epoch) to sort
    by."""
    c = r["pretrain_config"] or r["config"]
    model = f"ViT {c['dim']}x{c['depth']}, patch {c['patch_size']}" + (", wave attention" if c.get("attention") else "")
    if not r["pretrain_config"]:
        return model, (0, 0)
    done = r.get("pretrain_epoch", c["epochs"])  # a copy kept during the run (pretrain.py --keep-epochs)
    words = f", {c['epochs']} pretrain ep" if done == c["epochs"] else f", pretrain ep {done} of {c['epochs']}"
    return model + words, (c["epochs"], done)


FOLDER = " (image folder)"  # how a row of `report.py --as` names its dataset


# What may differ between runs gathered in one cell: the seed, and where the files were.
SEEDLESS = {"seed", "ckpt", "ckpt_sha1", "out", "resume", "data_dir", "device", "download"}


def seedless(config):
    return json.dumps({k: v for k, v in (config or {}).items() if k not in SEEDLESS}, sort_keys=True)


def mean_spread(values):
    """The mean, and with several runs the spread (sample standard deviation) and their count."""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.3f}"
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.3f} ± {sd:.3f} (n={len(values)})"


def cell(results):
    """A cell's results, those that differ only by seed aggregated (never one of them kept), others
    apart."""
    groups = {}
    for r in results:
        groups.setdefault(seedless(r.get("config")) + seedless(r.get("pretrain_config")), []).append(r)
    return "; ".join(mean_spread([r["accuracy"] for r in g]) + (
        f" (kNN {mean_spread([r['knn'] for r in g])})" if all(r.get("knn") is not None for r in g) else "")
        + f", {g[0]['epochs']} ep" for g in groups.values()) or "-"


def table(results):
    rows, bands = {}, {}
    for r in results:
        if r["eval"] == "finetune" and r.get("input", "original") != "original":
            bands.setdefault((r["dataset"], r["input"], r["target"], scale(r)[0]), []).append(r)
        else:  # one row per pretraining (or from-scratch) config; its seeds are gathered in the cells
            (sc, order), config = scale(r), seedless(r["pretrain_config"] or r["config"])
            key = (r["dataset"], r["target"], order, sc, config)
            rows.setdefault(key, {}).setdefault(r["eval"], []).append(r)
    lines = ["| dataset | target | scale | fine-tune | linear probe | paper fine-tune | paper linear probe |",
             "|---|---|---|---|---|---|---|"]
    for (dataset, target, _, sc, _), evals in sorted(rows.items()):
        ft, lp = ("-" if v is None else f"{v:.3f}" for v in PAPER.get((dataset.removesuffix(FOLDER), target),
                                                                      (None, None)))
        lines.append(f"| {dataset} | {target} | {sc} | {cell(evals.get('finetune', []))} | {cell(evals.get('linprobe', []))} "
                     f"| {ft} | {lp} |")
    if bands:
        lines += ["", "| dataset | classifier input | init | scale | test accuracy |", "|---|---|---|---|---|"]
        for (dataset, band, target, sc), rs in sorted(bands.items()):
            lines.append(f"| {dataset} | {band} band | {target} | {sc} | {cell(rs)} |")
    return "\n".join(lines)


def svg(name, text=None, **attrs):
    """One SVG element as text; attribute names with _ for - (stroke_width="2")."""
    a = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f"<{name} {a}/>" if text is None else f"<{name} {a}>{escape(text)}</{name}>"


def line_chart(series, title, subtitle, xlabel, ylabel, low=-0.25, high=1.0, step=0.25, xs=None):
    """An SVG line chart, as text: series {name: [value at xs[0], xs[1], ...; None: none]} (xs: 1,
    2, ... unless given, ascending) from red (the first) to blue (the last), y ticks every
    `step`, the 0 line dark, a legend naming each series; a value beyond [low, high] is drawn at
    the edge as an open triangle pointing off the chart."""
    height, left, top, pw, ph = 340, 64, 50, 356, 240  # pw x ph: the plot; the legend to its right
    width = max(600, left + pw + 24 + 8 * max(len(name) for name in series))  # room for the longest name
    n = max(len(values) for values in series.values())
    xs = xs or list(range(1, n + 1))
    x = lambda i: round(left + pw * (xs[i] - xs[0]) / max(xs[-1] - xs[0], 1), 1)  # noqa: E731
    y = lambda v: round(top + ph * (high - min(max(v, low), high)) / (high - low), 1)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12">', svg("rect", width="100%", height="100%", fill="white"),
           svg("text", title, x=left + pw / 2, y=20, text_anchor="middle", font_size=14),
           svg("text", subtitle, x=left + pw / 2, y=38, text_anchor="middle"),
           svg("text", xlabel, x=left + pw / 2, y=height - 12, text_anchor="middle"),
           svg("text", ylabel, transform=f"translate(16 {top + ph / 2}) rotate(-90)", text_anchor="middle")]
    for v in [low + k * step for k in range(round((high - low) / step) + 1)]:
        zero = abs(v) < 1e-9
        out += [svg("line", x1=left, x2=left + pw, y1=y(v), y2=y(v), stroke="black" if zero else "#ddd",
                    stroke_width=1.5 if zero else 1),
                svg("text", f"{v:g}", x=left - 6, y=y(v) + 4, text_anchor="end")]
    out += [svg("text", f"{xs[i]:g}", x=x(i), y=top + ph + 18, text_anchor="middle") for i in range(0, n, -(-n // 10))]
    out.append(svg("rect", x=left, y=top, width=pw, height=ph, fill="none", stroke="#888"))
    for k, (name, values) in enumerate(series.items()):
        color = f"hsl({240 * k / max(len(series) - 1, 1):.0f}, 80%, 42%)"
        for missing, run in itertools.groupby(enumerate(values), key=lambda p: p[1] is None):
            if not missing:  # one polyline per unbroken stretch
                out.append(svg("polyline", fill="none", stroke=color, stroke_width=2,
                               points=" ".join(f"{x(i)},{y(v)}" for i, v in run)))
        for i, v in enumerate(values):
            if v is not None and low <= v <= high:
                out.append(svg("circle", cx=x(i), cy=y(v), r=3, fill=color))
            elif v is not None:
                tip = 6 if v < low else -6
                out.append(svg("polygon", points=f"{x(i) - 5},{y(v) - tip} {x(i) + 5},{y(v) - tip} {x(i)},{y(v) + tip}",
                               fill="white", stroke=color, stroke_width=1.5))
        out.append(svg("text", name, x=left + pw + 14, y=top + 14 + 20 * k, fill=color, font_weight="bold"))
    if any(v is not None and not low <= v <= high for values in series.values() for v in values):
        out.append(svg("text", "open triangle: beyond the axis", x=left + pw + 14, y=top + ph, font_size=10))
    return "\n".join(out + ["</svg>\n"])


# What pretrain.py's band monitor measures, named in each log line. Logs written before it was named
# compared the masked patches only, whose cut edges credit a model with bands it cannot know.
EXPLAINED_BY = "the whole target, each patch guessed while hidden"
OLD_EXPLAINED_BY = "masked patches only (before issue 21; leaks across bands)"


def explained_chart(logs, path, target):
    """explained.svg: the share of the hidden variance of each spectrum band that the model
    explains, over epochs, from pretrain.py's log rows (bands outside a band target have no
    line). Only the rows measured as the last one was are drawn: two definitions never share a
    chart."""
    measured = [log for log in logs if "explained" in log]
    definition = measured[-1].get("explained_by", OLD_EXPLAINED_BY)
    rows = [log["explained"] if log.get("explained_by", OLD_EXPLAINED_BY) == definition else {} for log in measured]
    series = {name + ("" if rows[-1][name] is not None else " (outside the target)"): [row.get(name) for row in rows]
              for name in rows[-1]}
    cli.save_text(line_chart(series, "Hidden variance explained, per PCA band", f"target: {target}; {definition}",
                             "epoch", "share explained (1 = all, 0 = none)"), path)


UNTRAINED = "untrained (MAE init)"


def probe_chart(results, path):
    """probe_epochs.svg: linear-probe accuracy against the pretraining epoch of the probed weights
    (copies kept by pretrain.py --keep-epochs), a line per pretraining (seeds averaged), a run with
    one probed epoch as a lone point, and the untrained encoders (epoch-0 copies) as a level. False
    if nothing to draw."""
    probes = [r for r in results if r["eval"] == "linprobe" and r.get("pretrain_config")]
    runs = {}
    for r in probes:
        c = r["pretrain_config"]
        if r.get("pretrain_epoch") == 0:
            continue  # drawn as the level
        name = f"{r['target']}, patch {c['patch_size']}, {c['epochs']} ep"
        runs.setdefault(name, {}).setdefault(r.get("pretrain_epoch", c["epochs"]), []).append(r["accuracy"])
    untrained = [a for r in probes if r.get("pretrain_epoch") == 0 for a in [r["accuracy"]]]
    if not any(len(epochs) > 1 for epochs in runs.values()):
        return False
    xs = sorted({e for epochs in runs.values() for e in epochs} | ({0} if untrained else set()))
    series = {name: [sum(epochs[e]) / len(epochs[e]) if e in epochs else None for e in xs]
              for name, epochs in sorted(runs.items())}
    if untrained:
        series[f"{UNTRAINED}, n={len(untrained)}"] = [sum(untrained) / len(untrained)] * len(xs)
    lows = [v for values in series.values() for v in values if v is not None]
    low, high = math.floor(min(lows) * 20) / 20, math.ceil(max(lows) * 20) / 20
    cli.save_text(line_chart(series, "Linear probe against pretraining epoch", "each point a probe of the weights "
                             "at that epoch; mean over seeds", "pretraining epoch", "linear-probe test accuracy",
                             low=low, high=high, step=0.05, xs=xs), path)
    return True


def main():
    p = cli.Parser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default="runs")
    p.add_argument("--charts", action="store_true", help="also redraw explained.svg of each pretraining run, "
                   "and FOLDER/test_curves.svg: the test accuracy of each fine-tuning run over its epochs")
    p.add_argument("--as", dest="folder_as", choices=sorted({dataset for dataset, _ in PAPER}),
                   help="name results on --dataset folder as this dataset, with the paper's numbers beside them "
                        "(the CIFAR-10 JPEG copy: --as cifar10)")
    args = p.parse_args()
    curves = {}
    for path in sorted(glob.glob(os.path.join(args.folder, "**", "log.jsonl"), recursive=True)) if args.charts else []:
        logs = cli.read_jsonl(path)
        run, summary = os.path.dirname(path), os.path.join(os.path.dirname(path), "summary.json")
        if any("explained" in log for log in logs):  # the target: from summary.json once the run has ended
            explained_chart(logs, os.path.join(run, "explained.svg"),
                            json.loads(pathlib.Path(summary).read_text())["target"] if os.path.exists(summary) else run)
        if any("test_accuracy" in log for log in logs):
            curves[os.path.relpath(run, args.folder)] = [log.get("test_accuracy") for log in logs]
    if curves:
        cli.save_text(line_chart(curves, "Test accuracy per epoch", f"fine-tuning runs under {args.folder}", "epoch",
                                 "test accuracy", low=0, high=1, step=0.1), os.path.join(args.folder, "test_curves.svg"))
    paths = sorted(glob.glob(os.path.join(args.folder, "**", "results.json"), recursive=True))
    if not paths:
        raise cli.UserError(f"no results.json under {args.folder}: run finetune.py or linprobe.py first")
    results = []
    for path in paths:
        try:
            results.append(json.loads(pathlib.Path(path).read_text()))
        except json.JSONDecodeError:
            results.append(None)
        if not isinstance(results[-1], dict) or not {"eval", "dataset", "target", "accuracy"} <= results[-1].keys():
            raise cli.UserError(f"{path} is not a results.json of this project (truncated or edited?)")
        if args.folder_as and results[-1]["dataset"] == "folder":
            results[-1]["dataset"] = args.folder_as + FOLDER
        if "target" in (results[-1].get("pretrain_config") or {}):  # named as now, whatever code wrote it
            results[-1]["target"] = target_name(results[-1]["pretrain_config"])
        if results[-1].get("pretrain_epoch") == 0:  # a copy of the initialisation: no target has touched it
            results[-1]["target"] = UNTRAINED
    if args.charts:
        probe_chart(results, os.path.join(args.folder, "probe_epochs.svg"))
    print(table(results))
    summaries = glob.glob(os.path.join(args.folder, "**", "summary.json"), recursive=True)
    hours = (sum(r.get("seconds") or 0 for r in results) +
             sum(json.loads(pathlib.Path(path).read_text()).get("train_seconds") or 0 for path in summaries)) / 3600
    print(f"\n{hours:.1f} hours of computing in all: the pretraining time of each summary.json and the time "
          "of each results.json")


if __name__ == "__main__":
    cli.main_guard(main)
