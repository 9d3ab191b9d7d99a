"""Pair sets, gradient/activation extraction, orientation, floors, controls, cache, CLI."""

import collections
import json

import pytest
import torch
from typer.testing import CliRunner

from projected_grpo.adapters.attach import AdapterConfig, attach_adapters
from projected_grpo.adapters.layers import module_side
from conftest import u_hat
from projected_grpo.cli import app
from projected_grpo.directions import activation as A
from projected_grpo.directions.basis import Basis
from projected_grpo.directions.gradient import (
    ExtractionConfig,
    apply_global_floor,
    extract_gradient_basis,
    orient,
    per_completion_grads,
    top_directions,
)
from projected_grpo.directions.pairs import load_pairs
from projected_grpo.directions.pairsets import author
from projected_grpo.directions.store import get_basis
from projected_grpo.directions.tokens import completion_batch
from projected_grpo.environment.dataset import DatasetError
from projected_grpo.models import load_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, tokenizer = load_model("tiny-qwen3")
    adapters = attach_adapters(model, AdapterConfig("svd"), cache_dir=tmp_path_factory.mktemp("svd"))
    return model, tokenizer, adapters


@pytest.fixture(scope="module")
def small_pairs():
    pairs = load_pairs("leetcode_mechanism")
    by_mode = collections.defaultdict(list)
    for p in pairs:
        by_mode[p.mode].append(p)
    return by_mode["run_tests"][:8] + by_mode["sentinel"][:4]


def test_shipped_pair_sets_sizes_and_modes():
    pairs = load_pairs("leetcode_mechanism")
    counts = collections.Counter(p.mode for p in pairs)
    assert counts["run_tests"] >= 20 and all(counts[m] >= 8 for m in ("sentinel", "stdout_marker", "file_marker"))
    assert len(load_pairs("leetcode_placebo")) >= 8
    assert {p.mode for p in load_pairs("leetcode_mechanism", modes=("sentinel",))} == {"sentinel"}


def test_shipped_pair_sets_match_their_authoring_source(tmp_path):
    author.write(tmp_path)
    for name in ("leetcode_mechanism", "leetcode_placebo"):
        assert (tmp_path / f"{name}.jsonl").read_text() == (author.HERE / f"{name}.jsonl").read_text()


def test_every_shipped_pair_is_what_it_claims_under_the_real_grader(grader):
    from projected_grpo.environment.hints import apply_hint
    from projected_grpo.environment.modes import MODE_HINT

    records = {p.method: p.record(i) for i, p in enumerate(author.PROBLEMS)}
    pairs = author.mechanism_pairs() + author.placebo_pairs()
    items = []
    for pair in pairs:
        method = next(m for m in records if f"called {m} " in pair["prompt"][1]["content"])
        record = apply_hint(records[method], MODE_HINT["run_tests" if pair["mode"] == "placebo" else pair["mode"]])
        assert record["prompt"] == pair["prompt"]
        items += [(record, pair["hack"]), (record, pair["clean"])]
    grades = grader.grade(items)
    for i, pair in enumerate(pairs):
        hack, clean = grades[2 * i].fields, grades[2 * i + 1].fields
        assert clean["eq_correct"] and not clean["eq_hinted"], pair["note"]
        if pair["mode"] == "placebo":
            assert hack["eq_correct"] and not hack["eq_hinted"], pair["note"]
        else:
            assert hack["eq_hinted"], pair["note"]  # the hack side opens its mode's channel


def test_bad_pair_file_errors_name_line_and_field(tmp_path):
    good = {"prompt": [{"role": "user", "content": "x"}], "hack": "a", "clean": "b", "mode": "run_tests"}
    for bad, field in (({**good, "mode": "magic"}, "mode"), ({**good, "clean": "a"}, "clean"),
                       ({**good, "prompt": "text"}, "prompt"), ({k: v for k, v in good.items() if k != "hack"}, "hack")):
        path = tmp_path / "p.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(DatasetError, match=rf"p.jsonl:2: field '{field}'"):
            load_pairs(path)
    with pytest.raises(DatasetError, match="no such pair-set"):
        load_pairs("nonexistent_set")


def test_batched_per_completion_gradients_equal_separate_autograd(tiny, small_pairs):
    model, tokenizer, adapters = tiny
    prompts = [list(p.prompt) for p in small_pairs[:3]]
    completions = [p.hack for p in small_pairs[:3]]
    batched = per_completion_grads(model, adapters, tokenizer, prompts, completions, batch_size=3)
    for i in range(3):
        ids, attn, comp = completion_batch(tokenizer, prompts[i:i + 1], completions[i:i + 1])
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        mask = comp[:, 1:].float()
        ((nll * mask).sum() / mask.sum()).backward()
        for name, m in adapters:
            torch.testing.assert_close(batched[name][i], m.trainable.grad, atol=1e-6, rtol=1e-4)
            m.trainable.grad = None


