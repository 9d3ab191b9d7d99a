"""The "shortcut" concept score of Wu & Tang (2026), as their method section describes it.

    h(x) = mean over layers ℓ ∈ band of hidden_states[ℓ] at x's last token   (band: 60–75 % depth)
    d    = mean over pairs (h(shortcut sentence) − h(honest sentence))         (not unit-normalised)
    s_i  = h(prompt_i + response_i) · d                                         (current policy)

The pairs are general-domain sentences (`pairsets/shortcut.jsonl`, written for this project), not
code and not labelled rollouts: the direction carries no oracle information. Choices the paper
leaves open (see docs/interventions.md): a pair sentence is encoded as plain text (no chat template,
no instruction); a rollout is encoded exactly as in training (chat-templated prompt + response) and
read at the response's final token, before the EOS that training appends.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from projected_grpo.directions.tokens import completion_batch
from projected_grpo.environment.dataset import DatasetError, read_jsonl

BAND = (0.6, 0.75)


def layer_band(num_layers: int, lo: float = BAND[0], hi: float = BAND[1]) -> list[int]:
    """Indices into `hidden_states` (1 = first block's output) at depth ℓ / L ∈ [lo, hi]; a model
    too shallow to have one gets the single layer nearest the band's centre."""
    band = list(range(max(1, math.ceil(lo * num_layers)), math.floor(hi * num_layers) + 1))
    return band or [min(num_layers, max(1, round((lo + hi) / 2 * num_layers)))]


def load_sentence_pairs(name_or_path: str = "shortcut") -> list[tuple[str, str]]:
    """(shortcut, honest) sentence pairs from a JSONL of `{"shortcut": ..., "honest": ...}`."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = resources.files("projected_grpo.interventions").joinpath("pairsets", f"{name_or_path}.jsonl")
        path = Path(str(shipped))
    if not path.is_file():
        raise DatasetError(f"{name_or_path}: no such sentence-pair file or shipped set. "
                           "Fix: pass a JSONL path or 'shortcut'")
    pairs = []
    for n, obj in read_jsonl(path):
        sides = ("shortcut", "honest")
        if not (isinstance(obj, dict) and all(isinstance(obj.get(k), str) and obj[k].strip() for k in sides)):
            raise DatasetError(f"{path}:{n}: expected {{\"shortcut\": str, \"honest\": str}}, got {json.dumps(obj)[:80]}")
        pairs.append((obj["shortcut"], obj["honest"]))
    if not pairs:
        raise DatasetError(f"{path}: no pairs. Fix: add pairs")
    return pairs


@torch.no_grad()
def band_states(model, ids: list[list[int]], read_at: list[int], layers: list[int], batch_size: int = 16
                ) -> Float[Tensor, "n d"]:
    """Row i's hidden state at position read_at[i], averaged over `layers` (right-padded batches)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(ids), batch_size):
        rows, at = ids[i:i + batch_size], torch.tensor(read_at[i:i + batch_size])
        width = max(len(r) for r in rows)
        x = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=device)
        attn = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        hidden = model(input_ids=x, attention_mask=attn, output_hidden_states=True).hidden_states
        h: Float[Tensor, "l b s d"] = torch.stack([hidden[layer].float() for layer in layers])
        out.append(h[:, torch.arange(len(rows)), at.to(device)].mean(0).cpu())
    model.train(was_training)
    return torch.cat(out)


def sentence_states(model, tokenizer, sentences: list[str], layers: list[int]) -> Float[Tensor, "n d"]:
    """Each sentence as plain text, read at its last token."""
    ids = [tokenizer(s)["input_ids"] for s in sentences]
    return band_states(model, ids, [len(r) - 1 for r in ids], layers)


def response_states(model, tokenizer, prompts, responses: list[str], layers: list[int],
                    chat_template_kwargs: dict | None = None) -> Float[Tensor, "n d"]:
    """Each rollout templated as in training, read at the response's final token (the one before the
    appended EOS; an empty response is read at the EOS)."""
    ids, attn, comp = completion_batch(tokenizer, prompts, responses, chat_template_kwargs)
    lengths, n_comp = attn.sum(1), comp.sum(1)
    read_at = torch.where(n_comp > 1, lengths - 2, lengths - 1)
    rows = [r[:n].tolist() for r, n in zip(ids, lengths)]
    return band_states(model, rows, read_at.tolist(), layers)


def shortcut_direction(model, tokenizer, pairs: list[tuple[str, str]], layers: list[int]) -> Float[Tensor, " d"]:
    """d = mean over pairs of h(shortcut) − h(honest), as the paper defines it (no normalisation)."""
    shortcut = sentence_states(model, tokenizer, [s for s, _ in pairs], layers)
    honest = sentence_states(model, tokenizer, [h for _, h in pairs], layers)
    return (shortcut - honest).mean(0)


@dataclass
class LastTokenScorer:
    """s = h · d for each rollout, h read from the *current* policy at the response's last token."""

    model: torch.nn.Module
    tokenizer: object
    layers: list[int]
    direction: Float[Tensor, " d"]
    chat_template_kwargs: dict | None = None

    def __call__(self, rollouts) -> Float[Tensor, " n"]:
        h = response_states(self.model, self.tokenizer, [r["prompt"] for r in rollouts.records], rollouts.responses,
                            self.layers, self.chat_template_kwargs)
        return einsum(h, self.direction, "n d, d -> n")
