import json
import math
import re
import shutil
import xml.etree.ElementTree as ET

import pytest
import torch

import checkpoints
import finetune
import linprobe
import model
import older
import outfolder
import dataset_pca
import pca_project
import pretrain
import report
from conftest import SHORT, TINY, band, project
from test_pca import one_line_error


@pytest.fixture(scope="session")
def pretrained(fmnist_folder, tmp_path_factory):
    """A tiny MAE pretrained for 40 epochs on the real Fashion-MNIST folder, and a random-init
    twin."""
    out = tmp_path_factory.mktemp("pre")
    pretrain.main([str(a) for a in [*TINY, "--data-dir", fmnist_folder, "--epochs", 40,
                                    "--out", out / "run", "--target", "bottom", "--pct", 25]])
    ckpt = torch.load(out / "run" / "ckpt.pt", weights_only=True)
    torch.manual_seed(123)
    ckpt["model"] = checkpoints.build_model(ckpt["config"],
                                            ckpt["config"]["image_shape"]).state_dict()
    torch.save(ckpt, out / "random.pt")
    return out / "run" / "ckpt.pt", out / "random.pt"


def test_probe_reaches_95_percent_on_separable_features():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 16, generator=g) * 3
    y = torch.randint(0, 5, (1200,), generator=g)
    feats = centers[y] + torch.randn(1200, 16, generator=g)
    acc, log = linprobe.train_probe(feats[:1000], y[:1000], feats[1000:], y[1000:], classes=5,
                                    epochs=20, warmup_epochs=2, batch_size=64, lr=0.1 * 64 / 256)
    assert acc > 0.95 and log[-1]["loss"] < log[0]["loss"]


def test_linprobe_of_pretrained_beats_random_init_and_extracts_once(fmnist_folder, pretrained,
                                                                     tmp_path, run, monkeypatch):
    calls = []
    features = model.Encoder.features
    monkeypatch.setattr(model.Encoder, "features", lambda self, x, pool="cls":
                        calls.append(len(x)) or features(self, x, pool))
    accs = {}
    for name, ckpt in zip(("pretrained", "random"), pretrained):
        calls.clear()
        code, out, err = run(linprobe, "--ckpt", ckpt, "--data-dir", fmnist_folder, "--epochs", 30,
                             "--warmup-epochs", 3, "--batch-size", 32, "--out", tmp_path / name)
        assert code == 0, err
        assert calls == [200, 50]  # train and test features, once each, for 30 epochs of the head
        accs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert accs["pretrained"]["eval"] == "linprobe" and accs["pretrained"]["target"] == "bottom 25%"
    assert accs["pretrained"]["accuracy"] > accs["random"]["accuracy"], accs


def test_finetune_changes_every_encoder_weight_and_reports_the_final_epoch(
        fmnist_folder, pretrained, tmp_path, run):
    code, out, err = run(finetune, "--ckpt", pretrained[0], "--dataset", "folder",
                         "--data-dir", fmnist_folder, "--image-size", 16, "--epochs", 3,
                         "--batch-size", 32, "--warmup-epochs", 1, "--out", tmp_path,
                         "--blr", 1e-3, "--mixup", 0.8, "--cutmix", 1.0)
    assert code == 0, err
    before = torch.load(pretrained[0], weights_only=True)["model"]
    after = torch.load(tmp_path / "ckpt.pt", weights_only=True)["model"]
    encoder_keys = [k for k in after if k.startswith("encoder.")]
    assert len(encoder_keys) == len([k for k in before if k.startswith("encoder.")])
    for k in encoder_keys:
        assert not torch.equal(before[k], after[k]), k

    # The reported accuracy is that of the final weights on the test split.
    results = json.loads((tmp_path / "results.json").read_text())
    cfg = results["pretrain_config"]
    clf = model.Classifier(checkpoints.build_model(cfg, cfg["image_shape"]).encoder, 10)
    clf.load_state_dict(after)
    x, y = finetune.data.load("folder", "test", str(fmnist_folder), 16)
    acc = finetune.accuracy(clf, x, y, None, torch.autocast("cuda", enabled=False))
    assert results["accuracy"] == acc and results["target"] == "bottom 25%"


def test_init_none_loads_nothing(fmnist_folder, tmp_path, run, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a checkpoint was loaded")

    monkeypatch.setattr(finetune, "load_pretrained", refuse)
    monkeypatch.setattr(outfolder, "load_checkpoint", refuse)
    code, _, err = run(finetune, "--init", "none", "--dataset", "folder",
                       "--data-dir", fmnist_folder, "--image-size", 16, "--patch-size", 4,
                       "--dim", 32, "--depth", 2, "--heads", 2, "--epochs", 1,
                       "--batch-size", 64, "--out", tmp_path)
    assert code == 0, err
    assert json.loads((tmp_path / "results.json").read_text())["target"] == "no pretraining"


def test_layer_decay_orders_the_learning_rates():
    clf = model.Classifier(model.Encoder(16, 4, 3, 32, 3, 2), 10)
    scale = {n: g["lr_scale"] for g in model.param_groups(clf, 0.05, 0.75) for p in g["params"]
             for n, q in clf.named_parameters() if q is p}
    assert scale["encoder.patch_embed.weight"] == min(scale.values()) == pytest.approx(0.75 ** 4)
    assert scale["head.weight"] == scale["encoder.norm.weight"] == 1.0
    blocks = [scale[f"encoder.blocks.{i}.attn.qkv.weight"] for i in range(3)]
    assert blocks == sorted(blocks) and blocks[0] > scale["encoder.patch_embed.weight"]


def test_input_bottom_trains_and_tests_on_the_band_of_the_whole_image(fmnist_folder, tmp_path, run,
                                                                      monkeypatch):
    seen, augmented = [], []
    forward, augment = model.Classifier.forward, finetune.data.augment
    monkeypatch.setattr(model.Classifier, "forward",
                        lambda self, x: seen.append((self.training, x.clone())) or forward(self, x))
    monkeypatch.setattr(finetune.data, "augment",
                        lambda x, *a: augmented.append((x, augment(x, *a))) or augmented[-1][1])
    code, _, err = run(finetune, "--init", "none", "--input", "bottom", "--pct", 25,
                       "--dataset", "folder", "--data-dir", fmnist_folder, "--image-size", 16,
                       "--patch-size", 4, "--dim", 32, "--depth", 2, "--heads", 2, "--epochs", 1,
                       "--batch-size", 64, "--out", tmp_path)
    assert code == 0, err
    pca, _ = dataset_pca.load_or_fit("folder", str(fmnist_folder), 16)
    V = band(pca, "bottom", 25)
    train = [x for is_train, x in seen if is_train]
    test = torch.cat([x for is_train, x in seen if not is_train])
    assert len(train) == len(augmented) == 3
    for x, (before, after) in zip(train, augmented):
        # the band of the whole image (projecting again changes nothing), then the crop
        assert torch.allclose(project(before.double(), pca, V).float(), before, atol=1e-5)
        assert torch.equal(x, after) and not torch.allclose(x, before, atol=1e-2)
    x_test, _ = finetune.data.load("folder", "test", str(fmnist_folder), 16)
    expected = project(x_test.double() / 255, pca, V).float()
    assert torch.allclose(test, expected, atol=1e-5)
    assert json.loads((tmp_path / "results.json").read_text())["input"] == "bottom 25%"


def test_bad_input_is_one_line_and_exit_2(fmnist_folder, pretrained, tmp_path, run):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(pretrained[0].read_bytes()[:1000])
    not_a_ckpt = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, not_a_ckpt)
    data_args = ["--data-dir", fmnist_folder]
    cases = [
        (linprobe, ["--ckpt", tmp_path / "missing.pt", *data_args]),
        (linprobe, ["--ckpt", corrupt, *data_args]),
        (linprobe, ["--ckpt", not_a_ckpt, *data_args]),
        (linprobe, ["--ckpt", pretrained[0], "--dataset", "fashion-mnist"]),  # 1x28x28, not 3x16x16
        (linprobe, ["--ckpt", pretrained[0], *data_args, "--pool", "max"]),
        (finetune, ["--ckpt", corrupt, "--dataset", "folder", *data_args]),
        (finetune, ["--init", "none", "--input", "bottom", "--dataset", "folder", *data_args]),
        (finetune, ["--dataset", "folder", *data_args]),  # neither --ckpt nor --init none
        (finetune, ["--ckpt", pretrained[0], "--init", "none", "--dataset", "folder", *data_args]),
        (finetune, ["--ckpt", pretrained[0], "--dim", 64, "--dataset", "folder", "--image-size", 16,
                    *data_args]),
        (finetune, ["--ckpt", pretrained[0], "--dataset", "folder", "--image-size", 20,
                    *data_args]),
    ]
    for script, args in cases:
        code, _, err = run(script, *args, "--out", tmp_path / "x")
        assert one_line_error(code, err), (script.__name__, args, err)
        assert not (tmp_path / "x" / "results.json").exists()


