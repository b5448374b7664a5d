"""The results table, in the shape of docs/method.md's, from every results.json under a folder.

    python report.py runs/            # --charts also redraws each run's explained.svg
    python report.py results/cifar10-jpeg --as cifar10   # an image folder holding CIFAR-10

Each row is one dataset, pretraining target and scale; the paper's numbers (ViT-Tiny, 400
pretraining epochs, one V100) stand beside ours. Runs that differ only by seed share a cell (mean ±
spread, n seeds); the same weights evaluated twice with one seed count once. Band-input rows
(finetune.py --input) follow in a second table: Balestriero & LeCun's supervised-on-a-band
experiment. A third gives each pretraining's own monitor at its end (loss against the trivial
guess's, each band's explained share, kNN), seeds gathered. Then, for each schedule whose copies
were probed at several pretraining epochs, a table of the probe against the epoch, a column per
target and each target's gap to the original target's mean, also in units of the seed spread pooled
over the table's trained copies (sd).
explained_chart draws pretrain.py's per-band explained variance over epochs.
"""
import hashlib
import itertools
import json
import math
import os
import textwrap
from xml.sax.saxutils import escape

import cli
import files
import older

# (fine-tune, linear probe) test accuracy of the original work (docs/method.md, 5).
PAPER = {
    ("stl10", "original"): (0.695, 0.460), ("stl10", "no pretraining"): (0.629, None),
    ("stl10", "bottom 25%"): (0.785, 0.539), ("stl10", "bottom 10%"): (0.704, 0.483),
    ("stl10", "top 75%"): (0.649, 0.398), ("stl10", "top 60%"): (0.650, 0.445),
    ("cifar10", "original"): (0.885, 0.615), ("cifar10", "no pretraining"): (0.813, None),
    ("cifar10", "bottom 25%"): (0.902, 0.638), ("cifar10", "bottom 10%"): (0.922, 0.636),
    ("cifar10", "top 75%"): (0.894, 0.607), ("cifar10", "top 60%"): (0.880, 0.560),
    ("cifar100", "original"): (0.671, 0.370), ("cifar100", "no pretraining"): (0.593, None),
    ("cifar100", "bottom 25%"): (0.682, 0.373), ("cifar100", "top 75%"): (0.643, 0.270)}
# Balestriero & LeCun's supervised classifiers on TinyImageNet, each trained on one band.
SUPERVISED_PAPER = {"top 90%": 0.45, "bottom 20%": 0.55}


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
    model, c = model_text(r), r["pretrain_config"]
    if not c:
        return model, (0, 0, 0)
    done = r.get("pretrain_epoch", c["epochs"])  # a copy kept during the run: --keep-epochs
    steps = r.get("pretrain_step") or 0  # a checkpoint written mid-epoch
    if done == c["epochs"]:
        return model + f", {c['epochs']} pretrain ep", (c["epochs"], done, 0)
    after = f" + {steps} steps" if steps else ""
    return model + f", pretrain ep {done}{after} of {c['epochs']}", (c["epochs"], done, steps)


def model_text(r, aug=True):
    """A result's model, and with aug its pretraining's --aug: "ViT 128x6, patch 4, --aug flip"."""
    c = r["pretrain_config"] or r["config"]
    model = f"ViT {c['dim']}x{c['depth']}, patch {c['patch_size']}"
    if c.get("attention"):
        model += ", wave attention"
    for kind, config in (("pretrained", r["pretrain_config"]), ("trained", r["config"])):
        if (config or {}).get("subset"):  # a quick try, not a result of the whole split
            model += f", {kind} on --subset {config['subset']}"
    # The augmentation sets what share of the training inputs' variance a band target holds.
    return model + (f", --aug {augmentation(c)}" if aug and r["pretrain_config"] else "")


def augmentation(c):
    """A pretraining's --aug; code older than the flag always cropped."""
    return c.get("aug", "crop")


FOLDER = " (image folder)"  # how a row of `report.py --as` names its dataset


# What may differ between runs gathered in one cell: the seed, and where the files were.
SEEDLESS = {"seed", "ckpt", "ckpt_sha1", "weights_sha1", "tensors_sha1", "out", "resume",
            "data_dir", "device", "download"}


# The pretraining config keys that target_name names: what sets two columns of a table apart.
TARGET_KEYS = {"target", "pct", "norm_pix_loss", "corruption", "sigma", "masking", "pca_mask_share"}
# How results name an epoch-0 copy's probe: the initialisation, which no target has touched.
UNTRAINED = "untrained (MAE init)"


def what_trained(c, target=True):
    """A pretraining config less what sets nothing its weights learnt apart: the target
    (TARGET_KEYS) unless target, and which PCA was fitted (pca_fit) where neither target nor
    masking read it, only the band monitor did (or nothing did: an initialisation)."""
    pca_read = target and (c.get("target") != "original" or c.get("masking") == "pca")
    left_out = (set() if target else TARGET_KEYS) | (set() if pca_read else {"pca_fit"})
    return {k: v for k, v in c.items() if k not in left_out}


def both_configs(r, target=True):
    """A result's config and its pretraining's (what_trained, keys prefixed pretrain.), as one
    dict."""
    pre = what_trained(r.get("pretrain_config") or {}, target)
    return (r.get("config") or {}) | {f"pretrain.{k}": v for k, v in pre.items()}


def settings(r, target=None):
    """What sets a result's run apart: both_configs (with the target unless the weights are an
    initialisation, an epoch-0 copy, which no target has touched: one seed's init is one model,
    whichever target its run went on to), the precision it computed in and that its pretraining
    did, where known (with_precisions): the precision itself, not the flags that chose it (--amp's
    default is the device's)."""
    target = r["target"] != UNTRAINED if target is None else target
    config = both_configs(r, target)
    if r.get("pretrain_precision") is not None:  # (pretrain.py records no --amp)
        config |= {"pretrain.precision": r["pretrain_precision"]}
    if r.get("precision") is None:
        return config
    return {k: v for k, v in config.items() if k not in ("amp", "amp_dtype")} | {
        "precision": r["precision"]}


