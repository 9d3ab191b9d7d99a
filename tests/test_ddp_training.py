"""Training under DDP on CPU (torchrun, 2 processes, gloo) with projection on: ranks stay identical."""

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file


def test_two_process_training_keeps_ranks_identical(tmp_path, format_model):
    model_dir, data = format_model
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PROJECTED_GRPO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "projected_grpo.cli", "train", "--preset", "tiny",
           "--set", "arm=route", "--set", "steps=2", "--set", f"output_dir={out}", "--set", f"model.source={model_dir}",
           "--set", f"data.path={data}", "--set", "data.n_problems=8", "--set", "grpo.max_completion_length=96",
           "--set", "grpo.learning_rate=0.05"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "ddp.json").read_text()) == {"world_size": 2, "ranks_identical": True}
    adapters = load_file(out / "adapter.safetensors")
    assert any(float(t.abs().max()) > 0 for k, t in adapters.items() if k.endswith("trainable"))  # it learned
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[-1]["projection/quarantine_norm"] > 0
    log = (out / "train.log").read_text()  # rank 0's lines only: each once
    assert log.count("config: arm=route") == 1 and log.count("step 2/2") == 1 and log.count("finished 2 steps") == 1