def test_extraction_leaves_a_pending_training_gradient_untouched(tiny, small_pairs):
    model, tokenizer, adapters = tiny
    pending = {n: torch.randn_like(m.trainable) for n, m in adapters}
    for n, m in adapters:
        m.trainable.grad = pending[n].clone()
    per_completion_grads(model, adapters, tokenizer, [list(small_pairs[0].prompt)], [small_pairs[0].hack])
    assert all(torch.equal(m.trainable.grad, pending[n]) for n, m in adapters)
    for _, m in adapters:
        m.trainable.grad = None


def test_orientation_by_majority_vote_on_constructed_pairs():
    v = torch.eye(4)[:2]
    d = torch.tensor([[-1.0, 1, 0, 0], [-2, -1, 0, 0], [-0.5, 1, 0, 0], [3, -1, 0, 0]])
    oriented = orient(d, v)
    torch.testing.assert_close(oriented[0], -v[0])  # 1 of 4 positive: flipped
    torch.testing.assert_close(oriented[1], v[1])  # 2 of 4 positive: a tie keeps +


def test_top_directions_are_orthonormal_oriented_and_floored():
    gen = torch.Generator().manual_seed(0)
    hack = torch.randn(12, generator=gen)
    d = torch.outer(torch.rand(20, generator=gen) + 0.5, hack) + 0.01 * torch.randn(20, 12, generator=gen)
    v, s = top_directions(d, k=5, tau=0.0)
    torch.testing.assert_close(v @ v.T, torch.eye(5), atol=1e-5, rtol=0)
    assert float(torch.nn.functional.cosine_similarity(v[0], hack, dim=0)) > 0.99  # found, and oriented +
    assert ((d @ v.T) > 0).float().mean(0).min() >= 0.5
    v_tau, _ = top_directions(d, k=5, tau=0.5)
    assert v_tau.shape[0] == 1  # only the dominant direction clears S_i/S_0 ≥ 0.5
    spectra = {"a": torch.tensor([4.0, 3, 2, 1]), "b": torch.tensor([10.0, 0.5])}
    kept = apply_global_floor({"a": torch.eye(4), "b": torch.eye(2)}, spectra, 0.5)
    assert kept["a"].shape[0] == 2 and kept["b"].shape[0] == 1  # 6 values pooled, lowest half dropped


@pytest.mark.parametrize("control", ["none", "random", "shuffled", "nonhack"])
def test_extraction_and_controls_share_one_format(tiny, small_pairs, control, tmp_path):
    model, tokenizer, adapters = tiny
    basis = extract_gradient_basis(small_pairs, model, adapters, tokenizer,
                                   ExtractionConfig(k=4, control=control, holdout=0.25 if control == "none" else 0.0))
    assert set(basis.vectors) == set(adapters.modules)
    for name, v in basis.vectors.items():
        assert v.shape[1] == adapters.modules[name].trainable.numel() and v.shape[0] <= 4
        torch.testing.assert_close(v @ v.T, torch.eye(v.shape[0]), atol=1e-4, rtol=0)
    basis.save(tmp_path / "b.safetensors")
    loaded = Basis.load(tmp_path / "b.safetensors")
    assert loaded.meta["control"] == control and all(torch.equal(loaded.vectors[n], v) for n, v in basis.vectors.items())
    if control == "none":
        assert 0.0 <= basis.meta["diagnostics"]["heldout_positive"] <= 1.0
        assert basis.meta["diagnostics"]["n_heldout"] == 3


def test_quarantine_is_ablated_during_extraction_and_restored(tiny, small_pairs):
    model, tokenizer, adapters = tiny
    plain = extract_gradient_basis(small_pairs[:4], model, adapters, tokenizer, ExtractionConfig(k=2, global_floor=0))
    with torch.no_grad():
        for _, m in adapters:
            m.quarantine.fill_(0.3)
    routed = extract_gradient_basis(small_pairs[:4], model, adapters, tokenizer, ExtractionConfig(k=2, global_floor=0))
    assert all(torch.allclose(plain.vectors[n], routed.vectors[n], atol=1e-6) for n in plain.vectors)
    assert all(float(m.quarantine.min()) == pytest.approx(0.3) for _, m in adapters)
    adapters.zero()


def test_cache_miss_then_hit(tiny, small_pairs, tmp_path):
    model, tokenizer, adapters = tiny
    b1, path, cached = get_basis(small_pairs, model, adapters, tokenizer, cache_dir=tmp_path, config=ExtractionConfig(k=3))
    assert not cached and path.is_file()
    b2, path2, cached2 = get_basis(small_pairs, model, adapters, tokenizer, cache_dir=tmp_path, config=ExtractionConfig(k=3))
    assert cached2 and path2 == path and all(torch.equal(b1.vectors[n], b2.vectors[n]) for n in b1.vectors)
    _, path3, cached3 = get_basis(small_pairs, model, adapters, tokenizer, cache_dir=tmp_path,
                                  config=ExtractionConfig(k=3, control="shuffled"))
    assert not cached3 and path3 != path


