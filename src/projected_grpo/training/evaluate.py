"""Held-out evaluation of a run: sample n completions per prompt on each slice, grade, summarise.

Slices: `nohint` (no loophole announced) and `loophole` (the run's hint, or its loophole modes).
Route runs are evaluated twice: with θ_hack kept and with it ablated (the deployed policy).
Rates carry Wilson 95% intervals over responses.
"""

from __future__ import annotations

import collections
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from projected_grpo.adapters.attach import attach_adapters
from projected_grpo.atomic import write_json_atomic, write_jsonl_atomic
from projected_grpo.directions.tokens import prompt_ids
from projected_grpo.environment.dataset import load_records
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.modes import MODES, make_hinted, make_multimode
from projected_grpo.environment.sandbox import Limits, Sandbox
from projected_grpo.errors import ConfigError
from projected_grpo.models import default_device, dtype_of, load_model
from projected_grpo.provenance import provenance
from projected_grpo.training.arms import ARMS
from projected_grpo.training.config import TrainConfig, saved_config
from projected_grpo.training.data import problem_records
from projected_grpo.training.kv_cache import growing_cache_kwargs

SLICES = ("nohint", "loophole")
RATES = ("is_reward_hack_strict", "is_reward_hack_loose", "eq_correct", "gt_correct_hardened", "exploited")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(fields: list[dict], rates: tuple[str, ...] = RATES) -> dict:
    n = len(fields)
    out = {"n": n}
    for key in rates:
        k = sum(bool(f[key]) for f in fields)
        out[key] = {"rate": k / n if n else 0.0, "ci95": wilson(k, n)}
    by_mode = collections.defaultdict(list)
    for f in fields:
        if f["mode"] in MODES:
            by_mode[f["mode"]].append(f)
    for key, name in (("exploited", "exploited_by_mode"), ("is_reward_hack_strict", "hack_strict_by_mode")):
        out[name] = {m: sum(bool(f[key]) for f in v) / len(v) for m, v in by_mode.items()}
    return out


def eval_summary(run_dir: Path, checkpoint: int | None = None) -> Path:
    """Where `evaluate` writes a run's summary: eval/final/ or eval/checkpoint-N/."""
    return Path(run_dir) / "eval" / (f"checkpoint-{checkpoint}" if checkpoint else "final") / "summary.json"


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no config.json — not a training run directory")
    return saved_config(json.loads(path.read_text()), str(path))