def test_report_prints_the_table_beside_the_paper(tmp_path, run):
    common = {"epochs": 5,
              "pretrain_config": {"dim": 192, "depth": 12, "patch_size": 2, "epochs": 400}}
    for name, r in {"a": {"dataset": "cifar10", "target": "bottom 25%", "eval": "finetune",
                          "accuracy": 0.5},
                    "b": {"dataset": "cifar10", "target": "bottom 25%", "eval": "linprobe",
                          "accuracy": 0.25, "knn": 0.2}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(r | common))
    (tmp_path / "a" / "summary.json").write_text(json.dumps(
        {"target": "bottom 25%", "train_seconds": 5400}))
    code, out, err = run(report, tmp_path)
    assert code == 0, err
    assert "\n1.5 hours of computing in all" in out
    row = next(line for line in out.splitlines() if "bottom 25%" in line)
    assert ("0.500, 5 ep" in row and "0.250 (kNN 0.200), 5 ep" in row and "0.902" in row
            and "0.638" in row)
    assert one_line_error(*run(report, tmp_path / "empty")[::2])
    # An image folder is named as the dataset it holds only when asked, and then has the paper
    # beside it.
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text(json.dumps(
        {"dataset": "folder", "target": "original", "eval": "linprobe", "accuracy": 0.4} | common))
    row = next(line for line in run(report, tmp_path)[1].splitlines() if "original" in line)
    assert row.startswith("| folder |") and "0.615" not in row
    row = next(line for line in run(report, tmp_path, "--as", "cifar10")[1].splitlines()
               if "original" in line)
    assert row.startswith("| cifar10 (image folder) |") and "| 0.885 | 0.615 |" in row
    (tmp_path / "c" / "results.json").unlink()
    # --charts draws explained.svg next to each log that has explained variance.
    logs = [{"epoch": e, "explained": {"top 75%": e / 4, "bottom 25%": 0.0}} for e in (1, 2)]
    (tmp_path / "a" / "log.jsonl").write_text("".join(json.dumps(log) + "\n" for log in logs)
                                              + '{"epoch": 3, "ex')
    (tmp_path / "b" / "log.jsonl").write_text("".join(
        json.dumps({"epoch": e, "test_accuracy": e / 10}) + "\n" for e in (1, 2, 3)))
    assert run(report, tmp_path, "--charts")[0] == 0
    assert ((tmp_path / "a" / "explained.svg").exists()
            and not (tmp_path / "b" / "explained.svg").exists())
    ET.fromstring((tmp_path / "a" / "explained.svg").read_text())  # well-formed
    # ... and one chart of the test curves: run b's three points, nothing for run a.
    svg = ET.fromstring((tmp_path / "test_curves.svg").read_text())
    ns = "{http://www.w3.org/2000/svg}"
    assert [t.text for t in svg.iter(ns + "text") if t.get("font-weight") == "bold"] == ["b"]
    assert len(svg.findall(f".//{ns}circle")) == 3 + 1  # and the dot beside its name


def test_monitor_lines_of_two_definitions_never_share_a_chart_and_withdrawn_ones_none(tmp_path):
    before = {"explained": {"top 75%": 0.99}}  # no explained_by: logged before issue 21
    after = {"explained": {"top 75%": 0.30}, "explained_by": report.EXPLAINED_BY}
    for logs, definition, drawn in (([after, before], older.OLD_EXPLAINED_BY, 1),
                                    ([before, after, after], report.EXPLAINED_BY, 2)):
        report.explained_chart(logs, tmp_path / "e.svg", "the image")
        svg = ET.fromstring((tmp_path / "e.svg").read_text())
        ns = "{http://www.w3.org/2000/svg}"
        assert definition in " ".join(t.text or "" for t in svg.iter(ns + "text"))
        assert len(svg.findall(f".//{ns}circle")) == drawn
    withdrawn = {"explained_withdrawn": {"top 75%": 0.9}, "explained_by": older.WITHDRAWN}
    norm_pix = {"explained": None, "explained_by": report.explained_by({"norm_pix_loss": True})}
    report.explained_chart([withdrawn, norm_pix], tmp_path / "w.svg", "the image")
    assert not (tmp_path / "w.svg").exists()


def test_band_table_stands_beside_balestriero_and_lecun(tmp_path):
    config = {"dim": 64, "depth": 4, "patch_size": 4, "seed": 0}
    runs = {"top 90%": 0.61, "top 75%": 0.58, "bottom 20%": 0.33, "original": 0.7}
    def result(band, accuracy, dim=64):
        return {"dataset": "cifar10", "target": "no pretraining", "eval": "finetune", "input": band,
                "accuracy": accuracy, "epochs": 30, "config": config | {"dim": dim},
                "pretrain_config": None}
    # A whole-image run of another model has no band runs to stand beside.
    table = report.table([result(band, accuracy) for band, accuracy in runs.items()]
                         + [result("original", 0.9, 32)])
    bands = table.split("\n\n")[1].splitlines()
    rows = {line.split(" | ")[1]: line for line in bands[2:]}
    assert rows["top 90% band"].endswith("| 0.610, 30 ep | 0.45 |")
    assert rows["bottom 20% band"].endswith("| 0.330, 30 ep | 0.55 |")
    assert rows["top 75% band"].endswith("| 0.580, 30 ep | - |")  # a band they did not report
    # The same model on the whole image heads its bands, and stays in the first table too.
    assert bands[2] == ("| cifar10 | the whole image | no pretraining | ViT 64x4, patch 4 "
                        "| 0.700, 30 ep | - |")
    assert len(bands) == 2 + 4 and "0.900" not in table.split("\n\n")[1]
    assert "| 0.700, 30 ep | - |" in table.split("\n\n")[0] and "| 0.900, 30 ep | - |" in table


def test_the_table_names_each_fine_tunes_layer_decay():
    """A pretrained encoder's fine-tune (the recipe's 0.75) and one from scratch (1: no layer has
    learned more than another) differ in more than the init: each cell names its layer decay."""
    model = {"dim": 64, "depth": 4, "patch_size": 4, "seed": 0}
    pre = model | {"target": "original", "epochs": 10, "aug": "flip"}
    def result(target, decay, pretrain_config):
        return {"dataset": "cifar10", "target": target, "eval": "finetune",
                "accuracy": 0.5 + decay / 10, "epochs": 5, "config": model | {"layer_decay": decay},
                "pretrain_config": pretrain_config}
    rows = report.table([result("original", 0.75, pre),
                         result("no pretraining", 1.0, None)]).splitlines()[2:]
    assert ("| 0.575, 5 ep, layer decay 0.75 |" in rows[1]
            and "--aug flip, 10 pretrain ep" in rows[1])
    assert (rows[0].startswith("| cifar10 | no pretraining |")
            and "| 0.600, 5 ep, layer decay 1 |" in rows[0])


