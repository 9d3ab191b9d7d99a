"""One prepared GPU check (issue 12.3): measured figures for a single CUDA card, written as one JSON.

    scripts/gpu_check.sh [OUT.json]           # CUDA, bf16, a Qwen3-4B-shaped model (default OUT:
                                               #   docs/results/gpu/gpu_check.json)
    scripts/gpu_check.sh --smoke OUT.json     # CPU, fp32, a tiny model of the same family (seconds)

Sections, each written to OUT as soon as it is done (atomically; a killed check keeps what it measured):
1. `fast-dev-run` (the real pipeline on the warm-up tiny model) on the card in bf16: ok flag and timings.
   Skipped in smoke mode (minutes on a CPU; tests/test_training.py covers it there).
2. Per adapter kind, on a Qwen3 model built from a config with random weights (no hub; Qwen3-4B's sizes):
   set-up time (δS: the SVD of every adapted weight), generation tokens/s (a batch of random prompts,
   a fixed number of new tokens, sampled), a GRPO-like training step — forward + backward of an
   advantage-weighted token log-prob loss on a (batch × seq) block, then the optimizer step — with the
   vanilla arm's optimizer (ProjectingOptimizer in `measure` mode) and the erase arm's (`erase`, update
   space), timed interleaved as in projection_overhead.py, and peak GPU memory (null on the CPU).
   The basis is Haar-random, k = 12 rows per module over its trainable vector (the cost of projecting
   does not depend on where the rows come from). Generation is excluded from the step times (it is
   timed on its own), so erase / vanilla here is an upper bound on the ratio of whole GRPO steps.
Also: the analytic bytes of what each adapter keeps beside the weights, from the shapes alone.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from projected_grpo.adapters.attach import AdapterConfig, attach_adapters
from projected_grpo.atomic import write_json_atomic
from projected_grpo.directions.basis import random_basis
from projected_grpo.models import default_device
from projected_grpo.projection.optimizer import ProjectingOptimizer, ProjectionConfig, modules_from_adapters

DEFAULT_OUT = "docs/results/gpu/gpu_check.json"
GIB = 2**30
# Qwen3-4B's sizes (config.json of Qwen/Qwen3-4B); the smoke shape is tiny_model's (models.py)
SHAPES = {
    "qwen3-4b": dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "tiny": dict(vocab_size=259, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False),
}
# what differs between the two modes; everything else is the same code
MODES = {
    "gpu": dict(shape="qwen3-4b", dtype=torch.bfloat16, top_m=256, rank=32, gen_batch=16, prompt_len=128,
                gen_tokens=128, batch=4, seq=512, reps=5),
    "smoke": dict(shape="tiny", dtype=torch.float32, top_m=8, rank=4, gen_batch=2, prompt_len=8,
                  gen_tokens=8, batch=2, seq=16, reps=2),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def gib(device: torch.device, peak: bool = False) -> float | None:
    if device.type != "cuda":
        return None
    return (torch.cuda.max_memory_allocated(device) if peak else torch.cuda.memory_allocated(device)) / GIB


def module_shapes(shape: dict) -> list[tuple[str, int, int]]:
    """(name, out, in) of every adapted Linear (the default targets) in one decoder layer."""
    d, f, h = shape["hidden_size"], shape["intermediate_size"], shape["head_dim"]
    q, kv = shape["num_attention_heads"] * h, shape["num_key_value_heads"] * h
    return [("q_proj", q, d), ("k_proj", kv, d), ("v_proj", kv, d), ("o_proj", d, q),
            ("gate_proj", f, d), ("up_proj", f, d), ("down_proj", d, f)]


def analytic_bytes(shape: dict, layers: int, dtype: torch.dtype, top_m: int, rank: int) -> dict:
    """What each adapter keeps beside the weights, from the shapes: δS keeps U (o × m) and Vh (m × i)
    in the model's dtype (+ S, δS, δS_hack in fp32); fixed-A keeps A (ρ × i, model dtype) and B, B_hack
    (o × ρ, fp32); PEFT LoRA keeps A (r × i) and B (o × r) in fp32. AdamW state is not included."""
    el = torch.tensor([], dtype=dtype).element_size()
    mods = module_shapes(shape) * layers
    weights = sum(o * i for _, o, i in mods) * el

    def svd(m):
        return sum((o * min(m, o, i) + min(m, o, i) * i) * el + 3 * min(m, o, i) * 4 for _, o, i in mods)

    return {"dtype": str(dtype).removeprefix("torch."), "adapted_weights_gib": weights / GIB,
            "svd_full_rank_extra_gib": svd(10**9) / GIB, f"svd_top{top_m}_extra_gib": svd(top_m) / GIB,
            f"fixed_a_lora_r{rank}_extra_gib": sum(rank * i * el + 2 * o * rank * 4 for _, o, i in mods) / GIB,
            f"peft_lora_r{rank}_extra_gib": sum((rank * i + o * rank) * 4 for _, o, i in mods) / GIB,
            "svd_full_rank_extra_over_adapted_weights": svd(10**9) / weights}


def measure_svd(shape: dict, device: torch.device) -> dict:
    """Seconds for one fp32 SVD of the largest adapted weight shape: on the CPU (where δS's set-up does it
    today, layers.weight_svd) and, on a card, there too — the δS set-up's largest cost."""
    _, o, i = max(module_shapes(shape), key=lambda m: m[1] * m[2])
    w = torch.randn(o, i, generator=torch.Generator().manual_seed(3))
    out = {"shape": [o, i], "cpu_s": timed(lambda: torch.linalg.svd(w, full_matrices=False), torch.device("cpu")),
           "cpu_threads": torch.get_num_threads(), "device_s": None}
    if device.type == "cuda":
        torch.linalg.svd(torch.randn(64, 64, device=device), full_matrices=False)  # warm-up (cuSOLVER handles)
        w = w.to(device)
        out["device_s"] = timed(lambda: torch.linalg.svd(w, full_matrices=False), device)
    return out


