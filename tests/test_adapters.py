"""Adapters: bit-exact identity at init, linearity, SVD cache, save/load/deploy/merge, on two architectures."""

import pytest
import torch

from projected_grpo.adapters.attach import AdapterConfig, attach_adapters, read_metadata
from projected_grpo.adapters.layers import SVDKnobLinear
from projected_grpo.models import byte_tokenizer, tiny_model

CONFIGS = [AdapterConfig("svd"), AdapterConfig("svd", rank=8), AdapterConfig("fixed_a_lora", rank=4)]


def _ids(seed=0):
    return torch.randint(0, 259, (2, 24), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ["tiny-qwen3", "tiny-llama"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-{c.rank}")
def test_identity_at_init_is_bit_exact(arch, config, tmp_path):
    model = tiny_model(arch)
    ids = _ids()
    with torch.no_grad():
        before = model(ids).logits
    adapters = attach_adapters(model, config, cache_dir=tmp_path)
    assert len(adapters.modules) == 2 * 7
    with torch.no_grad():
        after = model(ids).logits
    assert torch.equal(before, after)
    assert {p for p in model.parameters() if p.requires_grad} == set(adapters.trainable_parameters())


def _perturb(adapters, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in adapters:
            m.trainable.copy_(0.05 * torch.randn(m.trainable.shape, generator=gen))
            m.quarantine.copy_(0.05 * torch.randn(m.quarantine.shape, generator=gen))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-{c.rank}")
def test_save_load_on_a_fresh_base_reproduces_logits(config, tmp_path):
    model = tiny_model("tiny-qwen3", seed=3)
    adapters = attach_adapters(model, config, base_model_id="tiny-qwen3@3", cache_dir=tmp_path)
    _perturb(adapters)
    with torch.no_grad():
        trained = model(_ids()).logits
    path = tmp_path / "adapter.safetensors"
    adapters.save(path)
    meta = read_metadata(path)
    assert meta["base_model"] == "tiny-qwen3@3" and meta["config"] == config
    fresh = tiny_model("tiny-qwen3", seed=3)
    loaded = attach_adapters(fresh, meta["config"], cache_dir=tmp_path)
    loaded.load(path)
    with torch.no_grad():
        assert torch.equal(fresh(_ids()).logits, trained)


def test_deploy_zeroes_quarantine_and_merge_folds_the_rest(tmp_path):
    model = tiny_model("tiny-qwen3")
    adapters = attach_adapters(model, AdapterConfig("svd"), cache_dir=tmp_path)
    _perturb(adapters)
    adapters.deploy()
    assert all(float(m.quarantine.abs().max()) == 0 for _, m in adapters)
    with torch.no_grad():
        deployed = model(_ids()).logits
        merged = adapters.merge()(_ids()).logits
    assert not any(isinstance(m, SVDKnobLinear) for m in model.modules())
    torch.testing.assert_close(merged, deployed, atol=2e-5, rtol=1e-4)


def test_zeroing_returns_the_reference_policy(tmp_path):
    model = tiny_model("tiny-qwen3")
    with torch.no_grad():
        base = model(_ids()).logits
    adapters = attach_adapters(model, AdapterConfig("fixed_a_lora", rank=4), cache_dir=tmp_path)
    _perturb(adapters)
    adapters.zero()
    with torch.no_grad():
        assert torch.equal(model(_ids()).logits, base)


def test_svd_knob_gradient_is_u_g_v(tmp_path):
    """∂L/∂δS_i = u_iᵀ G_W v_i: δS-space is the orthonormal family u_i v_iᵀ."""
    lin = torch.nn.Linear(6, 5)
    knob = SVDKnobLinear(lin, cache_dir=tmp_path)
    x = torch.randn(3, 6)
    knob(x).pow(2).sum().backward()
    w = lin.weight.detach().clone().requires_grad_(True)
    (x @ w.T + lin.bias.detach()).pow(2).sum().backward()
    expected = torch.einsum("oi,om,mi->m", w.grad, knob.U, knob.Vh)
    torch.testing.assert_close(knob.trainable.grad, expected)


def test_svd_is_cached_by_weight_hash(tmp_path):
    model = tiny_model("tiny-qwen3")
    attach_adapters(model, AdapterConfig("svd"), cache_dir=tmp_path)
    files = sorted((tmp_path / "svd").iterdir())
    assert len(files) == 14
    stamps = [f.stat().st_mtime_ns for f in files]
    attach_adapters(tiny_model("tiny-qwen3"), AdapterConfig("svd"), cache_dir=tmp_path)
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "svd").iterdir())] == stamps


def test_bad_adapter_config_and_mismatched_load(tmp_path):
    with pytest.raises(ValueError, match="fixed_a_lora needs a rank"):
        AdapterConfig("fixed_a_lora")
    with pytest.raises(ValueError, match="adapter kind"):
        AdapterConfig("dora")
    a = attach_adapters(tiny_model("tiny-qwen3"), AdapterConfig("svd", targets=("q_proj",)), cache_dir=tmp_path)
    a.save(tmp_path / "q.safetensors")
    b = attach_adapters(tiny_model("tiny-qwen3"), AdapterConfig("svd"), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="saved for other modules"):
        b.load(tmp_path / "q.safetensors")


def test_byte_tokenizer_chat_template_round_trips():
    tok = byte_tokenizer()
    text = tok.apply_chat_template([{"role": "user", "content": "héllo ```python"}], add_generation_prompt=True,
                                   tokenize=False)
    assert text == "<|im_start|>user\nhéllo ```python<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-{c.rank}")
def test_generation_cache_follows_every_parameter_change(config, tmp_path):
    """Without autograd ΔW is cached: an optimizer step, a load or `zeroed()` must still show at once."""
    model = tiny_model("tiny-qwen3")
    adapters = attach_adapters(model, config, cache_dir=tmp_path)
    ids = _ids()
    with torch.no_grad():
        base = model(ids).logits
        _perturb(adapters)
        moved = model(ids).logits
        with adapters.zeroed():
            assert torch.equal(model(ids).logits, base)
        assert torch.equal(model(ids).logits, moved)
    with torch.enable_grad():
        assert torch.allclose(model(ids).logits, moved, atol=1e-6)
    assert not torch.allclose(moved, base, atol=1e-3)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-{c.rank}")
def test_half_precision_layers_apply_delta_as_their_own_linear(config, tmp_path):
    """bf16: W + ΔW in bf16 would round updates below W's precision away, so ΔW x is added to W x."""
    model = tiny_model("tiny-qwen3").to(torch.bfloat16)
    adapters = attach_adapters(model, config, cache_dir=tmp_path)
    _perturb(adapters)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            for name, layer in adapters:
                if layer.in_features != 64:
                    continue
                delta = layer.delta_weight((layer.trainable + layer.quarantine).float()).to(torch.bfloat16)
                assert torch.equal(layer(x), layer.base(x) + x @ delta.T), name
