"""make gpu-check's code, run where CI can: refused without CUDA, and its whole path on a CPU."""
import os
import subprocess
import sys

import pytest

from conftest import FASHION_MNIST
from test_pca import ROOT, one_line_error


def test_gpu_check_refuses_without_cuda_or_a_device_it_knows():
    p = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True,
                       text=True)
    assert one_line_error(p.returncode, p.stderr) and "CUDA" in p.stderr
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "bogus"], cwd=ROOT,
                       capture_output=True, text=True)
    assert one_line_error(p.returncode, p.stderr) and "bogus" in p.stderr


@pytest.mark.skipif(not FASHION_MNIST, reason="apt-get install dataset-fashion-mnist")
def test_gpu_check_path_runs_on_a_cpu_and_writes_nothing_where_it_is_run(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_check.py"),
                        "--device", "cpu", "--quick"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.listdir(tmp_path) == []
    assert ("pipeline (PCA fit, pretrain bf16 + fused AdamW, torchrun x 1, linear probe, "
            "fine-tune, stop and resume, band picture, export, band fine-tune): all ok") in p.stdout
    assert "eager" in p.stdout and "PCA fit of 2,000 x 3,072" in p.stdout