def recorded_precision(r):
    """What an evaluation computed in, as its results.json says (a probe's features made under
    autocast on a GPU by default, on a CPU in fp32): fp32, bf16 or fp16, and a fine-tune's epochs
    of each ("bf16+fp32" where a resume changed --amp); None where older code did not say."""
    used = r.get("used") or {}
    if "precision" in used:
        return used["precision"]  # None: features that older code made, which did not say
    if not {"bf16_epochs", "fp16_epochs"} & used.keys():
        return None
    lines = [{"bf16": epoch in used.get("bf16_epochs", []),  # each epoch as its log line says
              "fp16": epoch in used.get("fp16_epochs", [])} for epoch in range(1, r["epochs"] + 1)]
    return logged_precision(lines)


def logged_precision(log):
    """What the epochs of a log computed in (training.epoch_line's bf16 and fp16): fp32, bf16 or
    fp16, or those it mixed ("bf16+fp32": a resume changed --amp); None for a log of no epochs, or
    one with a line from code that did not say."""
    if not log or any("bf16" not in line for line in log):
        return None
    return "+".join(sorted({"fp16" if line.get("fp16") else "bf16" if line["bf16"] else "fp32"
                            for line in log}))


def pretrain_precision(ckpt):
    """What a checkpoint's weights were pretrained in, as its log says (logged_precision); None
    where it does not: older code kept no log in a checkpoint, and one written mid-epoch holds
    steps that no line of its log covers."""
    return None if ckpt.get("step") else logged_precision(ckpt.get("log"))


def with_precisions(results):
    """results, each with the precision it computed in (precision) as its results.json says, and
    where a pretraining trained its weights, the one that pretraining computed in
    (pretrain_precision, from its checkpoint's log); where older code did not say, the one a result
    of the same weights says, else as filled_in."""
    def trained(r):  # weights a pretraining trained: neither an initialisation nor from scratch
        return r["pretrain_config"] and r["target"] != UNTRAINED
    told = {weights(r): r["pretrain_precision"] for r in results
            if trained(r) and r.get("pretrain_precision") and weights(r) is not None}
    said = [r | {"pretrain_precision": told.get(weights(r))}
            if trained(r) and r.get("pretrain_precision") is None else r for r in results]
    said = filled_in(said, "pretrain_precision", settings, applies=trained)
    said = [r | {"precision": recorded_precision(r)} for r in said]
    return filled_in(said, "precision", settings)


def filled_in(items, key, config, applies=lambda item: True):
    """items, each of those that applies whose key older code did not record (None) set to the
    one value of key that the items of its target it would be gathered with (config; at any
    pretraining epoch) hold, and to "not recorded" where they hold two or more: never a seed of
    either, whatever the order the items come in; left None where they hold none."""
    known = [item for item in items if item.get(key) is not None]
    def around(item):  # the values of key among the items it would be gathered with
        return {o[key] for o in known if o.get("target") == item.get("target")
                and comparable(config(o), config(item))}
    def filled(item):
        values = around(item)
        if not values:
            return item
        return item | {key: values.pop() if len(values) == 1 else "not recorded"}
    return [filled(item) if item.get(key) is None and applies(item) else item for item in items]


# Where a result's config names the weights it evaluated: a hash of the tensors or of the file.
WEIGHTS_KEYS = ("tensors_sha1", "ckpt_sha1", "weights_sha1")


def weights(r):
    """What names the weights a result evaluated: an initialisation's pretraining seed, which alone
    draws it, whatever file each run's copy was; else the hash its config names; None where
    neither."""
    if r["target"] == UNTRAINED:
        return (r["pretrain_config"] or {}).get("seed")
    c = r["config"] or {}
    return next((c[k] for k in WEIGHTS_KEYS if c.get(k)), None)


def measurement(r):
    """What makes results of one cell group (gather) one measurement: the same weights evaluated
    with the same seed. A result that names no weights is a measurement of its own."""
    named = weights(r)
    return id(r) if named is None else json.dumps([named, (r["config"] or {}).get("seed")])


def measurements(results, key):
    """The values of key ("accuracy", "knn") of results, one per measurement: the repeats of one
    are their mean (an initialisation probed in each run that started from it counts once, not as
    several seeds); None if any result lacks key."""
    repeats = {}
    for r in results:
        repeats.setdefault(measurement(r), []).append(r.get(key))
    if any(v is None for values in repeats.values() for v in values):
        return None
    return [sum(values) / len(values) for values in repeats.values()]


def comparable(a, b):
    """Whether two configs describe one run but for its seed and where its files were; a key one
    of them lacks (made by older code) is what that code did (older.OLDER_CODE), or not a
    difference."""
    a, b = older.as_older_code_ran(a, b.keys()), older.as_older_code_ran(b, a.keys())
    return all(a[k] == b[k] for k in a.keys() & b.keys() if not seed_or_place(k))


def seed_or_place(key):
    return key.removeprefix("pretrain.") in SEEDLESS


def gather(items, config):
    """items in groups whose config(item)s are comparable, in the order first seen."""
    groups = []
    for item in items:
        group = next((g for g in groups if comparable(config(g[0]), config(item))), None)
        groups.append([item]) if group is None else group.append(item)
    return groups


def apart(groups, config):
    """What tells groups apart that share every column: per group, the keys (and values) on which
    the groups' configs differ; nothing for a lone group."""
    if len(groups) < 2:
        return [""] * len(groups)
    configs = [config(g[0]) for g in groups]
    every = set().union(*configs)
    configs = [older.as_older_code_ran(c, every) for c in configs]
    keys = sorted(k for k in set.intersection(*map(set, configs)) if not seed_or_place(k))
    differ = [k for k in keys if len({json.dumps(c[k], sort_keys=True) for c in configs}) > 1]
    return [", ".join(f"{k} {c[k]}" for k in differ) for c in configs]


def mean(values):
    """The arithmetic mean."""
    return sum(values) / len(values)


def mean_spread(values):
    """The mean, and with several runs the spread (sample standard deviation) and their count."""
    average = mean(values)
    if len(values) == 1:
        return f"{average:.3f}"
    return f"{average:.3f} ± {pooled_spread([values]):.3f} (n={len(values)})"