def build_model(shape: dict, layers: int, device: torch.device, dtype: torch.dtype):
    """A Qwen3 causal LM with random weights, built directly on `device` in `dtype`."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(**{**shape, "num_hidden_layers": layers}, max_position_embeddings=8192)
    with torch.device(device):
        model = Qwen3ForCausalLM._from_config(config, dtype=dtype)
    return model.train()


def measure_generation(model, cfg: dict, device: torch.device) -> dict:
    vocab, n = model.config.vocab_size, cfg["gen_tokens"]
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (cfg["gen_batch"], cfg["prompt_len"]), generator=gen).to(device)
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0, pad_token_id=0)
    model.eval()
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up (kernels, ΔW caches)
        seconds = timed(lambda: model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kwargs), device)
    model.train()
    return {"batch": cfg["gen_batch"], "prompt_tokens": cfg["prompt_len"], "new_tokens": n, "seconds": seconds,
            "tokens_per_s": cfg["gen_batch"] * n / seconds}


def measure_steps(model, adapters, cfg: dict, device: torch.device) -> dict:
    """Forward + backward of a GRPO-style loss, then plain AdamW / vanilla (measure) / erase steps on the
    same gradients, interleaved; medians over `reps`. Peak memory: the first forward + backward + erase step,
    with one optimizer's state as in training (the two timed beside it are created after)."""
    basis = random_basis({n: m.trainable.numel() for n, m in adapters}, k=12, seed=0)

    def projecting(mode: str):
        inner = torch.optim.AdamW(adapters.trainable_parameters(), lr=1e-5)
        return ProjectingOptimizer(inner, modules_from_adapters(adapters, basis.vectors), ProjectionConfig(mode, "update"))

    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, model.config.vocab_size, (cfg["batch"], cfg["seq"]), generator=gen).to(device)
    advantages = torch.randn(cfg["batch"], generator=gen).to(device)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        (-(advantages[:, None] * logp).mean()).backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    erase = projecting("erase")
    forward_backward()  # warm-up; an optimizer's state is created on its first step
    erase.step()
    peak = gib(device, peak=True)
    optimizers = {"plain_adamw": torch.optim.AdamW(adapters.trainable_parameters(), lr=1e-5),
                  "vanilla_measure": projecting("measure"), "erase": erase}
    for name in ("plain_adamw", "vanilla_measure"):
        optimizers[name].step()
    rows = {"forward_backward": [], **{name: [] for name in optimizers}}
    for _ in range(cfg["reps"]):
        rows["forward_backward"].append(timed(forward_backward, device))
        for name, opt in optimizers.items():
            rows[name].append(timed(opt.step, device))
    med = {f"{k}_s": statistics.median(v) for k, v in rows.items()}
    fb = med["forward_backward_s"]
    return {"batch": cfg["batch"], "seq": cfg["seq"], "reps": cfg["reps"], "basis_k": 12, **med,
            "step_vanilla_s": fb + med["vanilla_measure_s"], "step_erase_s": fb + med["erase_s"],
            "erase_over_vanilla": (fb + med["erase_s"]) / (fb + med["vanilla_measure_s"]),
            "projection_fraction_of_forward_backward": (med["erase_s"] - med["plain_adamw_s"]) / fb,
            "peak_train_gib": peak}


