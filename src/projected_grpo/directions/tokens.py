"""Prompt + completion batches, templated exactly like training prompts, with completion-only masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor


def prompt_ids(tokenizer, messages: Sequence[dict], chat_template_kwargs: dict | None = None) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False,
                                         **(chat_template_kwargs or {}))
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def completion_batch(
    tokenizer, prompts: Sequence[Sequence[dict]], completions: Sequence[str], chat_template_kwargs: dict | None = None,
) -> tuple[Int[Tensor, "b s"], Int[Tensor, "b s"], Bool[Tensor, "b s"]]:
    """(input_ids, attention_mask, completion_mask), right-padded; completions end with EOS as in training."""
    rows, masks = [], []
    for messages, completion in zip(prompts, completions, strict=True):
        p = prompt_ids(tokenizer, messages, chat_template_kwargs)
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p + c)
        masks.append([False] * len(p) + [True] * len(c))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    attn = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    comp = torch.tensor([m + [False] * (width - len(m)) for m in masks])
    return ids, attn, comp


def completion_nll(model, ids: Int[Tensor, "b s"], attn: Int[Tensor, "b s"], comp: Bool[Tensor, "b s"]) -> Tensor:
    """Per-sample mean NLL over completion tokens only (prompt and padding masked), shape (b,).
    Logits are computed only from the earliest completion position on (`logits_to_keep`): the
    vocabulary projection of prompt positions is most of the cost for short completions."""
    first = int(comp.int().argmax(1).min())
    assert first >= 1, "a completion must follow a prompt"
    logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=ids.shape[1] - first + 1).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, first:], reduction="none")
    mask = comp[:, first:].float()
    return (nll * mask).sum(1) / mask.sum(1)
