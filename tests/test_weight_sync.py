"""vLLM weight sync sends the training policy: each adapted module's merged weight under the base model's own
name, everything else untouched. Checked without vLLM: TRL's real `VLLMGeneration.sync_weights` runs against a
stand-in engine that records its `load_weights` calls (colocate) or the server client's stream (server); the
recorded stream is loaded into a fresh base model with `load_state_dict(strict=True)`, whose logits must equal
the adapted policy's."""

from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig
from trl.distributed import DistributedBackend
from trl.generation.vllm_generation import VLLMGeneration

from projected_grpo.adapters.attach import AdapterConfig, attach_adapters
from projected_grpo.models import byte_tokenizer, tiny_model
from projected_grpo.training.weight_sync import install_merged_sync

KINDS = [AdapterConfig("svd"), AdapterConfig("svd", rank=8), AdapterConfig("fixed_a_lora", rank=4),
         AdapterConfig("peft_lora", rank=4)]


class RecordingEngine:
    """Stands for vLLM's model: records every (name, tensor) `load_weights` receives, as copies."""

    def __init__(self):
        self.calls: list[tuple[str, torch.Tensor]] = []

    def load_weights(self, weights):
        self.calls.extend((name, t.detach().clone()) for name, t in weights)


class RecordingClient:
    """Stands for TRL's VLLMClient in server mode."""

    def __init__(self, engine: RecordingEngine):
        self.engine, self.metadata = engine, None

    def update_named_params(self, metadata, params):
        self.metadata = metadata
        self.engine.load_weights(params)

    def reset_prefix_cache(self):
        pass


def _stand_in_llm(engine: RecordingEngine):
    runner = SimpleNamespace(model=engine)
    executor = SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner))
    return SimpleNamespace(llm_engine=SimpleNamespace(model_executor=executor), reset_prefix_cache=lambda: None)


def _generation(model, mode: str) -> tuple[VLLMGeneration, RecordingEngine]:
    """TRL's VLLMGeneration with its engine replaced (vLLM is not installed here); its sync code is TRL's own."""
    gen = object.__new__(VLLMGeneration)
    engine = RecordingEngine()
    gen.model, gen.mode, gen.enable_sleep_mode, gen._weight_metadata = model, mode, False, None
    gen.accelerator = SimpleNamespace(is_main_process=True)
    gen._dist = DistributedBackend(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None)))
    gen.llm, gen.vllm_client = _stand_in_llm(engine), RecordingClient(engine)
    return gen, engine


def _ids(seed=0):
    return torch.randint(0, 259, (2, 24), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _train_somewhat(adapters, quarantine: bool, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _, m in adapters:
        if adapters.config.kind == "peft_lora":
            m.B.copy_(0.05 * torch.randn(m.B.shape, generator=gen))  # B = 0 at init: ΔW = 0 otherwise
            continue
        m.trainable.copy_(0.05 * torch.randn(m.trainable.shape, generator=gen))
        if quarantine:
            m.quarantine.copy_(0.05 * torch.randn(m.quarantine.shape, generator=gen))


def _load_fresh(arch: str, calls) -> torch.nn.Module:
    names = [n for n, _ in calls]
    assert len(names) == len(set(names)), "a name was sent twice"
    fresh = tiny_model(arch, seed=7)
    fresh.load_state_dict(dict(calls), strict=True)
    return fresh


# (adapter, with a nonzero quarantine θ_hack): PEFT LoRA has none
CASES = [pytest.param(c, q, id=f"{c.kind}-{c.rank}-{'theta+theta_hack' if q else 'theta'}")
         for c in KINDS for q in (False, True) if not (q and c.kind == "peft_lora")]


@pytest.mark.parametrize("config, quarantine", CASES)
@pytest.mark.parametrize("arch, mode", [("tiny-qwen3", "colocate"), ("tiny-qwen3", "server"),
                                        ("tiny-qwen2", "colocate")])  # qwen2: q/k/v carry a bias
def test_synced_stream_is_the_merged_training_policy(arch, config, quarantine, mode, tmp_path):
    model = tiny_model(arch, seed=7)
    adapters = attach_adapters(model, config, cache_dir=tmp_path)
    _train_somewhat(adapters, quarantine)
    with torch.no_grad():
        policy = model(_ids()).logits
        base = tiny_model(arch, seed=7)(_ids()).logits
    assert not torch.allclose(policy, base, atol=1e-3), "the adapter must move the policy, or the test is vacuous"

    gen, engine = _generation(model, mode)
    install_merged_sync(gen, adapters)
    gen.sync_weights()
    fresh = _load_fresh(arch, engine.calls)
    with torch.no_grad():
        torch.testing.assert_close(fresh(_ids()).logits, policy, atol=2e-5, rtol=1e-4)
    assert [n for n, _ in engine.calls] == [n for n, _ in tiny_model(arch).named_parameters()]  # base order
    if mode == "server":  # metadata announced before the stream matches it
        assert [(n, list(t.shape)) for n, t in engine.calls] == [(n, s) for n, _, s in gen.vllm_client.metadata]
    # the sync reads the policy, never moves it
    with torch.no_grad():
        assert torch.equal(model(_ids()).logits, policy)


@pytest.mark.parametrize("config", KINDS[::2], ids=lambda c: c.kind)
def test_trl_stock_stream_is_not_loadable(config, tmp_path):
    """Without the override TRL sends `...q_proj.base.weight` (or `base_layer`), adapter tensors, and no merge:
    what this module exists to fix."""
    model = tiny_model("tiny-qwen3", seed=7)
    adapters = attach_adapters(model, config, cache_dir=tmp_path)
    gen, engine = _generation(model, "colocate")
    gen.sync_weights()
    names = {n for n, _ in engine.calls}
    assert any(n.endswith((".base.weight", ".base_layer.weight")) for n in names)
    with pytest.raises(RuntimeError):
        tiny_model("tiny-qwen3").load_state_dict(dict(engine.calls), strict=True)
    del adapters


def test_adapter_trainer_installs_the_merged_sync(tmp_path, monkeypatch):
    """The wiring: AdapterGRPOTrainer built with use_vllm (TRL's own __init__, engine stood in) syncs merged weights."""
    import trl.trainer.grpo_trainer as grpo_trainer

    from projected_grpo.training.trainer import AdapterGRPOTrainer

    engine = RecordingEngine()

    class StandInGeneration(VLLMGeneration):
        def _init_vllm(self):
            self.llm = _stand_in_llm(engine)

    monkeypatch.setattr(grpo_trainer, "VLLMGeneration", StandInGeneration)
    model = tiny_model("tiny-qwen3", seed=7)
    adapters = attach_adapters(model, AdapterConfig("fixed_a_lora", rank=4), cache_dir=tmp_path)
    _train_somewhat(adapters, quarantine=True)
    args = GRPOConfig(output_dir=str(tmp_path / "run"), use_vllm=True, vllm_mode="colocate", use_cpu=True,
                      per_device_train_batch_size=2, num_generations=2, max_completion_length=8, report_to=[],
                      beta=0.0)
    trainer = AdapterGRPOTrainer(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                                 args=args, train_dataset=Dataset.from_list([{"prompt": "ab"}] * 2),
                                 processing_class=byte_tokenizer(), adapters=adapters,
                                 optimizers=(torch.optim.AdamW(adapters.trainable_parameters()), None))
    trainer.vllm_generation.sync_weights()
    fresh = _load_fresh("tiny-qwen3", engine.calls)
    with torch.no_grad():
        torch.testing.assert_close(fresh(_ids()).logits, model(_ids()).logits, atol=2e-5, rtol=1e-4)