def measure_kind(label: str, config: AdapterConfig, cfg: dict, layers: int, device: torch.device, cache: Path) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    baseline, t = gib(device), time.perf_counter()  # baseline: what earlier kinds left allocated (0 expected)
    model = build_model(SHAPES[cfg["shape"]], layers, device, cfg["dtype"])
    out = {"kind": config.kind, "rank": config.rank, "baseline_gib": baseline, "build_s": time.perf_counter() - t,
           "parameters": sum(p.numel() for p in model.parameters()), "weights_gib": gib(device)}
    t = time.perf_counter()
    adapters = attach_adapters(model, config, cache_dir=cache)
    out.update(attach_s=time.perf_counter() - t, adapted_modules=len(adapters.modules),
               trainable=sum(p.numel() for p in adapters.trainable_parameters()), after_attach_gib=gib(device))
    out["generation"] = measure_generation(model, cfg, device)
    out["peak_attach_and_generation_gib"] = gib(device, peak=True)
    out["train_step"] = measure_steps(model, adapters, cfg, device)
    peaks = (out["peak_attach_and_generation_gib"], out["train_step"]["peak_train_gib"])
    out["peak_gib"] = None if device.type != "cuda" else max(peaks)
    print(f"  {label:20s} attach {out['attach_s']:.1f}s  gen {out['generation']['tokens_per_s']:.0f} tok/s  "
          f"erase/vanilla {out['train_step']['erase_over_vanilla']:.3f}  projection/fwd+bwd "
          f"{out['train_step']['projection_fraction_of_forward_backward']:.4f}  peak train "
          f"{out['train_step']['peak_train_gib']} GiB", flush=True)
    del model, adapters
    gc.collect()
    return out


def run_fast_dev_run(device: torch.device) -> dict:
    from projected_grpo.experiments.fast_dev_run import fast_dev_run

    out_dir = Path(tempfile.mkdtemp(prefix="pgrpo-gpu-fdr-"))
    overrides = ['model.dtype="bfloat16"'] if device.type == "cuda" else []
    try:
        report = fast_dev_run(out_dir, problems=4, extra_overrides=overrides)
        return {"ok": report["ok"], "resume_matches": report["resume_matches"],
                "projection_held": report["projection_held"], "timings_s": report["timings_s"], "overrides": overrides}
    except Exception as e:  # recorded, so the other figures of the check still come back
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "overrides": overrides}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