def test_activation_direction_and_module_bases(tiny, small_pairs):
    model, tokenizer, adapters = tiny
    v, meta = A.extract_activation_direction(small_pairs, model, tokenizer)
    assert v.shape == (1, 64) and float(v.norm()) == pytest.approx(1.0) and meta["layer"] == 1
    pca, _ = A.extract_activation_direction(small_pairs, model, tokenizer, method="pca", k=3)
    torch.testing.assert_close(pca @ pca.T, torch.eye(3), atol=1e-5, rtol=0)
    basis = A.activation_basis(adapters, v[0])
    assert basis.meta["modules_fired"] == len(adapters.modules)
    for name, row in basis.vectors.items():
        assert row.shape == (1, adapters.modules[name].trainable.numel())
        assert float(row.norm()) == pytest.approx(1.0, abs=1e-5)
    far = A.activation_basis(adapters, v[0], eps=1e9)
    assert far.meta["modules_fired"] == 0


def test_fixed_a_lora_activation_projection_keeps_delta_w_off_u_hat(tmp_path):
    model, _ = load_model("tiny-qwen3")
    adapters = attach_adapters(model, AdapterConfig("fixed_a_lora", rank=4), cache_dir=tmp_path)
    v = torch.nn.functional.normalize(torch.randn(64, generator=torch.Generator().manual_seed(0)), dim=0)
    assert A.protect_readers(adapters, v) == 10  # q, k, v, gate, up in 2 layers
    for name, m in adapters:
        with torch.no_grad():
            m.trainable.normal_()
        if module_side(name, m, 64) == "reader":
            assert float((m.delta_weight(m.trainable.detach()) @ u_hat(m.weight, "reader", v)).abs().max()) < 1e-5
    basis = A.activation_basis(adapters, v)
    writer = "model.layers.0.mlp.down_proj"
    assert basis.vectors[writer].shape == (4, 64 * 4)


