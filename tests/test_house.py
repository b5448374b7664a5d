"""The layout a reader relies on: imports run downward, and no script imports another."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Each module may import only those on an earlier line (cli at the bottom, the scripts on top).
LAYERS = [{"cli", "wave_attention"}, {"model", "data", "report", "features", "outfolder"}, {"checkpoints"},
          {"pca_project", "training"}, {"pretrain", "finetune", "linprobe", "export"}]


def our_imports(module):
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    names = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return names & set().union(*LAYERS)


def test_imports_run_downward_and_no_script_imports_another():
    assert {p.stem for p in ROOT.glob("*.py")} == set().union(*LAYERS)  # every module has its place
    for level, layer in enumerate(LAYERS):
        below = set().union(*LAYERS[:level])
        for module in layer:
            assert our_imports(module) <= below, (module, our_imports(module) - below)
    assert our_imports("pretrain") >= {"training", "pca_project"}  # the check sees real imports