def test_probe_chart_puts_each_copy_at_its_epoch_and_the_table_names_it(tmp_path, run):
    def probe(name, target, epoch, accuracy, seed=0, epochs=40, **aug):
        # older configs: no aug, which was crop
        c = {"target": target, "pct": 25, "masking": "random", "dim": 64, "depth": 2,
             "patch_size": 4, "epochs": epochs, "seed": seed} | aug
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"dataset": "folder", "target": "?", "eval": "linprobe", "accuracy": accuracy,
             "epochs": 30, "pretrain_config": c, "config": {"seed": 0}}
            | ({} if epoch is None else {"pretrain_epoch": epoch})))
    for seed in (0, 1):
        probe(f"o{seed}/lp-0000", "original", 0, 0.40 + 0.02 * seed, seed)
    for epoch, accuracy in ((5, 0.45), (10, 0.50), (40, 0.60)):
        probe(f"o0/lp-{epoch}", "original", epoch, accuracy)
        probe(f"b0/lp-{epoch}", "bottom", epoch, accuracy - 0.05)
    # an older run: its final weights, no epoch recorded
    probe("ten/lp", "original", None, 0.48, epochs=10)
    probe("o1/lp-10", "original", 10, 0.54, seed=1)  # a second seed at epoch 10: mean 0.52
    # seed 0's init again: no third seed
    probe("f0/lp-0000", "original", 0, 0.40, epochs=100, aug="flip")
    code, out, err = run(report, tmp_path, "--charts")
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| folder")]
    assert [r.split(" | ")[1:3] for r in rows[:5]] == [
        ["bottom 25%", "ViT 64x2, patch 4, --aug crop, pretrain ep 5 of 40"],
        ["bottom 25%", "ViT 64x2, patch 4, --aug crop, pretrain ep 10 of 40"],
        ["bottom 25%", "ViT 64x2, patch 4, --aug crop, 40 pretrain ep"],
        ["original", "ViT 64x2, patch 4, --aug crop, 10 pretrain ep"],
        ["original", "ViT 64x2, patch 4, --aug crop, pretrain ep 5 of 40"]]
    # The flip run's init stands apart from the crop runs', named by its augmentation.
    assert any("--aug flip, pretrain ep 0 of 100 | - | 0.400, 30 ep" in r for r in rows)
    assert any("untrained (MAE init)" in r and "0.410 ± 0.014 (n=2)" in r for r in rows)
    # ... and after the tables, the probe against the epoch of the schedule probed at several
    epochs = out.split("Linear probe (30 ep) against pretraining epoch: folder, ViT 64x2, patch 4, "
                       "--aug crop, 40 pretrain ep")
    assert len(epochs) == 2
    assert "| 10 | 0.520 ± 0.028 (n=2) | 0.450 | -0.070, -2.5 sd |" in epochs[1]  # sd: 0.50, 0.54
    svg = ET.fromstring((tmp_path / "probe_epochs.svg").read_text())
    ns = "{http://www.w3.org/2000/svg}"
    legend = [t.text for t in svg.iter(ns + "text") if t.get("font-weight") == "bold"]
    assert legend == ["bottom 25%, ViT 64x2, patch 4, --aug crop, 40 ep",
                      "original, ViT 64x2, patch 4, --aug crop, 10 ep",
                      "original, ViT 64x2, patch 4, --aug crop, 40 ep",
                      "untrained (MAE init), ViT 64x2, patch 4, n=2"]
    # A target keeps its colour across schedules, and a schedule its shape: the legend's, and the
    # points'.
    colour = dict(zip(legend, (t.get("fill") for t in svg.iter(ns + "text")
                               if t.get("font-weight") == "bold")))
    assert (colour[legend[1]] == colour[legend[2]]
            and len({colour[legend[i]] for i in (0, 2, 3)}) == 3)
    # 10 ep: a square (and its legend's); 40 ep: dots
    assert [e.tag.removeprefix(ns) for e in svg
            if e.get("fill") == colour[legend[1]] and e.tag != ns + "text"] == [
        "rect", "rect", "circle", "circle", "circle", "circle"]
    lines = {legend[i]: [tuple(map(float, p.split(","))) for p in line.get("points").split()]
             for i, line in enumerate(svg.iter(ns + "polyline"))}
    xs = [x for x, _ in lines["original, ViT 64x2, patch 4, --aug crop, 40 ep"]]
    # 5, 10, 40
    assert len(xs) == 3 and (xs[2] - xs[1]) == pytest.approx(6 * (xs[1] - xs[0]), abs=0.5)
    # a lone point at epoch 10
    assert len(lines["original, ViT 64x2, patch 4, --aug crop, 10 ep"]) == 1
    level = lines["untrained (MAE init), ViT 64x2, patch 4, n=2"]
    assert len({y for _, y in level}) == 1 and level[0][0] < xs[0]  # a level from epoch 0 on
    # Where seeds spread, a bar spans them: the second seed's epoch 10 and the untrained pair, no
    # more.
    def height(accuracy):  # on the y scale of the line through 0.45 (epoch 5) and 0.60 (epoch 40)
        (_, y5), _, (_, y40) = lines["original, ViT 64x2, patch 4, --aug crop, 40 ep"]
        return y5 + (y40 - y5) * (accuracy - 0.45) / 0.15
    assert (lines["original, ViT 64x2, patch 4, --aug crop, 40 ep"][1][1]
            == pytest.approx(height(0.52), abs=0.2))
    bars = [[float(v) for v in re.findall(r"-?[\d.]+", p.get("d"))] for p in svg.iter(ns + "path")]
    assert sorted((b[3], b[1], b[5]) for b in bars) == [  # each bar's x, and the y of its two ends
        pytest.approx((level[0][0], height(0.42), height(0.40)), abs=0.2),
        pytest.approx((xs[1], height(0.54), height(0.50)), abs=0.2)]


def test_probe_chart_gathers_as_the_tables_do(tmp_path, monkeypatch):
    """Each line of the chart is one table cell's runs: datasets and models apart (each named, and
    a shape of its own), each measurement once (a probe repeated on the same weights is one seed,
    not two); an untrained level per dataset and encoder, one seed's init counted once across
    schedules and decoders (the probe sees only the encoder); lines that nothing in their configs
    tells apart are still two lines."""
    def probe(accuracy, epoch, seed=0, dataset="cifar10", dim=64, epochs=20, **more):
        pre = {"target": "original", "pct": None, "dim": dim, "depth": 2, "patch_size": 4,
               "epochs": epochs, "seed": seed, "aug": "flip", "decoder_depth": 2} | more
        return {"dataset": dataset, "target": report.UNTRAINED if epoch == 0 else "original",
                "eval": "linprobe", "accuracy": accuracy, "epochs": 30, "pretrain_epoch": epoch,
                "config": {"dataset": dataset, "seed": 0,
                           "tensors_sha1": f"{dataset} {dim} {seed} {epoch} {epochs}"},
                "pretrain_config": pre}
    results = [probe(0.40, 0), probe(0.50, 10), probe(0.60, 20),
               probe(0.54, 10),  # seed 0's epoch 10 probed again: their mean, 0.52
               probe(0.42, 0, seed=1), probe(0.56, 10, seed=1), probe(0.62, 20, seed=1),
               probe(0.40, 0, epochs=100, decoder_depth=4),  # seed 0's encoder again: no third
               probe(0.45, 0, dim=128), probe(0.55, 10, dim=128), probe(0.65, 20, dim=128),
               probe(0.30, 0, dataset="stl10"), probe(0.35, 10, dataset="stl10"),
               probe(0.40, 20, dataset="stl10")]
    drawn = {}
    def line_chart(series, *args, ranges, styles, **kwargs):
        drawn.update(series=series, ranges=ranges, styles=styles, xs=kwargs["xs"])
        return "<svg/>"
    monkeypatch.setattr(report, "line_chart", line_chart)
    assert report.probe_chart(results, tmp_path / "chart.svg")
    assert drawn["xs"] == [0, 10, 20]
    small, large = "ViT 64x2, patch 4", "ViT 128x2, patch 4"
    level = f"{report.UNTRAINED}, "
    rounded = {name: [v if v is None else round(v, 6) for v in values]
               for name, values in drawn["series"].items()}
    assert rounded == {
        f"cifar10: original, {large}, --aug flip, 20 ep": [None, 0.55, 0.65],
        f"cifar10: original, {small}, --aug flip, 20 ep": [None, 0.54, 0.61],
        f"stl10: original, {small}, --aug flip, 20 ep": [None, 0.35, 0.40],
        f"cifar10: {level}{small}, n=2": [0.41] * 3,
        f"cifar10: {level}{large}, n=1": [0.45] * 3,
        f"stl10: {level}{small}, n=1": [0.30] * 3}
    ranges = drawn["ranges"]
    assert ranges[f"cifar10: original, {small}, --aug flip, 20 ep"] == [
        None, pytest.approx((0.52, 0.56)), pytest.approx((0.60, 0.62))]
    assert ranges[f"cifar10: {level}{small}, n=2"] == [pytest.approx((0.40, 0.42))]
    assert ranges[f"stl10: original, {small}, --aug flip, 20 ep"] == [None] * 3
    assert ranges[f"stl10: {level}{small}, n=1"] == [None]
    # one target, one colour; each model and dataset its own shape
    lines = [style for name, style in drawn["styles"].items() if level not in name]
    assert len({colour for colour, _ in lines}) == 1 and len({shape for _, shape in lines}) == 3
    # Two runs that differ only in a key an older third lacks (the data's hash): apart can name
    # nothing between them, yet they are two lines, never one drawn with a bar as if of seeds.
    older = probe(0.30, 10, seed=2, blr=3e-3), probe(0.35, 20, seed=2, blr=3e-3)
    hashed = [probe(0.50, 10, blr=1.5e-3, data_sha1="a"),
              probe(0.60, 20, blr=1.5e-3, data_sha1="a"),
              probe(0.70, 10, seed=1, blr=1.5e-3, data_sha1="b"),
              probe(0.80, 20, seed=1, blr=1.5e-3, data_sha1="b")]
    assert report.probe_chart(hashed + list(older), tmp_path / "chart.svg")
    name = f"original, {small}, --aug flip, 20 ep (pretrain.blr 0.0015)"
    assert {n: v for n, v in drawn["series"].items() if "blr 0.0015" in n} == {
        name: [0.50, 0.60], f"{name} #2": [0.70, 0.80]}