KINDS = ("fixed_a_lora", "peft_lora", "svd", "svd_top")


def main(argv: list[str] | None = None) -> dict:
    from projected_grpo.provenance import provenance

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help=f"output JSON (default {DEFAULT_OUT}; required with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="CPU, fp32, tiny shapes: a check of the check")
    ap.add_argument("--layers", type=int, help="decoder layers (default: the shape's, 36 for Qwen3-4B)")
    ap.add_argument("--kinds", default="fixed_a_lora,peft_lora,svd,svd_top",
                    help="adapter kinds to measure, in order (δS last: its SVD set-up is the slowest part)")
    ap.add_argument("--skip-fast-dev-run", action="store_true")
    args = ap.parse_args(argv)
    mode = "smoke" if args.smoke else "gpu"
    unknown = [k for k in args.kinds.split(",") if k not in KINDS]
    if unknown:  # before minutes of fast-dev-run
        ap.error(f"--kinds: unknown {unknown[0]!r}; choose from {', '.join(KINDS)}")
    if args.smoke and not args.out:
        ap.error("--smoke needs an output path (the default is the GPU figures' place in docs/)")
    cfg = MODES[mode]
    device = torch.device("cpu") if args.smoke else default_device()
    if not args.smoke and device.type != "cuda":
        sys.exit("gpu_check: no CUDA device here; run with --smoke OUT.json for the CPU check of the check")
    out_path = Path(args.out or DEFAULT_OUT)
    shape, layers = SHAPES[cfg["shape"]], args.layers or SHAPES[cfg["shape"]]["num_hidden_layers"]
    start = time.perf_counter()
    result = {"mode": mode, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "dtype": str(cfg["dtype"]).removeprefix("torch."), "model_shape": {**shape, "num_hidden_layers": layers},
              "settings": {k: v for k, v in cfg.items() if k != "dtype"},
              "analytic": analytic_bytes(shape, layers, cfg["dtype"], cfg["top_m"], cfg["rank"]), "kinds": {},
              "provenance": provenance({"mode": mode, "layers": layers, "kinds": args.kinds})}
    print(f"gpu_check ({mode}) on {result['device_name'] or device}: writing {out_path}", flush=True)
    if args.smoke or args.skip_fast_dev_run:
        why = "smoke mode (minutes on a CPU; tests/test_training.py runs it)" if args.smoke else "--skip-fast-dev-run"
        result["fast_dev_run"] = {"skipped": why}
    else:
        result["fast_dev_run"] = run_fast_dev_run(device)
        print(f"  fast-dev-run ok: {result['fast_dev_run']['ok']}", flush=True)
    result["svd_one_matrix"] = measure_svd(shape, device)
    write_json_atomic(out_path, result)
    configs = {"svd": ("svd_full_rank", AdapterConfig("svd")),
               "svd_top": (f"svd_top{cfg['top_m']}", AdapterConfig("svd", rank=cfg["top_m"])),
               "fixed_a_lora": (f"fixed_a_lora_r{cfg['rank']}", AdapterConfig("fixed_a_lora", rank=cfg["rank"])),
               "peft_lora": (f"peft_lora_r{cfg['rank']}", AdapterConfig("peft_lora", rank=cfg["rank"]))}
    cache = Path(tempfile.mkdtemp(prefix="pgrpo-gpu-svd-"))  # δS SVDs: computed once, shared by svd and svd_top
    try:
        for kind in args.kinds.split(","):
            label, config = configs[kind]
            result["kinds"][label] = measure_kind(label, config, cfg, layers, device, cache)
            result["total_s"] = time.perf_counter() - start
            write_json_atomic(out_path, result)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result["total_s"] = time.perf_counter() - start
    write_json_atomic(out_path, result)
    print(f"done in {result['total_s']:.0f}s: {out_path}", flush=True)
    return result


if __name__ == "__main__":
    main()
