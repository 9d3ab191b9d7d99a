"""Extraction, probes and evaluation load the model on the training device, in the run's dtype (not on the
CPU in fp32 until the trainer moves it). No GPU here: the device choice and what each entry point asks
`load_model` for are checked directly."""

import json

import pytest
import torch

from projected_grpo import models
from projected_grpo.models import default_device, load_model
from projected_grpo.training.config import load_config


class Loaded(Exception):
    pass


def _recorder(seen: dict):
    def fake_load_model(source, dtype=torch.float32, gguf_file=None, device=None):
        seen.update(source=source, dtype=dtype, device=device)
        raise Loaded

    return fake_load_model


def test_default_device_is_this_process_gpu_else_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert default_device() == torch.device("cuda", 3)
    monkeypatch.delenv("LOCAL_RANK")
    assert default_device() == torch.device("cuda", 0)


def test_load_model_places_and_casts():
    model, _ = load_model("tiny-qwen3", dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16} and model.device == torch.device("cpu")


@pytest.fixture
def bf16_run(tmp_path):
    config = load_config(preset="tiny", overrides=['model.dtype="bfloat16"', f'output_dir="{tmp_path / "run"}"'])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config.as_dict()))
    (run_dir / "adapter.safetensors").write_bytes(b"")
    (run_dir / "rollouts.jsonl").write_text("")
    return config, run_dir


def test_training_evaluation_and_probes_load_on_the_training_device_in_the_run_dtype(bf16_run, monkeypatch):
    import projected_grpo.experiments.probes as probes
    import projected_grpo.training.evaluate as evaluate
    import projected_grpo.training.run as run

    config, run_dir = bf16_run
    monkeypatch.setattr(models, "default_device", lambda: torch.device("meta"))  # stands for "cuda:N"
    for module in (run, evaluate, probes):
        monkeypatch.setattr(module, "default_device", lambda: torch.device("meta"))
    for name, call, target in [("train", lambda: run.build_run(config, run_dir, progress_bar=False), run),
                               ("eval", lambda: evaluate.evaluate(run_dir), evaluate),
                               ("probe", lambda: probes.probe_from_run(run_dir), probes)]:
        seen: dict = {}
        monkeypatch.setattr(target, "load_model", _recorder(seen))
        with pytest.raises(Loaded):
            call()
        assert seen == {"source": "tiny-qwen3", "dtype": torch.bfloat16, "device": torch.device("meta")}, name
