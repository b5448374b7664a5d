"""The layout a reader relies on: imports run downward, and no script imports another."""
import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Each module may import only those on an earlier line (files at the bottom, the scripts on top).
# model.py and pca_project.py (the method) import nothing of ours at module level: a researcher
# copies the two files; pca_project's script imports its plumbing inside main().
LAYERS = [{"files", "older", "wave_attention", "pca_project"},
          {"cli", "model", "data", "features", "outfolder"},
          {"report", "checkpoints", "dataset_pca", "monitor"}, {"training"},
          {"pretrain", "finetune", "linprobe", "export"}]


def our_imports(module, nested=True):
    """The modules of ours that module imports: anywhere in it, or (nested=False) at module
    level."""
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    nodes = list(ast.walk(tree)) if nested else tree.body
    names = {a.name for node in nodes if isinstance(node, ast.Import) for a in node.names}
    names |= {node.module for node in nodes if isinstance(node, ast.ImportFrom)}
    return names & set().union(*LAYERS)


def test_imports_run_downward_and_no_script_imports_another():
    assert {p.stem for p in ROOT.glob("*.py")} == set().union(*LAYERS)  # every module has its place
    for level, layer in enumerate(LAYERS):
        below = set().union(*LAYERS[:level])
        for module in layer:
            # pca_project's main() is a script's, with a script's imports
            imports = our_imports(module, nested=module != "pca_project")
            assert imports <= below, (module, imports - below)
    assert our_imports("model", nested=False) == our_imports("pca_project", nested=False) == set()
    assert our_imports("pretrain") >= {"training", "pca_project"}  # the check sees real imports


COPIED = '''
import torch
from model import MAE, get_lr, param_groups
from pca_project import band_slice, fit, on_device, to_band

x = torch.load("pictures.pt", weights_only=True)                 # real pictures, uint8
pca = fit(x)                                                     # on the CPU here
pcs = on_device(pca, "cpu", band_slice(pca, "bottom", 25))
mae = MAE(image_size=16, patch_size=4, channels=3, dim=32, depth=2, heads=2,
          decoder_dim=32, decoder_depth=1, decoder_heads=2)
optimizer = torch.optim.AdamW(param_groups(mae, 0.05), betas=(0.9, 0.95))
losses = []
for step in range(30):
    for group in optimizer.param_groups:
        group["lr"] = get_lr(step, 2e-3, 5, 30) * group["lr_scale"]
    idx = torch.randint(len(x), (64,), generator=torch.Generator().manual_seed(step))
    images = x[idx].float() / 255
    loss, _, _ = mae(images, to_band(images, pcs))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(sum(losses[:5]) / 5, sum(losses[-5:]) / 5)
'''


def test_model_and_the_pca_method_copy_into_another_project(fmnist_folder, tmp_path):
    """model.py and pca_project.py alone, in an empty folder with torch, fit a PCA on real pictures,
    make a bottom-25% target and train an MAE with AdamW and get_lr: a researcher copies two
    files."""
    import data
    import torch
    for name in ("model.py", "pca_project.py"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "data.py").write_text("raise ImportError('a data.py of the host project')\n")
    torch.save(data.load("folder", "train", str(fmnist_folder), 16)[0], tmp_path / "pictures.pt")
    (tmp_path / "train.py").write_text(COPIED)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-E", "-s", "train.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    first, last = map(float, p.stdout.split())
    assert last < first  # it learns
