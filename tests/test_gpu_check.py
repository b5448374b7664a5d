"""make gpu-check's code, run where CI can: refused without CUDA, and its whole path on a CPU."""
import subprocess
import sys

import pytest

from conftest import FASHION_MNIST
from test_pca import ROOT, one_line_error


def test_gpu_check_refuses_without_cuda():
    p = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True, text=True)
    assert one_line_error(p.returncode, p.stderr) and "CUDA" in p.stderr


@pytest.mark.skipif(not FASHION_MNIST, reason="apt-get install dataset-fashion-mnist")
def test_gpu_check_path_runs_on_a_cpu():
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "pipeline (PCA fit, pretrain bf16 + fused AdamW, torchrun x 1, linear probe, fine-tune): all ok" in p.stdout
    assert "eager" in p.stdout and "PCA fit of 2,000 x 3,072" in p.stdout
