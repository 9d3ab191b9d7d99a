"""Supervised fine-tuning on (prompt messages, completion) pairs: completion-only mean NLL, AdamW.

Used to give a small model from a config the answer format (and, for the organism, its priors)."""

from __future__ import annotations

import random

import torch

from projected_grpo.directions.tokens import completion_batch, completion_nll


def supervised_finetune(model, tokenizer, prompts: list, completions: list[str], steps: int, lr: float = 3e-3,
                        batch_size: int = 8, seed: int = 0, in_order: bool = False,
                        progress=lambda done, total: None) -> list[float]:
    """Train all of `model`'s parameters for `steps` batches; returns losses. Batches are drawn with a
    seeded RNG, or (`in_order`, for data already sampled fresh per step) taken in order under a cosine
    learning-rate decay."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if in_order else None
    model.train()
    losses = []
    for step in range(steps):
        idx = (list(range(step * batch_size, (step + 1) * batch_size)) if in_order
               else [rng.randrange(len(prompts)) for _ in range(batch_size)])
        ids, attn, comp = completion_batch(tokenizer, [prompts[i] for i in idx], [completions[i] for i in idx])
        loss = completion_nll(model, ids, attn, comp).mean()
        assert torch.isfinite(loss), "non-finite SFT loss"
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if schedule is not None:
            schedule.step()
        losses.append(float(loss.detach()))
        progress(step + 1, steps)
    model.eval()
    return losses
