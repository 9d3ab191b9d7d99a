"""An adapter's settings, torch-free so that the CLI can take its option defaults from them."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
KINDS = ("svd", "fixed_a_lora", "peft_lora")


@dataclass(frozen=True)
class AdapterConfig:
    kind: str = "svd"  # "svd" (δS knob), "fixed_a_lora" or "peft_lora" (plain LoRA, activation space only)
    targets: tuple[str, ...] = DEFAULT_TARGETS  # Linear modules whose name ends with one of these
    rank: int | None = None  # svd: top-m (None = full rank); fixed_a_lora: ρ (required); peft_lora: r = α (32)
    seed: int = 0  # fixed_a_lora / peft_lora: seeds A's initialisation

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"adapter kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.kind == "fixed_a_lora" and not self.rank:
            raise ValueError("fixed_a_lora needs a rank ρ (e.g. rank = 32)")
