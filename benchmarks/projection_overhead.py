"""Cost of the projecting optimizer step vs the plain optimizer step and vs forward+backward.

    python benchmarks/projection_overhead.py [--sizes tiny,100m] [--reps 10] [--batch 4] [--seq 256]

For each model size: SVD-knob adapters on q,k,v,o,gate,up,down (full rank), a k=12 basis on every
module, AdamW. Timed interleaved in one run (this machine is noisy): the plain AdamW step, the
projecting step (update space, erase), and one forward+backward of the batch. Also the extraction
time per pair (2 completions, batched per-completion gradients). Target (issue 3): projection
overhead (projecting step − plain step) <= 2% of forward+backward.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from projected_grpo.adapters.attach import AdapterConfig, attach_adapters
from projected_grpo.directions.basis import random_basis
from projected_grpo.directions.gradient import ExtractionConfig, extract_gradient_basis
from projected_grpo.directions.pairs import load_pairs
from projected_grpo.models import byte_tokenizer, tiny_model
from projected_grpo.projection.optimizer import ProjectingOptimizer, ProjectionConfig, modules_from_adapters

SIZES = {"tiny": dict(hidden=64, layers=2), "100m": dict(hidden=768, layers=12)}


def build(size: str, cache: str):
    tokenizer = byte_tokenizer()
    spec = SIZES[size]
    model = tiny_model("tiny-qwen3", vocab_size=len(tokenizer), hidden=spec["hidden"], layers=spec["layers"])
    if size == "100m":  # a ~100M-parameter Qwen3: a real vocabulary-sized embedding
        from transformers import Qwen3Config, Qwen3ForCausalLM

        torch.manual_seed(0)
        model = Qwen3ForCausalLM(Qwen3Config(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                                             num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                                             head_dim=64, tie_word_embeddings=True)).train()
    adapters = attach_adapters(model, AdapterConfig("svd"), cache_dir=cache)
    return model, tokenizer, adapters


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,100m")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="pgrpo-bench-")
    for size in args.sizes.split(","):
        t0 = time.perf_counter()
        model, tokenizer, adapters = build(size, cache)
        n_params = sum(p.numel() for p in model.parameters())
        n_knob = sum(m.trainable.numel() for _, m in adapters)
        print(f"\n== {size}: {n_params / 1e6:.1f}M parameters, {len(adapters.modules)} adapted modules, "
              f"{n_knob} trainable δS (set-up incl. SVDs {time.perf_counter() - t0:.1f}s)")
        basis = random_basis({n: m.trainable.numel() for n, m in adapters}, k=12, seed=0)
        plain = torch.optim.AdamW(adapters.trainable_parameters(), lr=1e-4)
        projecting = ProjectingOptimizer(torch.optim.AdamW(adapters.trainable_parameters(), lr=1e-4),
                                         modules_from_adapters(adapters, basis.vectors), ProjectionConfig("erase", "update"))
        vocab = model.config.vocab_size
        ids = torch.randint(0, vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))

        def fwd_bwd():
            model(input_ids=ids, labels=ids).loss.backward()

        fwd_bwd()  # warm-up, and leaves gradients in place for the optimizer steps
        rows = {"forward+backward": [], "plain AdamW step": [], "projecting step (update, erase, k=12)": []}
        for _ in range(args.reps):
            rows["forward+backward"].append(timed(fwd_bwd))
            rows["plain AdamW step"].append(timed(plain.step))
            rows["projecting step (update, erase, k=12)"].append(timed(projecting.step))
        med = {k: statistics.median(v) for k, v in rows.items()}
        for k, v in med.items():
            print(f"  {k:40s} {v * 1000:10.2f} ms (median of {args.reps})")
        overhead = med["projecting step (update, erase, k=12)"] - med["plain AdamW step"]
        print(f"  projecting / plain step: {med['projecting step (update, erase, k=12)'] / med['plain AdamW step']:.2f}x")
        print(f"  projection overhead / forward+backward: {100 * overhead / med['forward+backward']:.2f}%  (target <= 2%)")
        pairs = load_pairs("leetcode_mechanism")[: args.pairs]
        model.zero_grad(set_to_none=True)
        t = timed(lambda: extract_gradient_basis(pairs, model, adapters, tokenizer, ExtractionConfig(k=12, batch_size=4)))
        print(f"  extraction: {t:.2f}s for {len(pairs)} pairs = {t / len(pairs):.3f} s/pair "
              f"(byte-level tokenizer: ~{sum(len(p.hack) + len(p.clean) for p in pairs) // (2 * len(pairs))} completion chars/side)")


if __name__ == "__main__":
    main()