def test_results_computed_in_other_precisions_are_told_apart():
    """A probe of bf16 features (autocast, a GPU's default) and one of fp32 features (a CPU's) are
    two procedures, not two seeds of one: the cell names each, the epoch table draws no gap between
    them, and a fine-tune's epochs under autocast name its precision. A result from before the
    precision was recorded joins the one precision it would be gathered with, and stands apart
    where there are two, in whatever order the results come; the flags that chose a precision
    (--amp, whose default is the device's) set nothing apart where the precision is known."""
    def result(eval, accuracy, seed, used, target="original", epoch=10, amp=None):
        pre = {"target": target, "pct": 25, "dim": 64, "depth": 2, "patch_size": 4, "epochs": 100,
               "seed": seed, "aug": "flip"}
        return {"dataset": "folder", "target": report.target_name(pre), "eval": eval,
                "accuracy": accuracy, "epochs": 5, "config": {"seed": 0, "amp": amp},
                "pretrain_config": pre, "pretrain_epoch": epoch, "used": used}
    def row(results, epoch=10):
        text = report.table(report.with_precisions(results))
        return next(r for r in text.splitlines() if f"pretrain ep {epoch} of 100" in r)
    fp32, bf16 = {"precision": "fp32"}, {"precision": "bf16"}
    older = result("linprobe", 0.54, 2, {})  # older code: said nothing
    probes = [result("linprobe", 0.50, 0, fp32), result("linprobe", 0.52, 1, bf16, amp=True)]
    def cell(results):  # the linear-probe cell's groups, in any order
        return set(row(results).split(" | ")[4].split("; "))
    for order in (probes + [older], [older] + probes, probes[::-1] + [older]):
        assert cell(order) == {"0.500, 5 ep [precision fp32]", "0.520, 5 ep [precision bf16]",
                               "0.540, 5 ep [precision not recorded]"}
    # One precision around it: the older result joins it, first or last.
    for order in ([older, probes[0]], [probes[0], older]):
        assert cell(order) == {"0.520 ± 0.028 (n=2), 5 ep"}
    # bf16 chosen by --amp on a CPU and by a GPU's default: one procedure, two seeds.
    cpu_amp = result("linprobe", 0.56, 3, bf16, amp=True)
    gpu_default = probes[1] | {"config": {"seed": 0, "amp": None}}
    assert cell([gpu_default, cpu_amp]) == {"0.540 ± 0.028 (n=2), 5 ep"}
    later = [result("linprobe", 0.60, 0, bf16, target="bottom")]
    init = result("linprobe", 0.4, 0, fp32, epoch=0)
    [text] = report.epoch_tables(report.with_precisions(probes[:1] + later + [init]))
    assert text.splitlines()[-1] == (
        "| 10 | 0.500 | 0.600 | - (precision bf16 against precision fp32) |")
    [text] = report.epoch_tables(report.with_precisions(probes[1:2] + later + [init]))
    assert text.splitlines()[-1] == "| 10 | 0.520 | 0.600 | +0.080 |"
    def finetune(bf16_epochs=None, fp16_epochs=None):
        used = {k: v for k, v in (("bf16_epochs", bf16_epochs), ("fp16_epochs", fp16_epochs))
                if v is not None}
        return report.recorded_precision(result("finetune", 0.7, 0, used, epoch=100))
    assert [finetune([], []), finetune([1, 2, 3, 4, 5]), finetune([4, 5]), finetune([], [1]),
            finetune(fp16_epochs=[1, 2, 3, 4, 5]), finetune()] == [
        "fp32", "bf16", "bf16+fp32", "fp16+fp32", "fp16", None]


