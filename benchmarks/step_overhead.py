"""Seconds per GRPO step: `erase` (update space) vs `vanilla`, interleaved runs, same seed.

    python benchmarks/step_overhead.py [--sizes tiny,100m] [--rounds 3] [--steps 3]

Each round runs vanilla then erase for `--steps` steps from the same seed and config (tiny preset
shapes: 2 prompts × 4 generations, 48 new tokens), and takes the per-step times from the runs'
metrics (generation + grading + backward + projection). The first step of each run is dropped
(warm-up). The basis comes from the 9 sentinel pairs, so that extraction (cached, once per size)
stays short at 100M. Target (issue 4): erase / vanilla <= 1.03.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from projected_grpo.models import byte_tokenizer
from projected_grpo.training.config import load_config
from projected_grpo.training.run import train


def model_source(size: str, root: Path) -> str:
    if size == "tiny":
        return "tiny-qwen3"
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = byte_tokenizer()
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                         num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4, head_dim=64,
                                         tie_word_embeddings=True))
    directory = root / "model-100m"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    print(f"  ~100M model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    return str(directory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,100m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--authored", action="store_true", help="train on the project's 22 short authored problems")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgrpo-step-"))
    data = []
    if args.authored:
        from projected_grpo.organism.warmup import authored_records

        (root / "authored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in authored_records()))
        data = [f'data.path="{root / "authored.jsonl"}"']
    for size in args.sizes.split(","):
        print(f"\n== {size}")
        source = model_source(size, root)
        times = {"vanilla": [], "erase": []}
        for r in range(args.rounds):
            for arm in ("vanilla", "erase"):
                out = root / f"{size}-{arm}-{r}"
                cfg = load_config(preset="tiny", overrides=[
                    f'arm="{arm}"', f'output_dir="{out}"', f"steps={args.steps}", f'model.source="{source}"',
                    f"save_every={args.steps + 1}", 'basis.modes=["sentinel"]', *data])  # 9 pairs: extraction stays short
                train(cfg)
                rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
                times[arm] += [row["time/step_s"] for row in rows[1:]]
        med = {arm: statistics.median(v) for arm, v in times.items()}
        for arm, v in med.items():
            print(f"  {arm:8s} {v:.3f} s/step (median of {len(times[arm])})")
        print(f"  erase / vanilla: {med['erase'] / med['vanilla']:.3f}  (target <= 1.03)")


if __name__ == "__main__":
    main()
