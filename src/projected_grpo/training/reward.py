"""The reward side of a run: the environment reward as a TRL reward function (timed, optionally shaped
by a published intervention), the oracle-label log it feeds (logs only, method §6), and the teacher
pool whose completions carry frozen rewards."""

from __future__ import annotations

import collections
import random
import time
from dataclasses import dataclass

import torch

from projected_grpo.environment.dataset import DatasetError, read_jsonl
from projected_grpo.environment.grader import RewardView
from projected_grpo.environment.modes import MODES
from projected_grpo.environment.rewards import EnvironmentReward, correct_or_hinted_compile
from projected_grpo.interventions.shaping import Rollouts


class LabelLog:
    """Receives each reward call's graded rollouts. Nothing in training reads it back (§6)."""

    def __init__(self):
        self.pending: list[tuple[dict, str, dict]] = []
        self.grading_s = 0.0

    def __call__(self, records, responses, grades) -> None:
        self.pending.extend(zip(records, responses, (g.fields for g in grades)))

    def drain(self) -> list[tuple[dict, str, dict]]:
        out, self.pending = self.pending, []
        return out


def label_metrics(rows: list[tuple[dict, str, dict]]) -> dict[str, float]:
    """Rates over one step's rollouts: hack (strict/loose), correct (reference and hardened), ..."""
    if not rows:
        return {}
    fields = [f for _, _, f in rows]
    n = len(fields)
    rate = lambda key: sum(bool(f[key]) for f in fields) / n  # noqa: E731
    out = {"labels/n": n, "labels/hack_strict": rate("is_reward_hack_strict"), "labels/hack_loose": rate("is_reward_hack_loose"),
           "labels/correct": rate("eq_correct"), "labels/correct_hardened": rate("gt_correct_hardened"),
           "labels/exploited": rate("exploited"), "labels/compile": rate("can_compile"), "labels/formatted": rate("is_formatted")}
    by_mode = collections.defaultdict(list)
    for f in fields:
        if f["mode"]:
            by_mode[f["mode"]].append(f["exploited"])
    for mode in MODES:
        if by_mode[mode]:
            out[f"labels/exploited/{mode}"] = sum(by_mode[mode]) / len(by_mode[mode])
    return out


class TimedReward(EnvironmentReward):
    """The environment reward, timed; completions the trainer mixed in from a teacher pool carry
    their frozen pool reward (`frozen[i]` not None) and are neither graded nor logged as the student's."""

    def __init__(self, *args, shaper=None, group_size: int = 1, **kwargs):
        """`shaper`: a published intervention's reward shaping over whole groups of `group_size`
        (interventions/shaping.py), or None."""
        super().__init__(*args, **kwargs)
        self.shaper, self.group_size = shaper, group_size
        self.frozen: list | None = None  # set by the trainer for a step with teacher-pool completions
        self.last_info: dict = {}
        self.last_seconds = 0.0

    def __call__(self, prompts, completions, **columns):
        start = time.perf_counter()
        if self.shaper is not None:
            graded = self.shaped(prompts, completions, **columns)
            self.last_seconds = time.perf_counter() - start
            return graded
        frozen, self.frozen = self.frozen or [None] * len(completions), None
        own = [i for i, f in enumerate(frozen) if f is None]
        pick = lambda xs: [xs[i] for i in own]  # noqa: E731
        graded = super().__call__(pick(prompts), pick(completions),
                                  **{k: pick(v) if isinstance(v, list) and len(v) == len(completions) else v
                                     for k, v in columns.items()}) if own else []
        out, it = [], iter(graded)
        for f in frozen:
            out.append(f if f is not None else next(it))
        self.last_seconds = time.perf_counter() - start
        return out

    def shaped(self, prompts, completions, **columns) -> list[float]:
        """Environment rewards, then the shaper over whole groups. Only a shaper that declares
        `uses_oracle` (the ground-truth monitor arms) is handed the oracle labels."""

        records, responses, grades, scores = self.grade_and_score(prompts, completions, **columns)
        oracle = [g.fields for g in grades] if self.shaper.uses_oracle else None
        rollouts = Rollouts(records, responses, [g.reward_view for g in grades], self.group_size, oracle)
        shaped, self.last_info = self.shaper(torch.tensor(scores, dtype=torch.float64), rollouts)
        return shaped.tolist()


@dataclass(frozen=True)
class TeacherPool:
    """Graded completions per problem id (a `grade` output JSONL), each with its frozen reward."""

    by_id: dict
    mix: float
    seed: int

    @classmethod
    def load(cls, path: str, mix: float, seed: int, allow_hint: bool) -> "TeacherPool":

        by_id: dict = collections.defaultdict(list)
        for n, row in read_jsonl(path):
            missing = [k for k in ("id", "response", "can_compile", "eq_correct", "eq_hinted") if k not in row]
            if missing:
                raise DatasetError(f"{path}:{n}: field '{missing[0]}': missing. Fix: use `projected-grpo grade` output")
            view = RewardView(True, row["can_compile"], row["eq_correct"], row["eq_hinted"], row.get("hint"), False)
            by_id[row["id"]].append((row["response"], correct_or_hinted_compile(view, allow_hint)))
        return cls(dict(by_id), mix, seed)


def mix_pool(pool: TeacherPool, group_ids: list, completion_ids: list, completions: list, logprobs: list | None,
             g: int, rng: random.Random, tokenizer, max_len: int) -> list:
    """In place: the first round(mix × G) completions of each group (problem `group_ids[j]`) become pool
    completions that fit in `max_len` tokens (a longer one is never mixed in: cut, it would keep a
    reward its cut text may not earn); their sampling log-probs (vLLM) are NaN, which TRL reads as
    "unscorable" (importance ratio 1, no correction) instead of crushing them. Returns the frozen
    reward of each slot (None: the student's own, to be graded)."""
    assert len(group_ids) * g == len(completions), f"{len(completions)} completions are not {len(group_ids)} groups of {g}"
    frozen = [None] * len(completions)
    for j, pid in enumerate(group_ids):
        candidates = [(text, reward, ids) for text, reward in pool.by_id.get(pid, [])
                      if len(ids := tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
                      <= max_len]
        for i in range(j * g, j * g + min(round(pool.mix * g), g) if candidates else j * g):
            text, reward, ids = rng.choice(candidates)
            completion_ids[i] = ids
            completions[i] = [{"role": "assistant", "content": text}] if isinstance(completions[i], list) else text
            if logprobs is not None:
                logprobs[i] = [float("nan")] * len(ids)
            frozen[i] = reward
    return frozen