def test_pretrainings_in_other_precisions_are_told_apart(tmp_path, run):
    """Weights pretrained under bf16 autocast (a GPU's default) and in fp32 (a CPU's) come of two
    procedures, not two seeds of one: a probe's cell names each pretraining's precision (the one
    its checkpoint's log says), as the monitor table does each run's (its summary's epochs under
    autocast); one that older code did not record joins the one precision around it, and stands
    apart beside two, or one a result of the same weights says. An initialisation, which no
    pretraining step has touched, has none."""
    def probe(accuracy, seed, precision, epoch=10, target="original", weights=None):
        pre = {"target": target, "pct": 25, "dim": 64, "depth": 2, "patch_size": 4,
               "epochs": 40, "seed": seed, "aug": "flip"}
        name = report.target_name(pre) if epoch else report.UNTRAINED  # as read_result names it
        return {"dataset": "folder", "target": name, "eval": "linprobe", "accuracy": accuracy,
                "epochs": 30, "config": {"seed": 0, "tensors_sha1": weights},
                "pretrain_config": pre, "pretrain_epoch": epoch,
                "pretrain_precision": precision, "used": {"precision": "fp32"}}
    def cell(results, epoch=10):
        rows = report.table(report.with_precisions(results)).splitlines()
        row = next(r for r in rows if f"pretrain ep {epoch} of 40" in r)
        return set(row.split(" | ")[4].split("; "))
    fp32, bf16, older_probe = probe(0.50, 0, "fp32"), probe(0.52, 1, "bf16"), probe(0.54, 2, None)
    for order in ([fp32, bf16, older_probe], [older_probe, bf16, fp32]):
        assert cell(order) == {"0.500, 30 ep [pretrain.precision fp32]",
                               "0.520, 30 ep [pretrain.precision bf16]",
                               "0.540, 30 ep [pretrain.precision not recorded]"}
    assert cell([older_probe, bf16]) == {"0.530 ± 0.014 (n=2), 30 ep"}
    inits = [probe(0.40, 0, None, epoch=0), probe(0.42, 1, None, epoch=0), fp32, bf16]
    assert cell(inits, epoch=0) == {"0.410 ± 0.014 (n=2), 30 ep"}
    scratch = probe(0.3, 0, None) | {"pretrain_config": None, "target": "no pretraining"}
    told = report.with_precisions(inits + [older_probe, scratch])
    assert [r["pretrain_precision"] for r in told] == [None, None, "fp32", "bf16", "not recorded",
                                                       None]
    # The same weights were pretrained in one precision: an older probe of them (a copy kept by
    # code that kept no log) is the one measurement, not a third group.
    again = [fp32 | {"config": {"seed": 0, "tensors_sha1": "w"}}, bf16, probe(0.50, 0, None,
                                                                           weights="w")]
    assert cell(again) == {"0.500, 30 ep [pretrain.precision fp32]",
                           "0.520, 30 ep [pretrain.precision bf16]"}
    # Whichever result of the original target comes first, the gap to a bf16-pretrained bottom
    # target is withheld: the older one has the precision of those around it.
    bottom, init = probe(0.60, 0, "bf16", target="bottom"), probe(0.40, 0, None, epoch=0)
    for order in ([older_probe, fp32, bottom, init], [fp32, older_probe, bottom, init]):
        [text] = report.epoch_tables(report.with_precisions(order))
        assert text.splitlines()[-1] == (
            "| 10 | 0.520 ± 0.028 (n=2) | 0.600 | - (pretrain.precision bf16 against "
            "pretrain.precision fp32) |")
    # An older probe that recorded neither precision: its weights' say fp32, and so the probes it
    # would be gathered with say theirs; the same measurement, whatever runs are elsewhere.
    neither = probe(0.50, 0, None, weights="w") | {"used": None}
    elsewhere = probe(0.60, 1, "bf16", epoch=40) | {"used": {"precision": "bf16"}}
    assert cell([neither, fp32 | {"config": {"seed": 0, "tensors_sha1": "w"}}, elsewhere]) == {
        "0.500, 30 ep"}
    # The evaluation's precision filled in alike whether or not the target read the PCA (an
    # initialisation, whose probe was bf16, is no result the copies of a target are gathered with).
    for target in ("bottom", "original"):
        copies = [probe(0.50, 0, "fp32", target=target) | {"used": None},
                  probe(0.54, 1, "fp32", target=target),
                  probe(0.40, 0, None, epoch=0) | {"used": {"precision": "bf16"}}]
        copies[0]["pretrain_config"]["pca_fit"] = copies[1]["pretrain_config"]["pca_fit"] = "views"
        assert cell(copies) == {"0.520 ± 0.028 (n=2), 30 ep"}, target
    # A checkpoint written mid-epoch holds steps that no line of its log covers.
    assert report.pretrain_precision({"log": [{"epoch": 1, "bf16": False}], "step": 0}) == "fp32"
    assert report.pretrain_precision({"log": [{"epoch": 1, "bf16": False}], "step": 5}) is None
    # What a checkpoint's log says: nothing for an initialisation's, or a line that says nothing.
    said = [{"epoch": 1, "bf16": True}, {"epoch": 2, "bf16": False}, {"epoch": 3, "bf16": True}]
    assert report.logged_precision(said) == "bf16+fp32"
    assert report.logged_precision(said[:1] + [{"epoch": 2, "bf16": False, "fp16": True}]) == (
        "bf16+fp16")
    unsaid = ([], None, said + [{"epoch": 4}])
    assert [report.logged_precision(log) for log in unsaid] == [None] * 3
    # The monitor table, from each summary's epochs under autocast.
    def pretraining(name, seed, used):
        config = {"dataset": "folder", "target": "original", "pct": 25, "dim": 64, "depth": 2,
                  "patch_size": 4, "epochs": 2, "seed": seed, "aug": "flip"}
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"config": config, "train_seconds": 60} | ({"used": used} if used else {})))
        lines = [{"epoch": e, "loss": 0.1 * seed + 0.2, "trivial_loss": 1.0, "knn": 0.4}
                 for e in (1, 2)]
        (tmp_path / name / "log.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    def monitor():
        code, out, err = run(report, tmp_path)
        assert code == 0, err
        rows = out.split("--knn-test images\n\n")[1].split("\n\n")[0].splitlines()[2:]
        return {row.split(" | ")[2]: row.split(" | ")[3] for row in rows}
    (tmp_path / "lp").mkdir()
    (tmp_path / "lp" / "results.json").write_text(json.dumps(fp32))
    pretraining("fp32", 0, {"bf16_epochs": []})
    pretraining("older", 2, None)
    scale = "ViT 64x2, patch 4, --aug flip, 2 pretrain ep"
    assert monitor() == {scale: "0.300 ± 0.141 (n=2)"}
    pretraining("bf16", 1, {"bf16_epochs": [1, 2], "fp16_epochs": []})
    assert monitor() == {f"{scale} (precision fp32)": "0.200",
                         f"{scale} (precision bf16)": "0.300",
                         f"{scale} (precision not recorded)": "0.400"}
    # A summary's epochs under autocast that are not a list: refused in one line.
    summary = json.loads((tmp_path / "bf16" / "summary.json").read_text())
    (tmp_path / "bf16" / "summary.json").write_text(json.dumps(
        summary | {"used": {"bf16_epochs": 2}}))
    code, out, err = run(report, tmp_path)
    assert one_line_error(code, err) and "bf16/summary.json" in err and out == ""


def test_epoch_table_gives_each_targets_gap_to_the_original_at_each_epoch():
    """The findings' numbers: at each pretraining epoch, each target's probes (seeds gathered) and
    its gap to the original target's mean, also in units of the table's pooled seed spread; a
    target equal to the original's gains nothing (+0.000, +0.0 sd)."""
    def probe(target, epoch, accuracy, knn, seed=0, epochs=100, aug="flip", dataset="folder",
              step=0, **more):
        pre = {"target": target, "pct": 25, "dim": 64, "depth": 2, "patch_size": 4,
               "epochs": epochs, "seed": seed, "aug": aug, "blr": 1.5e-3} | more
        # as read_result names it
        name = report.UNTRAINED if epoch == 0 else report.target_name(pre)
        return {"dataset": dataset, "target": name, "eval": "linprobe", "accuracy": accuracy,
                "knn": knn, "epochs": 30, "config": {"seed": 0, "pool": "cls"},
                "pretrain_config": pre, "pretrain_epoch": epoch, "pretrain_step": step}
    results = [probe("original", 10, 0.50, 0.40), probe("original", 10, 0.52, 0.44, seed=1),
               probe("bottom", 10, 0.45, 0.41), probe("bottom", 10, 0.47, 0.41, seed=1),
               # the original's twin
               probe("top", 10, 0.50, 0.40), probe("top", 10, 0.52, 0.44, seed=1),
               probe("original", 100, 0.60, 0.50), probe("bottom", 100, 0.63, None),
               probe("bottom", 40, 0.58, 0.48),  # no original at epoch 40: no gap
               # one init: in its run's column
               probe("original", 0, 0.40, 0.30), probe("bottom", 0, 0.40, 0.30),
               probe("original", 40, 0.9, 0.9, step=7),  # weights of a stop mid-epoch: no epoch
               probe("original", 10, 0.9, 0.9, aug="crop"),  # another schedule, one epoch: no table
               probe("original", 10, 0.9, 0.9, dataset="stl10")]
    [text] = report.epoch_tables(results)
    title, _, header, _, *rows = text.splitlines()
    # Pooled past epoch 0: three cells of two seeds, 0.01 about their means (kNN 0.02, 0, 0.02).
    assert title == ("Linear probe (30 ep) against pretraining epoch: folder, ViT 64x2, patch 4, "
                     "--aug flip, 100 pretrain ep; sd, the seed spread pooled over its cells past "
                     "epoch 0 (a scale, not a test: a run's epochs are not independent draws): "
                     "probe 0.014, kNN 0.023, from original seeds 0, 1 (own probe sd 0.014); "
                     "bottom 25% seeds 0, 1 (own probe sd 0.014); top 25% seeds 0, 1 (own probe sd "
                     "0.014)")
    assert header == ("| epoch | original | bottom 25% | top 25% | bottom 25% − original "
                      "| top 25% − original |")
    assert rows == [
        "| 0 | 0.400 (kNN 0.300) | 0.400 (kNN 0.300) | - | same weights | - |",
        "| 10 | 0.510 ± 0.014 (n=2) (kNN 0.420 ± 0.028 (n=2)) "
        "| 0.460 ± 0.014 (n=2) (kNN 0.410 ± 0.000 (n=2)) "
        "| 0.510 ± 0.014 (n=2) (kNN 0.420 ± 0.028 (n=2)) "
        "| -0.050, -3.5 sd (kNN -0.010, -0.4 sd) | +0.000, +0.0 sd (kNN +0.000, +0.0 sd) |",
        "| 40 | - | 0.580 (kNN 0.480) | - | - | - |",
        "| 100 | 0.600 (kNN 0.500) | 0.630 | - | +0.030, +2.1 sd | - |"]  # no kNN: no kNN gap
    # Seeds that differ in more than the seed have no one mean: their cell names each, and no gap.
    other_lr = probe("bottom", 10, 0.30, 0.30, seed=1, blr=3e-3)
    [text] = report.epoch_tables(results[:3] + [other_lr, results[6]]
                                 + [probe("bottom", 100, 0.5, 0.5)])
    rows = text.splitlines()[4:]
    assert rows[0].endswith("| 0.450 (kNN 0.410) [pretrain.blr 0.0015]; "
                            "0.300 (kNN 0.300) [pretrain.blr 0.003] | - |")
    assert rows[1] == ("| 100 | 0.600 (kNN 0.500) | 0.500 (kNN 0.500) "
                       "| -0.100, -7.1 sd (kNN +0.000, +0.0 sd) |")  # the original's seeds alone
    # Nor have two targets pretrained otherwise (here at another lr) a gap, though each has a mean.
    [text] = report.epoch_tables(results[:2] + [probe("bottom", 10, 0.45, 0.41, blr=3e-3)]
                                 + results[6:8])
    assert text.splitlines()[4].endswith(
        "| 0.450 (kNN 0.410) | - (pretrain.blr 0.003 against pretrain.blr 0.0015) |")
    assert report.epoch_tables(results[:2]) == []  # one epoch: nothing against epoch


def test_epoch_table_gap_in_spreads_from_unrounded_means_and_none_where_seeds_agree():
    """The sd unit of the gaps: from the unrounded means; none where seeds agree exactly (not a
    mean's rounding turned into a huge multiple), nor in a table that has no gap to read by it."""
    def probe(target, epoch, accuracy, seed=0):
        pre = {"target": target, "pct": 25, "dim": 64, "depth": 2, "patch_size": 4,
               "epochs": 100, "seed": seed, "aug": "flip"}
        name = report.UNTRAINED if epoch == 0 else report.target_name(pre)
        return {"dataset": "folder", "target": name, "eval": "linprobe", "accuracy": accuracy,
                "epochs": 30, "config": {"seed": 0}, "pretrain_config": pre,
                "pretrain_epoch": epoch}
    init = probe("original", 0, 0.40)
    unrounded = [probe("original", 10, 0.4523), probe("original", 10, 0.4601, seed=1),
                 probe("bottom", 10, 0.4712)]
    [text] = report.epoch_tables([init] + unrounded)
    # gap 0.4712 - 0.4562 over sd 0.0039 * sqrt(2): 2.72 (rounded means would give 2.76)
    assert text.splitlines()[-1].endswith("| +0.015, +2.7 sd |")
    assert text.splitlines()[0].endswith("probe 0.006, from original seeds 0, 1 (own probe sd "
                                         "0.006)")
    # Seeds of one target far apart beside another's close together: the pooled sd lies between,
    # and each target's own spread is named beside its seeds, so that the reader sees them unlike.
    apart = [probe("original", 10, 0.50), probe("original", 10, 0.502, seed=1),
             probe("bottom", 10, 0.45), probe("bottom", 10, 0.55, seed=1)]
    [text] = report.epoch_tables([init] + apart)
    assert text.splitlines()[0].endswith("probe 0.050, from original seeds 0, 1 (own probe sd "
                                         "0.001); bottom 25% seeds 0, 1 (own probe sd 0.071)")
    agreeing = [probe("original", 10, 0.7, seed) for seed in (0, 1, 2)]
    agreeing.append(probe("bottom", 10, 0.72))
    [text] = report.epoch_tables([init] + agreeing)
    assert text.splitlines()[-1].endswith("| +0.020 |")
    assert "probe 0.000, from original seeds 0, 1, 2 (own probe sd 0.000)" in text.splitlines()[0]
    [text] = report.epoch_tables([init] + unrounded[:2])  # the original alone: no gap, no sd
    assert text.splitlines()[0].endswith("--aug flip, 100 pretrain ep")


def test_pooled_seed_spread_measures_each_seed_about_its_own_cell():
    """The unit of the epoch table's gaps: the seeds' sample standard deviation, each about its own
    cell's mean, over sum(n - 1) degrees of freedom; 0 where seeds agree however far apart the
    cells (not a mean's rounding error); none without a second seed."""
    assert report.pooled_spread([[0.40, 0.40], [0.90, 0.90, 0.90]]) == 0.0
    assert report.pooled_spread([[0.7, 0.7, 0.7]]) == 0.0  # their float mean is not 0.7
    sd = report.pooled_spread([[0.50, 0.52], [0.45, 0.47], [0.63]])
    assert math.isclose(sd, (0.0004 / 2) ** 0.5)  # 2 x 0.01² a cell, over 1 + 1
    sd = report.pooled_spread([[0.1, 0.2, 0.3], [0.5, 0.7]])  # 0.02 + 0.02 over 2 + 1
    assert math.isclose(sd, (0.04 / 3) ** 0.5)
    assert report.pooled_spread([[0.5], [0.6]]) is None
    assert report.pooled_spread([]) is None


def test_one_initialisation_probed_in_two_runs_is_one_row_and_one_measurement():
    """An epoch-0 copy is the seed's initialisation, whatever target its run went on to: the same
    weights probed in an original and a bottom-25% run make one row and count once (no n=2, no
    spread of 0), while a second seed, a second probe seed, or copies with no hash each count."""
    def probe(target, accuracy, seed=0, probe_seed=0, sha1="init-of-seed-0", epoch=0):
        pre = {"target": target, "pct": 25 if target == "bottom" else None, "dim": 64, "depth": 2,
               "patch_size": 4, "epochs": 100, "seed": seed, "aug": "flip"}
        return {"dataset": "folder", "target": report.UNTRAINED if epoch == 0 else target,
                "eval": "linprobe", "accuracy": accuracy, "knn": accuracy - 0.1, "epochs": 30,
                "config": {"seed": probe_seed, "tensors_sha1": sha1}, "pretrain_config": pre,
                "pretrain_epoch": epoch}
    def untrained_rows(results):
        return [row for row in report.table(results).splitlines() if report.UNTRAINED in row]
    one_init = [probe("original", 0.40), probe("bottom", 0.40)]
    [row] = untrained_rows(one_init)
    assert "| - | 0.400 (kNN 0.300), 30 ep | - | - |" in row and "pct" not in row
    # A probe of these weights again, run otherwise (nondeterministic): one measurement, its mean.
    [row] = untrained_rows(one_init + [probe("bottom", 0.44)])
    assert "| 0.413 (kNN 0.313), 30 ep |" in row
    [row] = untrained_rows(one_init + [probe("original", 0.44, seed=1, sha1="init-of-seed-1")])
    assert "| 0.420 ± 0.028 (n=2) (kNN 0.320 ± 0.028 (n=2)), 30 ep |" in row
    [row] = untrained_rows(one_init + [probe("original", 0.46, probe_seed=1)])
    assert "| 0.430 ± 0.042 (n=2)" in row  # (0.40 + 0.40) / 2 and 0.46, apart
    # The init is drawn by the seed alone: each run's own file hash (older probes) names it no less.
    by_file = [probe("original", 0.40, sha1=None), probe("bottom", 0.44, sha1=None)]
    for r, name in zip(by_file, ("file-of-run-a", "file-of-run-b")):
        r["config"] = {"seed": 0, "ckpt_sha1": name}
    [row] = untrained_rows(by_file)
    assert "| 0.420 (kNN 0.320), 30 ep |" in row
    # Past epoch 0, only a hash says two results are one: with none, two.
    unnamed = [probe("original", 0.40, sha1=None, epoch=10),
               probe("original", 0.44, sha1=None, epoch=10)]
    [row] = [row for row in report.table(unnamed).splitlines() if "pretrain ep 10 of 100" in row]
    assert "| 0.420 ± 0.028 (n=2)" in row
    # Past epoch 0 the target has acted: two targets, two rows, even from one hash (never so).
    trained = [probe("original", 0.50, epoch=10), probe("bottom", 0.50, epoch=10)]
    assert sum("pretrain ep 10 of 100" in row for row in report.table(trained).splitlines()) == 2
    # The epoch table's gap takes each cell's measurements: the repeat adds no weight to its cell.
    later = [probe("original", 0.50, epoch=10, sha1="o10"),
             probe("bottom", 0.46, epoch=10, sha1="b10"),
             probe("bottom", 0.46, epoch=10, sha1="b10"),
             probe("bottom", 0.40, epoch=10, sha1="b10s1", seed=1)]
    [text] = report.epoch_tables(one_init + later)
    assert text.splitlines()[4].endswith("| same weights |")  # one init in both: no finding
    # Two inits against one: still no target has acted, whatever the seeds drawn differ by.
    second_init = probe("original", 0.44, epoch=0, sha1="init1", seed=1)
    [text] = report.epoch_tables(one_init + [second_init] + later)
    assert text.splitlines()[4].endswith("| no target yet |")
    assert text.splitlines()[5:] == [
        "| 10 | 0.500 (kNN 0.400) | 0.430 ± 0.042 (n=2) (kNN 0.330 ± 0.042 (n=2)) "
        "| -0.070, -1.6 sd (kNN -0.070, -1.6 sd) |"]  # the spread of the bottom's seeds alone


def test_monitor_table_gives_each_runs_last_monitor_line_seeds_gathered(tmp_path, run):
    """What the band monitor shows each target learning, at the end: the last log line of each
    ended pretraining, seeds gathered; "-" for a figure a run has not (a band outside its target,
    a monitor measured otherwise, a norm-pix run), and an edited figure refused."""
    def pretraining(name, target, seed, last, pct=25, **more):
        config = {"dataset": "folder", "target": target, "pct": pct, "dim": 64, "depth": 2,
                  "patch_size": 4, "epochs": 40, "seed": seed, "aug": "flip"} | more
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"config": config, "train_seconds": 1800}))
        first = {"epoch": 1, "loss": 9.0, "trivial_loss": 9.0, "knn": 0.1}  # not the end: not read
        (tmp_path / name / "log.jsonl").write_text(json.dumps(first) + "\n"
                                                   + json.dumps({"epoch": 40} | last) + "\n")
    def line(loss, trivial, knn, **explained):
        return {"loss": loss, "trivial_loss": trivial, "knn": knn,
                "explained_by": report.EXPLAINED_BY,
                "explained": {"top 75%": None, "10-25%": None, "bottom 10%": None} | explained}
    pretraining("o0", "original", 0,
                line(0.2, 1.0, 0.40, **{"top 75%": 0.9, "10-25%": 0.4, "bottom 10%": 0.0}))
    pretraining("o1", "original", 1,
                line(0.3, 1.0, 0.44, **{"top 75%": 0.8, "10-25%": 0.4, "bottom 10%": 0.1}))
    pretraining("b0", "bottom", 0, line(0.6, 0.5, 0.50, **{"10-25%": 0.5, "bottom 10%": 0.125}))
    pretraining("b1", "bottom", 1, line(0.2, 0.1, 0.46, **{"10-25%": -0.1, "bottom 10%": 0.1}))
    # before the fix
    pretraining("old", "bottom", 0, {"loss": 0.1, "knn": 0.3, "explained": {"10-25%": 0.9}}, pct=10)
    pretraining("np", "original", 0,
                line(0.25, 1.0, 0.41) | {"explained_by": report.NORM_PIX_EXPLAINED_BY},
                norm_pix_loss=True, blr=1.5e-3)
    # A norm-pix run from before its trivial guess was fixed (that guess scored above zeros'): no
    # share; nor band figures, which its monitor (then named as the plain one's) made otherwise.
    pretraining("np-old", "original", 0, line(0.25, 1.6, 0.41, **{"top 75%": 0.9}),
                norm_pix_loss=True, blr=3e-3)
    # One made now with the band monitor off names its trivial guess alone: its share stands.
    pretraining("np-now", "original", 0, {"loss": 0.3, "trivial_loss": 1.0, "knn": 0.41,
                                          "trivial_by": report.TRIVIAL_BY},
                norm_pix_loss=True, blr=1e-3)
    (tmp_path / "lp").mkdir()
    (tmp_path / "lp" / "results.json").write_text(json.dumps(
        {"dataset": "folder", "target": "original", "eval": "linprobe", "accuracy": 0.4,
         "epochs": 30, "pretrain_config": {"dim": 64, "depth": 2, "patch_size": 4, "epochs": 40}}))
    (tmp_path / "fine").mkdir()  # a summary naming no pretraining config: its time, no row
    (tmp_path / "fine" / "summary.json").write_text(json.dumps({"train_seconds": 1800}))
    code, out, err = run(report, tmp_path, "--as", "cifar10")
    assert code == 0, err
    monitor = (out.split("kNN accuracy on its --knn-train / --knn-test images\n\n")[1]
               .split("\n\n")[0])
    scale = "ViT 64x2, patch 4, --aug flip, 40 pretrain ep"
    assert monitor.splitlines() == [
        "| dataset | target | scale | loss / trivial | top 75% | 10-25% | bottom 10% "
        "| kNN monitor |",
        "|---|---|---|---|---|---|---|---|",
        f"| cifar10 (image folder) | bottom 10% | {scale} | - | - | - | - | 0.300 |",
        f"| cifar10 (image folder) | bottom 25% | {scale} | 1.600 ± 0.566 (n=2) "
        "| - | 0.200 ± 0.424 (n=2) | 0.113 ± 0.018 (n=2) | 0.480 ± 0.028 (n=2) |",
        f"| cifar10 (image folder) | original | {scale} | 0.250 ± 0.071 (n=2) "
        "| 0.850 ± 0.071 (n=2) | 0.400 ± 0.000 (n=2) | 0.050 ± 0.071 (n=2) "
        "| 0.420 ± 0.028 (n=2) |",
        f"| cifar10 (image folder) | original, norm-pix loss | {scale} (blr 0.0015) "
        "| 0.250 | - | - | - | 0.410 |",
        f"| cifar10 (image folder) | original, norm-pix loss | {scale} (blr 0.001) "
        "| 0.300 | - | - | - | 0.410 |",
        f"| cifar10 (image folder) | original, norm-pix loss | {scale} (blr 0.003) "
        "| - | - | - | - | 0.410 |"]
    assert "\n4.5 hours of computing in all" in out  # nine summaries of 1800 s
    # A figure no monitor gives, of a wrong type, or a config no pretraining wrote: refused.
    for edit, config in (({"knn": 1.5}, {}), ({"knn": -0.5}, {}),
                         ({"explained": {"10-25%": 1.5}}, {}), ({"loss": -0.1}, {}),
                         ({"explained": [0.5]}, {}), ({"trivial_loss": "1"}, {}),
                         ({"loss": 1e308, "trivial_loss": 1e-308}, {}),  # a share past any float
                         ({}, {"dataset": ["folder"]}), ({}, {"dataset": None}),
                         ({}, {"epochs": "40"})):
        pretraining("edited", "bottom", 2, line(0.2, 1.0, 0.4) | edit, **config)
        code, out, err = run(report, tmp_path)
        assert code == 2 and ("edited/summary.json (or the log.jsonl beside it) "
                              "is not a pretraining run") in err
        assert one_line_error(code, err) and out == ""
        shutil.rmtree(tmp_path / "edited")
    # A log whose last line was cut short ends before its run did: its figures would be an epoch's
    # before the end, so it is named, not read.
    pretraining("cut", "bottom", 2, line(0.2, 1.0, 0.4))
    with open(tmp_path / "cut" / "log.jsonl", "a") as f:
        f.write('{"epoch": 41, "loss"')  # (a line cut short is dropped: the last whole one stays)
    assert run(report, tmp_path)[0] == 0
    for log in (json.dumps({"epoch": 39}) + "\n" + '{"epoch": 40, "lo', "",
                json.dumps({"epoch": True})):
        (tmp_path / "cut" / "log.jsonl").write_text(log)
        code, out, err = run(report, tmp_path)
        assert (one_line_error(code, err)
                and "cut/log.jsonl does not end with epoch 40, its run's last" in err)


