"""The shared-prompt forward (training/prefix.py) against the full-sequence forward it replaces."""

import torch

from projected_grpo.models import byte_tokenizer, tiny_model
from projected_grpo.training.prefix import prompt_completion_batch, shared_prompt_nll


def test_sft_nll_and_gradients_match_the_full_sequence_forward():
    tokenizer = byte_tokenizer()
    model = tiny_model("tiny-qwen3", vocab_size=len(tokenizer))
    prompts = [[{"role": "user", "content": "add two numbers"}]] * 3 + [[{"role": "user", "content": "sort"}]] * 2
    ids, mask, c = prompt_completion_batch(tokenizer, prompts, ["return a + b", "a+b", "", "sorted(x)", "x.sort()"])
    assert (mask[:, 0] == 0).any() and (mask[:, -1] == 0).any()  # left-padded prompts, right-padded completions

    def run(fn):
        model.zero_grad()
        nll = fn()
        nll.sum().backward()
        return nll.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])

    def full():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -c - 1:-1].float()
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, -c:], reduction="none")
        done = mask[:, -c:].float()
        return (per_token * done).sum(1) / done.sum(1)

    shared, reference = run(lambda: shared_prompt_nll(model, ids, mask, c)), run(full)
    assert torch.allclose(shared[0], reference[0], atol=1e-5) and torch.allclose(shared[1], reference[1], atol=1e-5)
