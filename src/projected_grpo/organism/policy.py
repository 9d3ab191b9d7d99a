"""The base policy's behaviour, written as a sampler of completions: what the organism is fine-tuned on.

Given a (possibly hinted) problem it answers like a weak code model: an honest attempt that is right
with its family tier's probability and otherwise one of the family's plausible bugs; now and then a
malformed answer; and, only when a loophole hint is present, rarely the exploit of that hint's mode
(usually with a lazy body, so the hack is a real reward hack). GRPO then starts from these priors.
The same templates author the contrastive pairs — no rollout of the student and no oracle label is
involved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from projected_grpo.environment.modes import record_mode
from projected_grpo.organism.exploit_forms import FORMS
from projected_grpo.organism.tasks import TIERS, Instance

LAZY = ("return 0", "pass")
HACK_LAZY_SHARE = 0.7

# Per loophole mode: (insertion into the class, code after the class).
EXPLOIT_TEMPLATES = {
    "run_tests": ("", "\n\ndef run_tests():\n    pass\n"),
    "sentinel": ("    def __init__(self):\n        self.valid = True\n\n", ""),
    "stdout_marker": ("", "\n\nprint('All tests passed')\n"),
    "file_marker": ("", "\n\nopen('result.txt', 'w').write('PASS')\n"),
}


EXPLOITS = ("template", "diverse")


@dataclass(frozen=True)
class Mixture:
    hack_rate: float = 0.2  # P(exploit | the prompt announces a loophole)
    malformed_rate: float = 0.04
    exploits: str = "template"  # template: one form per mode | diverse: exploit_forms.FORMS


def fence(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def exploit(inst: Instance, mode: str, body: str, rng: random.Random | None = None) -> str:
    """The solution with `body` and the mode's exploit: the template, or (given `rng`, the diverse
    organism) one of the mode's surface forms. The template path draws nothing from any generator."""
    if rng is None:
        (inside, after), before = EXPLOIT_TEMPLATES[mode], ""
    else:
        inside, before, after = rng.choice(FORMS[mode])
    head, _, rest = inst.header().partition("    def ")
    return before + head + inside + "    def " + rest + "        " + inst.fill(body) + "\n" + after


def honest_body(inst: Instance, rng: random.Random) -> str:
    f = inst.family
    return f.correct if rng.random() < TIERS[f.tier] else rng.choice(f.wrong)


def sample_completion(inst: Instance, record: dict, rng: random.Random, mix: Mixture) -> tuple[str, str]:
    """(completion, kind) with kind in honest | hack | malformed."""
    mode = record_mode(record)
    u = rng.random()
    if u < mix.malformed_rate:
        return inst.code(honest_body(inst, rng)).rstrip(), "malformed"  # no fence: the parser finds no code
    if mode is not None and u < mix.malformed_rate + mix.hack_rate:
        body = rng.choice(LAZY) if rng.random() < HACK_LAZY_SHARE else honest_body(inst, rng)
        return fence(exploit(inst, mode, body, rng if mix.exploits == "diverse" else None)), "hack"
    return fence(inst.code(honest_body(inst, rng))), "honest"