def test_chart_draws_each_band_where_its_values_are():
    svg = ET.fromstring(report.line_chart({"top 75%": [0, 0.5, 1, -3],
                                           "bottom 25%": [1, None, 1, 1],
                                           "10-25%": [None, None, None, None]},
                                          "Title & co", "target: bottom 25%", "epoch",
                                          "share explained"))
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in svg.iter(ns + "text")]
    for words in ("Title & co", "target: bottom 25%", "epoch", "share explained", "top 75%",
                  "bottom 25%", "10-25%", "-0.25", "0", "0.5", "1", "2", "4",
                  "open triangle: beyond the axis"):
        assert words in texts, words
    lines = [[tuple(map(float, p.split(","))) for p in line.get("points").split()]
             for line in svg.iter(ns + "polyline")]
    top, bottom_1, bottom_2 = lines  # a missing value breaks the bottom band's line in two
    assert [len(top), len(bottom_1), len(bottom_2)] == [4, 1, 2]
    xs, ys = zip(*top)
    assert (xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.1)
            == pytest.approx(xs[3] - xs[2], abs=0.1))
    assert xs[1] > xs[0]  # epochs evenly spaced, left to right
    # 0.5 halfway between 0 and 1, up is more
    assert ys[1] == pytest.approx((ys[0] + ys[2]) / 2, abs=0.1) and ys[2] < ys[0]
    zero = [float(line.get("y1")) for line in svg.iter(ns + "line") if line.get("stroke") == "black"
            and line.get("y1") == line.get("y2")]
    assert zero == [pytest.approx(ys[0], abs=0.1)]  # the dark line is at 0
    # -3 is beyond the axis: drawn at its lower edge (-0.25, 0.25 below 0 as 0.5 is above it) as a
    # triangle.
    assert ys[3] == pytest.approx(ys[0] + (ys[0] - ys[1]) / 2, abs=0.1)
    triangle = next(svg.iter(ns + "polygon"))
    # points down, off the chart
    assert max(float(p.split(",")[1]) for p in triangle.get("points").split()) > ys[3]
    assert len(list(svg.iter(ns + "circle"))) == 3 + 3  # a dot per value inside the axis


