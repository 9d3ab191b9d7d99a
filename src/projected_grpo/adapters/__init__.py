"""Adapters trained by GRPO (SVD knob, fixed-A LoRA, PEFT LoRA): method.md §1."""