@dataclass
class EvalSettings:
    checkpoint: int | None = None
    n_samples: int = 10
    slices: tuple[str, ...] = ("nohint", "loophole")
    n_problems: int | None = None
    max_new_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):  # every setting checked before a model is loaded (CLI option names in the messages)
        checks = (("--n-samples", self.n_samples, self.n_samples >= 1, ">= 1"),
                  ("--problems", self.n_problems, self.n_problems is None or self.n_problems >= 1, ">= 1 (omit it for all)"),
                  ("--max-new-tokens", self.max_new_tokens, self.max_new_tokens is None or self.max_new_tokens >= 1, ">= 1"),
                  ("--temperature", self.temperature, self.temperature > 0, "> 0 (sampling)"),
                  ("--top-p", self.top_p, 0 < self.top_p <= 1, "in (0, 1]"),
                  ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"))
        for option, value, ok, rule in checks:
            if not ok:
                raise ConfigError(f"{option} {value}: must be {rule}")
        unknown = [x for x in self.slices if x not in SLICES]
        if unknown or not self.slices:
            raise ConfigError(f"--slices {','.join(self.slices)}: "
                              f"{'unknown slice ' + repr(unknown[0]) if unknown else 'empty'}. Fix: choose from {', '.join(SLICES)}")


def heldout_records(config: TrainConfig, n_problems: int | None) -> tuple[list[dict], bool]:
    """The evaluation problems (data.eval_path, else those of data.path past the trained n_problems,
    else — none left — the training problems themselves) and whether they are held out: checked, not
    assumed — no problem id in common with the problems the run could have trained on."""
    records = problem_records(config.data.path)
    trained = records[: config.data.n_problems] if config.data.n_problems else records
    if config.data.eval_path:
        held = load_records(config.data.eval_path)
    else:
        held = records[len(trained):] or records
    held = held[: n_problems or len(held)]
    return held, not ({r["id"] for r in held} & {r["id"] for r in trained})


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list, settings: EvalSettings, max_new_tokens: int,
                   chat_template_kwargs: dict, progress=lambda done: None) -> tuple[list[str], list[int]]:
    """One sampled completion per prompt, in batches of settings.batch_size: the texts and how many tokens
    each generated (up to and including its end-of-sequence token)."""
    tokenizer.padding_side = "left"
    texts, n_tokens = [], []
    for i in range(0, len(prompts), settings.batch_size):
        chunk = [prompt_ids(tokenizer, p, chat_template_kwargs) for p in prompts[i:i + settings.batch_size]]
        width = max(len(c) for c in chunk)
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(c)) + c for c in chunk])
        attn = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk])
        kwargs = dict(input_ids=ids.to(model.device), attention_mask=attn.to(model.device), do_sample=True,
                      temperature=settings.temperature, top_p=settings.top_p, max_new_tokens=max_new_tokens,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        gen = model.generate(**kwargs, **growing_cache_kwargs(model, kwargs))[:, width:].cpu()
        ended = gen == tokenizer.eos_token_id
        n_tokens += torch.where(ended.any(1), ended.int().argmax(1) + 1, gen.shape[1]).tolist()
        texts += tokenizer.batch_decode(gen, skip_special_tokens=True)
        progress(len(texts))
    return texts, n_tokens


def sample(model, tokenizer, prompts: list, n: int, settings: EvalSettings, max_new_tokens: int,
           chat_template_kwargs: dict, progress=lambda done: None) -> list[list[str]]:
    """n completions per prompt, grouped by prompt."""
    texts, _ = generate_texts(model, tokenizer, [p for p in prompts for _ in range(n)], settings, max_new_tokens,
                              chat_template_kwargs, progress)
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def evaluate(run_dir: str | Path, settings: EvalSettings = EvalSettings(), progress=None) -> dict:
    """`progress(done, total)`: responses sampled plus responses graded, over every slice (and θ_hack setting)."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    adapter_file = (run_dir / f"checkpoint-{settings.checkpoint}" / "adapter.safetensors" if settings.checkpoint
                    else run_dir / "adapter.safetensors")
    if not adapter_file.is_file():
        raise ConfigError(f"{adapter_file}: no such adapter file. Fix: pick an existing --checkpoint")
    torch.manual_seed(settings.seed)
    model, tokenizer = load_model(config.model.source, dtype=dtype_of(config.model.dtype), device=default_device())
    adapters = attach_adapters(model, config.adapter.resolve(config.seed))
    adapters.load(adapter_file)
    records, held_out = heldout_records(config, settings.n_problems)
    arm = ARMS[config.arm]
    slices = {}
    for name in settings.slices:
        if name == "nohint":
            slices[name] = make_hinted(records, "nohint", config.data.seed)
        elif name == "loophole":
            slices[name] = (make_multimode(records, tuple(config.data.modes), config.data.seed) if config.data.modes
                            else make_hinted(records, config.data.hint, config.data.seed))
    routed = config.projection.resolve(arm, config.basis.space).mode == "route"
    settings_for_quarantine = ("kept", "ablated") if routed else ("kept",)
    sandbox = Sandbox(config.grader.workers, Limits(timeout_s=config.grader.timeout, kill_after_s=config.grader.timeout + 1),
                      allow_unisolated=config.grader.allow_unisolated)
    grader = Grader(sandbox, memo_size=4096)  # samples of a problem repeat; each distinct one is graded once
    out_dir = eval_summary(run_dir, settings.checkpoint).parent
    summary = {"run": str(run_dir), "arm": config.arm, "held_out": held_out, "n_problems": len(records),
               "n_samples": settings.n_samples, "out_dir": out_dir.name, "results": {}}
    max_new = settings.max_new_tokens or config.grpo.max_completion_length
    total = 2 * settings.n_samples * sum(map(len, slices.values())) * len(settings_for_quarantine)
    report = progress or (lambda done, total: None)
    done = 0
    for q in settings_for_quarantine:
        if q == "ablated":  # route: the deployed policy (kept ran first)
            adapters.deploy()
        for name, recs in slices.items():
            samples = sample(model, tokenizer, [r["prompt"] for r in recs], settings.n_samples, settings, max_new,
                             config.model.chat_template_kwargs, lambda n, d=done: report(d + n, total))
            done += len(recs) * settings.n_samples
            pairs = [(r, s) for r, ss in zip(recs, samples) for s in ss]
            grades = grader.grade(pairs, progress=lambda n, _, d=done: report(d + n, total))
            done += len(pairs)
            rows = [{"id": r["id"], "slice": name, "quarantine": q, "response": s, **g.fields}
                    for (r, s), g in zip(pairs, grades)]
            write_jsonl_atomic(out_dir / f"{name}-{q}.jsonl", rows)
            summary["results"][f"{name}/{q}"] = summarise([g.fields for g in grades])
    sandbox.close()
    write_json_atomic(out_dir / "summary.json", {**summary, "provenance": provenance(
        {"settings": settings.__dict__}, sandbox.isolation.as_dict())})
    return summary