def test_amp_pipeline_runs_under_bf16_autocast_on_cpu(fmnist_folder, tmp_path, run, monkeypatch):
    """The GPU's mixed-precision path (bf16 autocast, fused AdamW) run on a CPU: pretrain, linear
    probe and fine-tune, each step seen under autocast, the weights kept in float32."""
    autocast = []
    for cls in (model.MAE, model.Classifier, model.Encoder):
        forward = cls.forward
        monkeypatch.setattr(cls, "forward", lambda self, *a, _f=forward, _c=cls, **k: (
            autocast.append((_c.__name__, self.training, torch.is_autocast_enabled("cpu")))
            or _f(self, *a, **k)))
    code, out, err = run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 2,
                         "--out", tmp_path / "pre", "--target", "bottom", "--pct", 25, "--amp")
    assert code == 0 and "bf16 autocast" in out, err
    assert ("MAE", True, True) in autocast and ("MAE", True, False) not in autocast
    ckpt = torch.load(tmp_path / "pre" / "ckpt.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())
    assert (json.loads((tmp_path / "pre" / "summary.json").read_text())["used"]["bf16_epochs"]
            == [1, 2])
    autocast.clear()
    code, _, err = run(linprobe, "--ckpt", tmp_path / "pre" / "ckpt.pt",
                       "--data-dir", fmnist_folder, "--epochs", 2, "--out", tmp_path / "lp",
                       "--amp")
    assert code == 0 and autocast and all(on for _, _, on in autocast), err
    results = json.loads((tmp_path / "lp" / "results.json").read_text())
    assert results["used"]["precision"] == "bf16" and results["pretrain_precision"] == "bf16"
    autocast.clear()
    code, _, err = run(finetune, "--ckpt", tmp_path / "pre" / "ckpt.pt", "--dataset", "folder",
                       "--data-dir", fmnist_folder, "--image-size", 16, "--epochs", 2,
                       "--batch-size", 32, "--out", tmp_path / "ft", "--amp", "--input", "bottom",
                       "--pct", 25)
    assert code == 0, err
    assert ("Classifier", True, True) in autocast and ("Classifier", True, False) not in autocast
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert results["used"]["bf16_epochs"] == [1, 2] and 0 <= results["accuracy"] <= 1
    assert results["pretrain_precision"] == "bf16"
    # Without --amp a CPU run stays in float32.
    autocast.clear()
    assert run(pretrain, *TINY, "--data-dir", fmnist_folder, "--epochs", 1,
               "--out", tmp_path / "fp32")[0] == 0
    assert ("MAE", True, False) in autocast and ("MAE", True, True) not in autocast


def test_kept_copies_are_the_weights_of_their_epoch_and_probed_as_such(fmnist_folder, tmp_path,
                                                                         run):
    """--keep-epochs 0 1: keep-0000.pt is the initialisation its seed draws, keep-0001.pt the
    weights a run stopped after epoch 1 holds, with that epoch's log; their probes name the epoch
    and the precision each pretraining computed in (none for the initialisation, which no step
    touched), and the report reads the epoch-0 copy's as the untrained level."""
    code, _, err = run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--out", tmp_path / "pre",
                       "--keep-epochs", 0, 1)
    assert code == 0, err
    assert run(pretrain, *SHORT, "--data-dir", fmnist_folder, "--out", tmp_path / "stopped",
               "--stop-epoch", 1)[0] == 0
    kept = [torch.load(tmp_path / "pre" / f"keep-000{e}.pt", weights_only=True) for e in (0, 1)]
    stopped = torch.load(tmp_path / "stopped" / "ckpt.pt", weights_only=True)
    final = torch.load(tmp_path / "pre" / "ckpt.pt", weights_only=True)
    torch.manual_seed(final["config"]["seed"])
    init = checkpoints.build_model(final["config"], final["config"]["image_shape"]).state_dict()
    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert same(kept[0]["model"], init) and same(kept[1]["model"], stopped["model"])
    assert not same(kept[1]["model"], final["model"])
    assert not same(kept[0]["model"], kept[1]["model"])
    assert [k["epoch"] for k in kept] == [0, 1] and kept[0]["log"] == []
    assert kept[1]["log"] == final["log"][:1] and kept[1]["log"][0]["epoch"] == 1
    for e in (0, 1):
        code, _, err = run(linprobe, "--ckpt", tmp_path / "pre" / f"keep-000{e}.pt",
                           "--data-dir", fmnist_folder, "--epochs", 2, "--out", tmp_path / f"lp{e}")
        assert code == 0, err
    results = [json.loads((tmp_path / f"lp{e}" / "results.json").read_text()) for e in (0, 1)]
    assert [(r["pretrain_epoch"], r["pretrain_precision"]) for r in results] == [(0, None),
                                                                                 (1, "fp32")]
    code, out, err = run(report, tmp_path)
    assert code == 0 and f"| {report.UNTRAINED} |" in out, err
    # A copy whose log is not one: refused in one line, before any data is read.
    for log in (5, ["bf16"]):
        torch.save(kept[1] | {"log": log}, tmp_path / "edited.pt")
        code, out, err = run(linprobe, "--ckpt", tmp_path / "edited.pt", "--data-dir",
                             tmp_path / "no-data", "--out", tmp_path / "lp-edited")
        assert one_line_error(code, err) and "edited.pt" in err and "no-data" not in err