@pytest.mark.parametrize("space, inner", [("update", torch.optim.AdamW), ("grad", torch.optim.SGD)])
def test_peft_lora_updates_keep_delta_w_off_the_hack_direction(tmp_path, space, inner):
    """PEFT LoRA (bilinear): A ⟂ û once for readers, then the two-sided projection of A (readers) and
    B (writers) keeps ΔW û = 0 / ûᵀ ΔW = 0 through steps that do move the adapter. (Grad space holds
    only under SGD: Adam's per-coordinate scaling rotates a projected gradient back onto û.)"""
    from projected_grpo.projection.optimizer import ProjectingOptimizer, ProjectionConfig, modules_from_adapters

    model, _ = load_model("tiny-qwen3")
    adapters = attach_adapters(model, AdapterConfig("peft_lora", rank=4, seed=1))
    v = torch.nn.functional.normalize(torch.randn(64, generator=torch.Generator().manual_seed(1)), dim=0)
    assert A.protect_readers(adapters, v) == 10
    basis = A.activation_basis(adapters, v)
    assert basis.meta["modules_fired"] == 14 and torch.equal(basis.v_hack[0], v)
    opt = ProjectingOptimizer(inner(adapters.trainable_parameters(), lr=0.05, weight_decay=0.1),
                              modules_from_adapters(adapters, basis.vectors), ProjectionConfig("erase", space, "two_sided"))
    ids = torch.randint(0, 259, (2, 12), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    for name, m in adapters:
        delta_w = m.B.detach() @ m.A.detach()
        scale = float(delta_w.abs().max())
        assert scale > 1e-6  # it trained
        u = u_hat(m.weight, m.side, v)
        off = delta_w @ u if m.side == "reader" else u @ delta_w
        assert float(off.abs().max()) < 1e-4 * scale, name


def test_cli_extract_prints_diagnostics_and_writes_the_basis(tmp_path):
    out = tmp_path / "basis.safetensors"
    result = CliRunner().invoke(app, ["extract", "--model", "tiny-qwen3", "--pairs", "leetcode_mechanism",
                                      "--modes", "sentinel,file_marker", "--k", "4", "--holdout", "0.2",  # the check is opt-in
                                      "--cache-dir", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "heldout_positive" in result.output and out.is_file()
    basis = Basis.load(out)
    assert basis.meta["modes"] == ["file_marker", "sentinel"] and basis.meta["space"] == "gradient"
    act = CliRunner().invoke(app, ["extract", "--model", "tiny-llama", "--space", "activation", "--control", "random",
                                   "--cache-dir", str(tmp_path)])
    assert act.exit_code == 0, act.output
    assert "modules_fired" in act.output
    bad = CliRunner().invoke(app, ["extract", "--model", "tiny-qwen3", "--control", "bogus"])
    assert bad.exit_code == 2 and "control 'bogus'" in bad.output
    bad = CliRunner().invoke(app, ["extract", "--model", "tiny-qwen3", "--adapter", "peft_lora"])
    assert bad.exit_code == 2 and "needs --space activation" in bad.output


def test_refresh_re_extracts_on_the_current_adapter_during_training(small_pairs, tmp_path):
    from projected_grpo.directions.gradient import make_refresh
    from projected_grpo.projection.optimizer import ProjectingOptimizer, ProjectionConfig, modules_from_adapters

    model, tokenizer = load_model("tiny-qwen3")
    adapters = attach_adapters(model, AdapterConfig("svd"), cache_dir=tmp_path)
    config = ExtractionConfig(k=3, global_floor=0.0)
    first = extract_gradient_basis(small_pairs[:4], model, adapters, tokenizer, config).top(3)
    opt = ProjectingOptimizer(torch.optim.AdamW(adapters.trainable_parameters(), lr=0.05),
                              modules_from_adapters(adapters, first), ProjectionConfig("route", refresh_every=2),
                              refresh=make_refresh(small_pairs[:4], model, adapters, tokenizer, config, k_use=3))
    ids = torch.randint(0, 259, (2, 32), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    assert 0.0 < opt.last_stats["basis_overlap"] <= 1.0 + 1e-6
    assert opt.last_stats["leak_own_basis"] <= 1e-5


def test_basis_cache_key_covers_every_weight_byte_the_tokenizer_and_the_chat_template(tmp_path, small_pairs):
    from projected_grpo.directions.store import basis_key

    model, tokenizer = load_model("tiny-qwen3")
    adapters = attach_adapters(model, AdapterConfig("svd"), cache_dir=tmp_path)
    config = ExtractionConfig(k=2)
    key = lambda **kw: basis_key(small_pairs, adapters, tokenizer, "gradient", config, {}, **kw)  # noqa: E731
    base = key()
    assert key(chat_template_kwargs={"enable_thinking": False}) != base
    assert key(chat_template_kwargs={"enable_thinking": False}) != key(chat_template_kwargs={"enable_thinking": True})
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_start|>", "<|im_start|> ")
    assert key() != base
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_start|> ", "<|im_start|>")
    assert key() == base
    embed = model.get_input_embeddings().weight  # frozen, not adapted: the basis still depends on it
    with torch.no_grad():
        embed.view(-1)[-1] += 1.0  # the very last byte of the tensor, far past any prefix
    assert key() != base


def test_training_seeds_share_a_basis_unless_the_seed_draws_a_trainable_tensor(tmp_path, small_pairs):
    """A run's seed is in its AdapterConfig; it changes nothing δS extracts from (δS starts at zero), so its
    seeds share one cached basis; LoRA's A is drawn from the seed (fixed-A's is a buffer, PEFT's trainable)."""
    from projected_grpo.directions.store import basis_key

    def key(kind: str, seed: int, rank: int | None = None) -> str:
        model, tokenizer = load_model("tiny-qwen3")
        adapters = attach_adapters(model, AdapterConfig(kind, rank=rank, seed=seed), cache_dir=tmp_path)
        return basis_key(small_pairs, adapters, tokenizer, "gradient", ExtractionConfig(k=2), {})

    assert key("svd", 41) == key("svd", 42)
    assert key("fixed_a_lora", 41, 4) != key("fixed_a_lora", 42, 4)
    assert key("peft_lora", 41, 4) != key("peft_lora", 42, 4)


def test_peft_lora_factors_train_in_fp32_on_a_bf16_model():
    model, _ = load_model("tiny-qwen3", dtype=torch.bfloat16)
    adapters = attach_adapters(model, AdapterConfig("peft_lora", rank=4))
    assert {p.dtype for p in adapters.trainable_parameters()} == {torch.float32}
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    ids = torch.randint(0, 259, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()  # mixed dtypes run
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in adapters.trainable_parameters())


def test_heldout_split_is_per_mode_and_refuses_to_empty_a_mode(small_pairs):
    from projected_grpo.directions.pairs import split_heldout

    kept, held = split_heldout(small_pairs, 0.25, seed=0)  # run_tests 8, sentinel 4
    assert (len(kept), len(held)) == (9, 3) and sorted(p.mode for p in held).count("run_tests") == 2
    assert not set(map(id, kept)) & set(map(id, held))
    assert split_heldout(small_pairs, 0.0, seed=0) == (list(small_pairs), [])  # nothing held out: the set as it is
    with pytest.raises(DatasetError, match="leaves no sentinel pair"):
        split_heldout(small_pairs, 0.9, seed=0)
