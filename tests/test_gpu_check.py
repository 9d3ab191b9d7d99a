"""scripts/gpu_check.sh: its CPU smoke mode runs end to end in seconds and writes sane figures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _env() -> dict:
    src = str(ROOT / "src")
    return {**os.environ, "PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_mode_writes_sane_figures(tmp_path):
    out = tmp_path / "nested" / "gpu_check.json"
    proc = subprocess.run([str(SCRIPT), "--smoke", str(out)], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["mode"] == "smoke" and d["device"] == "cpu" and d["device_name"] is None and d["dtype"] == "float32"
    assert "skipped" in d["fast_dev_run"]
    assert d["provenance"]["versions"]["torch"] and d["total_s"] > 0
    assert list(d["kinds"]) == ["fixed_a_lora_r4", "peft_lora_r4", "svd_full_rank", "svd_top8"]  # δS last
    assert d["svd_one_matrix"]["cpu_s"] > 0 and d["svd_one_matrix"]["device_s"] is None
    for label, k in d["kinds"].items():
        assert k["adapted_modules"] == 14 and k["trainable"] > 0 and k["attach_s"] >= 0, label
        assert k["generation"]["tokens_per_s"] > 0 and k["generation"]["new_tokens"] == 8, label
        step = k["train_step"]
        for key in ("forward_backward_s", "plain_adamw_s", "vanilla_measure_s", "erase_s", "step_vanilla_s", "step_erase_s"):
            assert step[key] > 0, (label, key)
        assert step["erase_over_vanilla"] > 0 and abs(step["projection_fraction_of_forward_backward"]) < 10, label
        assert k["weights_gib"] is None and step["peak_train_gib"] is None, label  # CPU: no GPU memory figures
    assert d["kinds"]["svd_top8"]["trainable"] == 14 * 8 < d["kinds"]["svd_full_rank"]["trainable"]
    assert not list(out.parent.glob(".*.tmp"))  # written atomically


def test_analytic_memory_of_a_full_rank_delta_s_on_qwen3_4b():
    """δS at full rank keeps U and Vh beside every adapted weight: 1.25–2× those weights again (issue 12.3)."""
    gc = _module()
    a = gc.analytic_bytes(gc.SHAPES["qwen3-4b"], 36, torch.bfloat16, top_m=256, rank=32)
    assert 6.5 < a["adapted_weights_gib"] < 7.0  # 36 × 100.9M adapted parameters in bf16
    assert 1.25 <= a["svd_full_rank_extra_over_adapted_weights"] <= 2.0
    assert a["svd_top256_extra_gib"] < a["svd_full_rank_extra_gib"] / 5
    assert a["fixed_a_lora_r32_extra_gib"] < 1 and a["peft_lora_r32_extra_gib"] < 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine this would run the full GPU check")
def test_gpu_mode_refuses_to_run_without_cuda(tmp_path):
    proc = subprocess.run([str(SCRIPT), str(tmp_path / "x.json")], env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_an_unknown_kind_is_refused_before_any_work(tmp_path):
    proc = subprocess.run([str(SCRIPT), "--smoke", str(tmp_path / "x.json"), "--kinds", "svd,lora"], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--kinds: unknown 'lora'" in proc.stderr
    assert not (tmp_path / "x.json").exists()