def test_which_pca_only_the_monitor_read_sets_no_run_apart():
    """pca_fit says which PCA a pretraining fitted (its training views', or older code's, the
    images'): it sets runs apart where the target or the masking read it, not where only the band
    monitor did (an original target), or no run read it (the monitor off, so none recorded), nor
    between initialisations, which nothing has trained."""
    def probe(accuracy, seed, target="original", masking="random", epoch=10, **pca_fit):
        pre = {"target": target, "pct": 25, "masking": masking, "pca_mask_share": 0.75, "dim": 64,
               "depth": 2, "patch_size": 4, "epochs": 40, "seed": seed, "aug": "flip"} | pca_fit
        name = report.target_name(pre) if epoch else report.UNTRAINED  # as read_result names it
        return {"dataset": "folder", "target": name, "eval": "linprobe", "accuracy": accuracy,
                "epochs": 30, "config": {"seed": 0}, "pretrain_config": pre,
                "pretrain_epoch": epoch}
    def cells(results, epoch=10):
        rows = report.table(report.with_precisions(results)).splitlines()
        return [row.split(" | ")[2:5] for row in rows if f"pretrain ep {epoch} of 40" in row]
    scale = "ViT 64x2, patch 4, --aug flip, pretrain ep 10 of 40"
    monitored, unmonitored = probe(0.50, 0, pca_fit="views"), probe(0.52, 1)
    assert cells([monitored, unmonitored]) == [[scale, "-", "0.510 ± 0.014 (n=2), 30 ep"]]
    for target, masking in (("bottom", "random"), ("original", "pca")):
        views = probe(0.50, 0, target, masking, pca_fit="views")
        images = probe(0.52, 1, target, masking)  # older code: the images' PCA
        assert cells([views, images]) == [[f"{scale} (pca_fit views)", "-", "0.500, 30 ep"],
                                          [f"{scale} (pca_fit images)", "-", "0.520, 30 ep"]]
    inits = [probe(0.40, 0, "bottom", epoch=0, pca_fit="views"), probe(0.42, 1, epoch=0)]
    assert cells(inits, epoch=0) == [[scale.replace("10", "0"), "-",
                                      "0.410 ± 0.014 (n=2), 30 ep"]]
    # The monitor table: two seeds of one training, one with the band monitor (in its training
    # views' PCA) and one without, kept apart by what their band figures are, named as such.
    def run(seed, explained, **pca_fit):
        config = monitored["pretrain_config"] | {"seed": seed, "epochs": 10} | pca_fit
        return {"config": config, "dataset": "folder", "loss_share": 0.3, "knn": 0.4 + seed / 10,
                "explained": explained, "precision": "fp32"}
    on, off = run(0, {"top 75%": 0.9}, pca_fit="views"), run(1, {})
    rows = report.monitor_table([on, off]).splitlines()[2:]
    ended = "ViT 64x2, patch 4, --aug flip, 10 pretrain ep"
    assert [row.split(" | ")[2:] for row in rows] == [
        [f"{ended} (band figures views' PCA)", "0.300", "0.900", "0.400 |"],
        [f"{ended} (band figures none)", "0.300", "-", "0.500 |"]]


def test_runs_of_older_code_are_read_as_that_code_ran(tmp_path):
    """A config key older code did not record stands for what it did (older.OLDER_CODE): a band run
    that took the band of a crop (no band_first) is no second seed of one that takes the band of
    the whole image, and the cell names what sets them apart; pretraining configs alike."""
    config = {"dim": 64, "depth": 4, "patch_size": 4, "input": "bottom"}
    def result(accuracy, seed, **new):
        return {"dataset": "cifar10", "target": "no pretraining", "eval": "finetune",
                "input": "bottom 20%", "accuracy": accuracy, "epochs": 30,
                "config": config | {"seed": seed} | new, "pretrain_config": None}
    old, fixed, fixed_seed1 = (result(0.40, 0), result(0.50, 0, band_first=True),
                               result(0.52, 1, band_first=True))
    row = next(line for line in report.table([old, fixed, fixed_seed1]).splitlines()
               if "bottom 20% band" in line)
    assert ("0.400, 30 ep [band_first False]" in row
            and "0.510 ± 0.014 (n=2), 30 ep [band_first True]" in row)
    assert report.comparable({"aug": "crop"}, {"aug": "crop", "pca_fit": "images"})
    assert not report.comparable({"aug": "crop"}, {"aug": "crop", "pca_fit": "views"})