def cell(results, epochs=True):
    """A cell's results, those that differ only by seed aggregated (never one of them kept; repeats
    of one measurement counted once), others apart, each named by what sets it apart; with epochs,
    each group's training epochs."""
    groups = gather(results, settings)
    parts = []
    for g, label in zip(groups, apart(groups, settings)):
        part = mean_spread(measurements(g, "accuracy"))
        if (knn := measurements(g, "knn")) is not None:
            part += f" (kNN {mean_spread(knn)})"
        part += f", {g[0]['epochs']} ep" if epochs else ""
        decay = (g[0]["config"] or {}).get("layer_decay")  # 1 (none) for an encoder from scratch
        if g[0]["eval"] == "finetune" and decay is not None:
            part += f", layer decay {decay:g}"
        parts.append(part + (f" [{label}]" if label else ""))
    return "; ".join(parts) or "-"


def pretraining(r):
    """The config that made a result's weights (its pretraining's, what_trained, or its own for a
    model from scratch), less the target of an initialisation, as settings."""
    if not r["pretrain_config"]:
        return r["config"]
    return what_trained(r["pretrain_config"], target=r["target"] != UNTRAINED)


def table(results):
    rows, bands, wholes = {}, {}, {}
    for r in results:
        if r["eval"] == "finetune" and r.get("input", "original") != "original":
            bands.setdefault((r["dataset"], r["target"], scale(r)[0], r["input"]), []).append(r)
        else:  # a row per pretraining (or from-scratch) config; its seeds are gathered in cells
            (sc, order) = scale(r)
            rows.setdefault((r["dataset"], r["target"], order, sc), []).append(r)
            if r["eval"] == "finetune":  # the reference row of the band table
                wholes.setdefault((r["dataset"], r["target"], sc), []).append(r)
    lines = ["| dataset | target | scale | fine-tune | linear probe | paper fine-tune "
             "| paper linear probe |", "|---|---|---|---|---|---|---|"]
    for (dataset, target, _, sc), same_columns in sorted(rows.items()):
        paper = PAPER.get((dataset.removesuffix(FOLDER), target), (None, None))
        ft, lp = ("-" if v is None else f"{v:.3f}" for v in paper)
        groups = gather(same_columns, pretraining)
        for group, label in zip(groups, apart(groups, pretraining)):
            evals = {e: [r for r in group if r["eval"] == e] for e in ("finetune", "linprobe")}
            ours = f"{cell(evals['finetune'])} | {cell(evals['linprobe'])}"
            scale_text = sc + (f" ({label})" if label else "")
            lines.append(f"| {dataset} | {target} | {scale_text} | {ours} | {ft} | {lp} |")
    if bands:
        lines += ["", "| dataset | classifier input | init | scale | test accuracy "
                  "| Balestriero & LeCun, TinyImageNet |", "|---|---|---|---|---|---|"]
        for (dataset, target, sc, band), rs in sorted(bands.items()):
            whole = wholes.pop((dataset, target, sc), None)  # each group's first row
            if whole:
                row = f"| {dataset} | the whole image | {target} | {sc} | {cell(whole)} | - |"
                lines.append(row)
            paper = SUPERVISED_PAPER.get(band)
            paper = "-" if paper is None else f"{paper:.2f}"
            lines.append(f"| {dataset} | {band} band | {target} | {sc} | {cell(rs)} | {paper} |")
    return "\n".join(lines)


def monitor_table(runs):
    """What each pretraining had learnt at its end, by its own monitor (the last line of its log): a
    row per dataset, target and scale, seeds gathered as in the main table (a precision, where
    recorded, sets runs apart as there, and so does what their band figures are: measured in the
    training views' PCA, the images', or none); columns: its loss against the trivial guess's, each
    band of the band monitor, its kNN monitor. "-" where a run has no such figure: a band outside
    its target, a norm-pix run's bands, a log from before the band monitor (or a norm-pix run's
    trivial guess) was made as now."""
    rows, bands = {}, []
    for run in runs:
        (sc, order) = scale({"pretrain_config": run["config"], "config": None})
        rows.setdefault((run["dataset"], target_name(run["config"]), order, sc), []).append(run)
        bands += [band for band in run["explained"] if band not in bands]
    def figure(group, value):  # the group's mean ± spread, if each of its runs has one
        values = [value(run) for run in group]
        return "-" if None in values else mean_spread(values)
    columns = ["dataset", "target", "scale", "loss / trivial"] + bands + ["kNN monitor"]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    def config(run):  # seeds gathered by what they trained, their band figures' PCA, precision
        measured = f"{run['config'].get('pca_fit', 'images')}' PCA" if run["explained"] else "none"
        known = {"precision": run["precision"]} if run.get("precision") is not None else {}
        return what_trained(run["config"]) | {"band figures": measured} | known
    for (dataset, target, _, sc), same_columns in sorted(rows.items()):
        groups = gather(filled_in(same_columns, "precision", config), config)
        for group, label in zip(groups, apart(groups, config)):
            cells = [figure(group, lambda run: run["loss_share"])]
            cells += [figure(group, lambda run: run["explained"].get(band)) for band in bands]
            cells.append(figure(group, lambda run: run["knn"]))
            scale_text = sc + (f" ({label})" if label else "")
            lines.append(f"| {dataset} | {target} | {scale_text} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def epoch_tables(results):
    """The linear probes of each schedule's copies (pretrain.py --keep-epochs), a table per dataset
    and schedule: a row per pretraining epoch (0: the initialisation each run started from), a
    column per target (its seeds gathered as in the main table), and each other target's gap to the
    original target's mean, also in units of the table's seed spread (sd, table_spread, named in
    its title). Empty where no schedule has probes of more than one epoch."""
    tables = {}
    for r in results:
        c = r["pretrain_config"]
        if r["eval"] != "linprobe" or not c or r.get("pretrain_step"):
            continue  # weights of a stop mid-epoch have no epoch to stand at
        schedule = (r["dataset"], f"{model_text(r)}, {c['epochs']} pretrain ep")
        epoch = r.get("pretrain_epoch", c["epochs"])
        target = target_name(c) if "target" in c else r["target"]  # an epoch-0 copy: its run's
        tables.setdefault(schedule, {}).setdefault(target, {}).setdefault(epoch, []).append(r)
    texts = []
    for (dataset, schedule), columns in sorted(tables.items()):
        epochs = sorted({epoch for cells in columns.values() for epoch in cells})
        if len(epochs) < 2:
            continue
        targets = sorted(columns, key=lambda target: (target != "original", target))
        others = targets[1:] if targets[0] == "original" else []
        probe_epochs = sorted({r["epochs"] for cells in columns.values() for rs in cells.values()
                               for r in rs})
        sd, source = table_spread({t: columns[t] for t in targets})  # in the table's order
        title = (f"Linear probe ({'/'.join(map(str, probe_epochs))} ep) against pretraining "
                 f"epoch: {dataset}, {schedule}")
        if others and source:
            title += f"; {source}"
        lines = [title, "",
                 "| epoch | " + " | ".join(targets + [f"{t} − original" for t in others]) + " |",
                 "|---" * (1 + len(targets) + len(others)) + "|"]
        for epoch in epochs:
            cells = [cell(columns[t].get(epoch, []), epochs=False) for t in targets]
            gaps = [gap(columns[t].get(epoch, []), columns["original"].get(epoch, []), sd)
                    for t in others]
            lines.append(f"| {epoch} | " + " | ".join(cells + gaps) + " |")
        texts.append("\n".join(lines))
    return texts


def table_spread(columns):
    """An epoch table's seed spread (sd), probe and kNN: pooled_spread over its cells past epoch 0
    (an initialisation is no target's doing); and the text naming it, the seeds it comes from and
    each target's own probe spread, or "" where no cell holds two seeds. A run's epochs are not
    independent draws: sd is a scale to read the gaps by, not a test of them."""
    groups = {target: [g for epoch, rs in cells.items() if epoch for g in gather(rs, settings)]
              for target, cells in columns.items()}
    def spread(key, targets=groups):
        return pooled_spread([values for gs in targets.values() for g in gs
                              if (values := measurements(g, key))])
    sd = {"accuracy": spread("accuracy"), "knn": spread("knn")}
    if sd["accuracy"] is None:
        return sd, ""
    seeds = {target: sorted({str(r["pretrain_config"].get("seed")) for g in gs
                             if len(measurements(g, "accuracy")) > 1 for r in g})
             for target, gs in groups.items()}
    # each target's own spread beside it: the pooled sd assumes them alike, and they may not be
    alone = {t: spread("accuracy", targets={t: gs}) for t, gs in groups.items()}
    runs = "; ".join(f"{t} seeds {', '.join(s)} (own probe sd {alone[t]:.3f})"
                     for t, s in seeds.items() if s)
    knn = f", kNN {sd['knn']:.3f}" if sd["knn"] is not None else ""
    return sd, ("sd, the seed spread pooled over its cells past epoch 0 (a scale, not a test: a "
                f"run's epochs are not independent draws): probe {sd['accuracy']:.3f}{knn}, "
                f"from {runs}")


def pooled_spread(cells):
    """The seed spread pooled over cells of seeds: the sample standard deviation of each value
    about its own cell's mean, over sum(n - 1) degrees of freedom, a spread assumed alike across
    the cells; None where no cell holds two seeds."""
    freedom = sum(len(values) - 1 for values in cells)
    if freedom < 1:
        return None
    squares = sum((v - mean(values)) ** 2 for values in cells for v in values)
    spread = (squares / freedom) ** 0.5
    return spread if spread > 1e-9 else 0.0  # seeds that agree: a mean's rounding is no spread


def gap(results, reference, sd):
    """The difference of two cells' mean probe (and kNN) accuracies, signed, and where sd (per key,
    from table_spread) is neither None nor 0, also in units of it; "-" unless each cell holds one
    group of seeds (results that differ otherwise have no one mean) and the two differ in their
    target alone (else "-" and what else differs); "same weights" where both hold the same
    measurements (the initialisation both runs started from), whose difference is no finding, and
    "no target yet" where both hold initialisations of different seeds: a gap of the seeds drawn,
    not a target's."""
    groups, reference_groups = gather(results, settings), gather(reference, settings)
    if len(groups) != 1 or len(reference_groups) != 1:
        return "-"
    def beside(r):  # what a run is, its target aside
        return settings(r, target=False)
    if not comparable(beside(results[0]), beside(reference[0])):
        ours, theirs = apart([results, reference], beside)
        return f"- ({ours} against {theirs})"
    if {measurement(r) for r in results} == {measurement(r) for r in reference}:
        return "same weights"
    if all(r["target"] == UNTRAINED for r in results + reference):
        return "no target yet"
    def against_reference(key):  # None where a cell lacks the measurement
        values, reference_values = measurements(results, key), measurements(reference, key)
        if values is None or reference_values is None:
            return None
        difference = mean(values) - mean(reference_values)
        return f"{difference:+.3f}" + (f", {difference / sd[key]:+.1f} sd" if sd[key] else "")
    knn = against_reference("knn")
    return against_reference("accuracy") + (f" (kNN {knn})" if knn is not None else "")


def svg(name, text=None, **attrs):
    """One SVG element as text; attribute names with _ for - (stroke_width="2")."""
    a = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f"<{name} {a}/>" if text is None else f"<{name} {a}>{escape(text)}</{name}>"


# Okabe & Ito's colour-blind-safe colours (yellow left out: too light on white) and a grey, for
# series that are kinds rather than steps of a scale; shapes for what a colour alone cannot tell.
KINDS = ("#D55E00", "#0072B2", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#999999")
SHAPES = ("circle", "square", "diamond")  # no triangle: it marks a value beyond the axis


def kind_styles(names):
    """Each series its own colour (KINDS, in turn) and shape (dots, then squares, then diamonds
    once the colours are used up): the styles of line_chart, no two alike for up to 24 series."""
    return {name: (KINDS[k % len(KINDS)], SHAPES[k // len(KINDS) % len(SHAPES)])
            for k, name in enumerate(names)}


def marker(shape, cx, cy, color):
    """A filled point of a shape (SHAPES) about 6 px across, centred on (cx, cy)."""
    if shape == "circle":
        return svg("circle", cx=cx, cy=cy, r=3, fill=color)
    if shape == "square":
        return svg("rect", x=cx - 3, y=cy - 3, width=6, height=6, fill=color)
    corners = ((0, -4), (4, 0), (0, 4), (-4, 0))  # the diamond
    points = " ".join(f"{cx + dx:g},{cy + dy:g}" for dx, dy in corners)
    return svg("polygon", points=points, fill=color)


def line_chart(series, title, subtitle, xlabel, ylabel, low=-0.25, high=1.0, step=0.25, xs=None,
               styles=None, ranges=None):
    """An SVG line chart, as text: series {name: [value at xs[0], xs[1], ...; None: none]} (xs: 1,
    2, ... unless given, ascending) from red (the first) to blue (the last) in dots, or as styles
    says ({name: (colour, shape)}, each shape also beside its name), y ticks every `step`, the 0
    line dark, a legend naming each series; a value beyond [low, high] is drawn at the edge as an
    open triangle pointing off the chart. ranges {name: [(lowest, highest) or None at each x]}
    draws each as a capped vertical bar in its series' colour."""
    subtitle = textwrap.wrap(subtitle, 90) or [""]  # long ones in lines that fit the width
    top, left, pw, ph = 36 + 16 * len(subtitle), 64, 356, 240  # pw x ph: the plot, legend right
    height = top + ph + 50
    key = 14 if styles else 0  # the shape beside each name
    width = max(600, left + pw + 24 + key + 8 * max(len(name) for name in series))  # longest name
    n = max(len(values) for values in series.values())
    xs = xs or list(range(1, n + 1))
    def x(i):  # the value at index i sits at xs[i]
        return round(left + pw * (xs[i] - xs[0]) / max(xs[-1] - xs[0], 1), 1)

    def y(v):  # clipped to the axis
        return round(top + ph * (high - min(max(v, low), high)) / (high - low), 1)

    middle, legend = left + pw / 2, left + pw + 14
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           svg("rect", width="100%", height="100%", fill="white"),
           svg("text", title, x=middle, y=20, text_anchor="middle", font_size=14),
           *[svg("text", line, x=width / 2, y=38 + 16 * k, text_anchor="middle")
             for k, line in enumerate(subtitle)],
           svg("text", xlabel, x=middle, y=height - 12, text_anchor="middle"),
           svg("text", ylabel, transform=f"translate(16 {top + ph / 2}) rotate(-90)",
               text_anchor="middle")]
    for v in [low + k * step for k in range(round((high - low) / step) + 1)]:  # y grid and ticks
        zero = abs(v) < 1e-9
        out += [svg("line", x1=left, x2=left + pw, y1=y(v), y2=y(v),
                    stroke="black" if zero else "#ddd", stroke_width=1.5 if zero else 1),
                svg("text", f"{v:g}", x=left - 6, y=y(v) + 4, text_anchor="end")]
    for i in range(0, n, -(-n // 10)):  # at most 10 x ticks
        out.append(svg("text", f"{xs[i]:g}", x=x(i), y=top + ph + 18, text_anchor="middle"))
    out.append(svg("rect", x=left, y=top, width=pw, height=ph, fill="none", stroke="#888"))
    for k, (name, values) in enumerate(series.items()):
        color, shape = (styles or {}).get(name) or (
            f"hsl({240 * k / max(len(series) - 1, 1):.0f}, 80%, 42%)", "circle")
        for missing, run in itertools.groupby(enumerate(values), key=lambda p: p[1] is None):
            if not missing:  # one polyline per unbroken stretch
                out.append(svg("polyline", fill="none", stroke=color, stroke_width=2,
                               points=" ".join(f"{x(i)},{y(v)}" for i, v in run)))
        for i, bar in enumerate((ranges or {}).get(name, [])):
            if bar is not None:  # an I: caps at both ends
                x0, y0, y1 = x(i), y(bar[0]), y(bar[1])
                out.append(svg("path", d=f"M{x0 - 3},{y1} H{x0 + 3} M{x0},{y1} V{y0} "
                                         f"M{x0 - 3},{y0} H{x0 + 3}",
                               fill="none", stroke=color, stroke_width=1.5))
        for i, v in enumerate(values):
            if v is not None and low <= v <= high:
                out.append(marker(shape, x(i), y(v), color))
            elif v is not None:
                tip = 6 if v < low else -6
                corners = f"{x(i) - 5},{y(v) - tip} {x(i) + 5},{y(v) - tip} {x(i)},{y(v) + tip}"
                out.append(svg("polygon", points=corners, fill="white", stroke=color,
                               stroke_width=1.5))
        row = top + 14 + 20 * k
        if styles:
            out.append(marker(shape, legend + 4, row - 4, color))
        out.append(svg("text", name, x=legend + key, y=row, fill=color,
                       font_weight="bold"))
    if any(v is not None and not low <= v <= high for values in series.values() for v in values):
        note = "open triangle: beyond the axis"
        out.append(svg("text", note, x=legend, y=top + ph, font_size=10))
    return "\n".join(out + ["</svg>\n"])


# What pretrain.py's trivial guess is, named in each log line (a norm-pix run's: its normalised
# target's mean patch); lines that name none predate the name (trivial_as_now).
TRIVIAL_BY = "the mean target patch"
# What pretrain.py's band monitor measures, named in each log line. Logs written before it was named
# compared the masked patches only, whose cut edges credit a model with bands it cannot know.
EXPLAINED_BY = "the whole target, each patch guessed while hidden"
# Norm-pix loss: no figure (monitor.band_monitor says why). Logs written before gave figures that
# credited the model with the hidden patches' own means and scales, first against the mean image,
# then against each patch flat at its own mean; both are withdrawn.
NORM_PIX_EXPLAINED_BY = ("no figure: a norm-pix model predicts each patch up to its own mean and "
                         "scale, which no pixel reading can credit it with only what it knows")


def explained_by(cfg):
    """What the band monitor measures for a run of this pretraining config."""
    return NORM_PIX_EXPLAINED_BY if cfg.get("norm_pix_loss") else EXPLAINED_BY


def trivial_as_now(log, cfg):
    """Whether a log line's trivial_loss is the trivial guess as now (TRIVIAL_BY): not a norm-pix
    run's from before its fix (older.NORM_PIX_TRIVIAL_FIXED_BY), nor, where the config is not
    known (a run under way), a line whose norm-pix figures were withdrawn."""
    if log.get("trivial_by") == TRIVIAL_BY:
        return True
    definition = log.get("explained_by")  # lines before trivial_by: their band monitor tells
    if not cfg.get("norm_pix_loss"):
        return definition != older.WITHDRAWN
    return definition in (NORM_PIX_EXPLAINED_BY, older.NORM_PIX_TRIVIAL_FIXED_BY)


def explained_chart(logs, path, target):
    """explained.svg: the share of the hidden variance of each spectrum band that the model
    explains, over epochs, from pretrain.py's log rows (bands outside a band target have no
    line). Only the rows measured as the last one was are drawn: two definitions never share a
    chart. False (nothing written) where the log has no figures."""
    measured = [log for log in logs if log.get("explained")]
    if not measured:  # no band monitor, or a norm-pix run's (no figures)
        return False
    definition = older.measured_as(measured[-1])
    rows = [log["explained"] if older.measured_as(log) == definition else {} for log in measured]
    outside = [name for name, v in rows[-1].items() if v is None]  # no figure: no line, no name
    series = {name: [row.get(name) for row in rows] for name in rows[-1] if name not in outside}
    if not any(v is not None for values in series.values() for v in values):
        return False  # every band outside the target, or hiding nothing
    unmeasured = f"; not measured, outside the target: {', '.join(outside)}" if outside else ""
    chart = line_chart(series, "Hidden variance explained, per PCA band",
                       f"target: {target}; {definition}{unmeasured}", "epoch",
                       "share explained (1 = all, 0 = none)")
    files.save_text(chart, path)
    return True


def curves_chart(logs, path, target, cfg):
    """curves.svg: over a pretraining's epochs, its loss as a share of the trivial guess's (below
    1: the model knows more than the mean target patch) and its kNN accuracy, where measured (the
    share where the trivial guess was made as now: trivial_as_now; cfg {} if not known)."""
    ratio = [log["loss"] / log["trivial_loss"]
             if log.get("trivial_loss") and trivial_as_now(log, cfg) else None for log in logs]
    series = {"loss / trivial guess's": ratio, "kNN accuracy": [log.get("knn") for log in logs]}
    styles = kind_styles(series)  # each series its colour, whether drawn or not
    withheld = ""
    if all(v is None for v in ratio):
        del series["loss / trivial guess's"]
        withheld = "; no loss share: its trivial guess predates the fix" * any(
            log.get("trivial_loss") for log in logs)
    high = min(2.0, max(1.0, math.ceil(max(v for v in ratio if v is not None) * 4) / 4)
               if any(v is not None for v in ratio) else 1.0)
    chart = line_chart(series, "Loss against the trivial guess's, and kNN accuracy",
                       f"target: {target}{withheld}", "epoch", "share", low=0, high=high,
                       step=0.25, styles=styles)
    files.save_text(chart, path)


def span(accuracies):
    """What the seeds of one point spread over, (lowest, highest); None for a single seed."""
    return (min(accuracies), max(accuracies)) if len(accuracies) > 1 else None


# What draws an initialisation's encoder besides its seed: pretrain.py seeds torch just before it
# builds the model, whose encoder is made (and initialised) before its decoder; a probe sees only
# the encoder, so a seed gives one init for each shape of encoder and image, whatever follows.
INIT_KEYS = ("image_shape", "image_size", "patch_size", "dim", "depth", "heads", "attention")


def initialisation(r):
    """An epoch-0 copy's probe settings, of its pretraining only the keys that drew its encoder
    (INIT_KEYS): one seed's copies that agree on them are one initialisation."""
    pre = r["pretrain_config"]
    return probe_settings(r) | {f"pretrain.{k}": pre[k] for k in INIT_KEYS if k in pre}


def probe_settings(r):
    """settings, less the pretraining's."""
    return {k: v for k, v in settings(r).items() if not k.startswith("pretrain.")}


def probe_chart(results, path):
    """probe_epochs.svg: linear-probe accuracy against the pretraining epoch of the probed weights
    (copies kept by pretrain.py --keep-epochs), a line per pretraining (seeds gathered as in the
    tables, each measurement once; a bar where several spread), a run with one probed epoch as a
    lone point, and the untrained encoders (epoch-0 copies) as a grey level, their bar at epoch 0:
    a level per initialisation (its encoder and probe; a seed's init counted once whatever its
    schedule). A target keeps its colour across schedules, and a schedule (model, --aug, epochs,
    and the dataset where there are several) its shape. False if nothing to draw."""
    probes = [r for r in results if r["eval"] == "linprobe" and r.get("pretrain_config")]
    several = len({r["dataset"] for r in probes}) > 1
    trained = {}
    for r in probes:
        # an init is drawn as a level; weights of a stop mid-epoch have no epoch to stand at
        if r["target"] != UNTRAINED and not r.get("pretrain_step"):
            schedule = f"{model_text(r)}, {r['pretrain_config']['epochs']} ep"
            trained.setdefault((r["dataset"], r["target"], schedule), []).append(r)
    runs, kinds = {}, {}  # by each line's name: {epoch: its results}, (target, schedule)
    for (dataset, target, schedule), rs in trained.items():
        groups = gather(rs, settings)
        for group, label in zip(groups, apart(groups, settings)):
            prefix = f"{dataset}: " if several else ""
            where = schedule + (f" ({label})" if label else "")
            name = unique(f"{prefix}{target}, {where}", runs)
            kinds[name] = (target, prefix + where)
            for r in group:
                epoch = r.get("pretrain_epoch", r["pretrain_config"]["epochs"])
                runs.setdefault(name, {}).setdefault(epoch, []).append(r)
    if not any(len(epochs) > 1 for epochs in runs.values()):
        return False
    points = {name: {e: measurements(rs, "accuracy") for e, rs in epochs.items()}
              for name, epochs in runs.items()}
    untrained = [r for r in probes if r["target"] == UNTRAINED]
    levels = {}
    for dataset in sorted({r["dataset"] for r in untrained}):
        inits = gather([r for r in untrained if r["dataset"] == dataset], initialisation)
        for group, label in zip(inits, apart(inits, probe_settings)):
            values = measurements(group, "accuracy")
            name = (f"{dataset}: " if several else "") + f"{UNTRAINED}, "
            name += f"{model_text(group[0], aug=False)}, n={len(values)}"
            levels[unique(name + (f" ({label})" if label else ""), levels)] = values
    xs = sorted({e for epochs in runs.values() for e in epochs} | ({0} if levels else set()))
    series = {name: [sum(at[e]) / len(at[e]) if e in at else None for e in xs]
              for name, at in sorted(points.items())}
    ranges = {name: [span(at[e]) if e in at else None for e in xs] for name, at in points.items()}
    targets = sorted({target for target, _ in kinds.values()})
    # the schedule with the most probed epochs (the lines) in dots
    most = {schedule: max(len(runs[n]) for n in runs if kinds[n][1] == schedule)
            for _, schedule in kinds.values()}
    schedules = sorted(most, key=lambda schedule: (-most[schedule], schedule))
    styles = {name: (KINDS[targets.index(target) % (len(KINDS) - 1)],
                     SHAPES[schedules.index(schedule) % len(SHAPES)])
              for name, (target, schedule) in kinds.items()}
    for k, (name, values) in enumerate(levels.items()):
        series[name] = [sum(values) / len(values)] * len(xs)
        styles[name] = (KINDS[-1], SHAPES[k % len(SHAPES)])  # the grey, which no target takes
        ranges[name] = [span(values)]  # at epoch 0, where the untrained encoders are
    drawn = [v for values in series.values() for v in values if v is not None]
    drawn += [end for bars in ranges.values() for bar in bars if bar is not None for end in bar]
    low, high = math.floor(min(drawn) * 20) / 20, math.ceil(max(drawn) * 20) / 20
    chart = line_chart(series, "Linear probe against pretraining epoch",
                       "each point a probe of the weights at that epoch, mean over seeds (bar: "
                       "their range); colour: the target (grey: untrained), shape: the schedule",
                       "pretraining epoch", "linear-probe test accuracy",
                       low=low, high=high, step=0.05, xs=xs, styles=styles, ranges=ranges)
    files.save_text(chart, path)
    return True


def unique(name, taken):
    """name, or where taken holds it already (groups that differ only in a key some lack, which
    apart cannot name), name with a number: two series are never drawn as one."""
    new, k = name, 1
    while new in taken:
        k += 1
        new = f"{name} #{k}"
    return new


def under(folder, name):
    """Every file called name anywhere under folder (files.walk: each real file once, loops
    broken), a copy of one before it (the same bytes: `cp -r` of a run) left out. Returns (the
    files, a line for each copy left out)."""
    firsts, paths, copies = {}, [], []
    for path in files.walk(folder, lambda n: n == name):
        with files.open_file(path, "rb") as f:
            first = firsts.setdefault(hashlib.sha1(f.read()).digest(), path)
        if first == path:
            paths.append(path)
        else:
            copies.append(f"{path} is a copy of {first}: counted once")
    return paths, copies


def redraw_charts(folder):
    """explained.svg and curves.svg beside each pretraining log, and FOLDER/test_curves.svg of the
    fine-tunings. Returns what it did: a line per chart written, or not drawn and why."""
    curves, said = {}, []
    for path in under(folder, "log.jsonl")[0]:
        logs = files.read_jsonl(path)
        run = os.path.dirname(path)
        summary = os.path.join(run, "summary.json")
        if any("trivial_loss" in log or "explained" in log for log in logs):  # a pretraining's
            # target, config: summary.json, once it ended
            ended = files.read_json(summary, "summary.json") if os.path.exists(summary) else {}
            target = ended.get("target", run)
            if any("trivial_loss" in log for log in logs):  # older logs had no trivial guess
                curves_chart(logs, os.path.join(run, "curves.svg"), target,
                             ended.get("config") or {})
                said.append(f"wrote {os.path.join(run, 'curves.svg')}")
            explained = os.path.join(run, "explained.svg")
            said.append(f"wrote {explained}" if explained_chart(logs, explained, target) else
                        f"no {explained}: its log has no band monitor figures")
        if any("test_accuracy" in log for log in logs):
            curves[os.path.relpath(run, folder)] = [log.get("test_accuracy") for log in logs]
    if curves:
        chart = line_chart(curves, "Test accuracy per epoch", f"fine-tuning runs under {folder}",
                           "epoch", "test accuracy", low=0, high=1, step=0.1,
                           styles=kind_styles(curves))
        files.save_text(chart, os.path.join(folder, "test_curves.svg"))
        said.append(f"wrote {os.path.join(folder, 'test_curves.svg')}")
    else:
        said.append(f"no {os.path.join(folder, 'test_curves.svg')}: no fine-tuning log under "
                    f"{folder}")
    return said


# The figures of a results.json and their ranges: a figure outside its range is no result this
# project wrote (where one is None, the run has none).
RANGES = {"accuracy": (0, 1), "knn": (0, 1), "val_accuracy": (0, 1), "epochs": (1, math.inf),
          "pretrain_epoch": (0, math.inf), "pretrain_step": (0, math.inf),
          "seconds": (0, math.inf)}


def number_within(v, low, high):
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and low <= v <= high)


def describable(c):
    """Whether a config holds what the table reads of it (target_name, scale), each of its kind:
    a model's sizes and epochs, and a pretraining's target, its band, masking and noise."""
    if not all(type(c.get(k)) is int and c[k] > 0 for k in ("dim", "depth", "patch_size")):
        return False  # (a bool is an int to isinstance)
    if "target" not in c:  # a fine-tune's own config
        return True
    band = c["target"] == "original" or number_within(c.get("pct"), 1e-9, 100)
    return (c["target"] in ("original", "bottom", "top") and band
            and type(c.get("epochs")) is int and c["epochs"] > 0
            and (c.get("masking") != "pca" or number_within(c.get("pca_mask_share"), 0, 1))
            and (not c.get("corruption") or number_within(c.get("sigma"), 0, math.inf)))


def readable_used(used):
    """Whether a results.json's or summary.json's used (or None) is what recorded_precision
    reads."""
    used = used or {}
    return (isinstance(used, dict) and isinstance(used.get("precision"), (str, type(None)))
            and all(isinstance(used.get(k, []), list) for k in ("bf16_epochs", "fp16_epochs")))


def read_result(path, folder_as=None):
    """A results.json, checked, its target named as now (whatever code wrote it), an image folder
    named as the dataset it holds when asked."""
    r = files.read_json(path, "results.json")
    fields = {"eval": str, "dataset": str, "target": str, "accuracy": (int, float), "epochs": int,
              "config": (dict, type(None)), "pretrain_config": (dict, type(None)),
              "used": (dict, type(None)), "pretrain_precision": (str, type(None))}
    r = {"config": None, "pretrain_config": None, "used": None} | r
    within = all(r.get(k) is None or number_within(r[k], low, high)
                 for k, (low, high) in RANGES.items())
    typed = all(isinstance(r.get(k), kind) for k, kind in fields.items()) and within
    pre = r["pretrain_config"]
    config = (r["config"] if typed else None) or {}
    decay = config.get("layer_decay")  # the table names it
    hashes = all(isinstance(config.get(k), (str, type(None))) for k in WEIGHTS_KEYS)  # weights()
    if (not typed or not hashes or not readable_used(r["used"])
            or r["eval"] not in ("finetune", "linprobe")
            or not describable(pre or r["config"] or {})
            or decay is not None and not number_within(decay, 0, 1)
            or pre is not None and (r.get("pretrain_epoch") or 0) > pre["epochs"]):
        raise files.UserError(f"{path} is not a results.json of this project "
                              "(truncated or edited?)")
    if folder_as and r["dataset"] == "folder":
        r["dataset"] = folder_as + FOLDER
    if "target" in (r.get("pretrain_config") or {}):
        r["target"] = target_name(r["pretrain_config"])
    if r.get("pretrain_epoch") == 0 and not r.get("pretrain_step"):  # the initialisation: no
        # target has touched it (weights after a step of epoch 1 are another matter)
        r["target"] = UNTRAINED
    return r


def read_run(path, folder_as=None):
    """A pretraining's summary.json, checked, with what its monitor said at its end (the last line
    of the log.jsonl beside it, the last epoch's): its training time, and where the summary names
    its config (older ones did not), its dataset (an image folder named as in read_result), config,
    precision (recorded_precision), loss against the trivial guess's and kNN (None where the run
    has no such figure), and the band figures measured as now ({} where none)."""
    summary = files.read_json(path, "summary.json")
    seconds, config = summary.get("train_seconds"), summary.get("config")
    edited = files.UserError(f"{path} (or the log.jsonl beside it) is not a pretraining run of "
                             "this project (edited?)")
    if seconds is not None and not number_within(seconds, 0, math.inf):
        raise edited
    if config is None:
        return {"seconds": seconds or 0, "config": None}
    if not (isinstance(config, dict) and "target" in config and describable(config)
            and isinstance(config.get("dataset"), str) and readable_used(summary.get("used"))):
        raise edited
    log = os.path.join(os.path.dirname(path), "log.jsonl")
    lines = files.read_jsonl(log) if os.path.exists(log) else []
    last = lines[-1] if lines else {}
    if type(last.get("epoch")) is not int or last["epoch"] != config["epochs"]:
        raise files.UserError(f"{log} does not end with epoch {config['epochs']}, its run's last "
                              "(missing, cut short or edited?)")
    measured = last.get("explained_by") == EXPLAINED_BY and not config.get("norm_pix_loss")
    explained = last.get("explained") if measured else None
    loss, knn = last.get("loss"), last.get("knn")
    trivial = last.get("trivial_loss") if trivial_as_now(last, config) else None
    if not (explained is None or isinstance(explained, dict)
            and all(v is None or number_within(v, -math.inf, 1) for v in explained.values())):
        raise edited
    if not all(v is None or number_within(v, low, high) for v, low, high in (
            (knn, 0, 1), (loss, 0, math.inf), (trivial, 0, math.inf))):
        raise edited
    share = loss / trivial if loss is not None and trivial else None
    if share is not None and not number_within(share, 0, math.inf):
        raise edited
    dataset = config["dataset"]
    precision = recorded_precision({"used": summary.get("used"), "epochs": config["epochs"]})
    return {"seconds": seconds or 0, "config": config, "precision": precision,
            "loss_share": share, "knn": knn,
            "dataset": folder_as + FOLDER if folder_as and dataset == "folder" else dataset,
            "explained": explained or {}}


def main():
    p = cli.Parser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=cli.path, nargs="?", default="runs")
    p.add_argument("--charts", action="store_true",
                   help="also redraw explained.svg and curves.svg of each pretraining run, "
                        "FOLDER/test_curves.svg "
                        "(each fine-tuning run's test accuracy over its epochs) and "
                        "FOLDER/probe_epochs.svg (linear probe against pretraining epoch)")
    p.add_argument("--as", dest="folder_as", choices=sorted({dataset for dataset, _ in PAPER}),
                   help="name results on --dataset folder as this dataset, with the paper's "
                        "numbers beside them (the CIFAR-10 JPEG copy: --as cifar10)")
    args = p.parse_args()
    if not os.path.isdir(args.folder):
        raise files.UserError(f"{args.folder} is not a folder")
    said = redraw_charts(args.folder) if args.charts else []
    paths, copies = under(args.folder, "results.json")
    if not paths:
        raise files.UserError(f"no results.json under {args.folder}: "
                              "run finetune.py or linprobe.py first")
    results = with_precisions([read_result(path, args.folder_as) for path in paths])
    if args.charts:
        probe_path = os.path.join(args.folder, "probe_epochs.svg")
        said.append(f"wrote {probe_path}" if probe_chart(results, probe_path) else
                    f"no {probe_path}: no pretraining has probes of more than one epoch")
    summaries, summary_copies = under(args.folder, "summary.json")
    runs = [read_run(path, args.folder_as) for path in summaries]  # all read before any line
    print(table(results))
    if any(run["config"] for run in runs):
        print("\nAt the end of each pretraining, its monitor (pretrain.py's last log line): the "
              "loss against the trivial guess's (the mean target patch), the share of each PCA "
              "band's hidden variance explained (1 all, 0 no more than the mean image), the kNN "
              "accuracy on its --knn-train / --knn-test images\n")
        print(monitor_table([run for run in runs if run["config"]]))
    for text in epoch_tables(results):
        print("\n" + text)
    seconds = sum(r.get("seconds") or 0 for r in results) + sum(run["seconds"] for run in runs)
    hours = seconds / 3600
    print(f"\n{hours:.1f} hours of computing in all: the pretraining time of each summary.json and "
          "the time of each results.json")
    if said:
        print("\ncharts:\n" + "\n".join(said))
    if copies or summary_copies:
        print("\ncopies:\n" + "\n".join(copies + summary_copies))


if __name__ == "__main__":
    cli.main_guard(main, resumable=False)
