"""`organism build`: the task suite, a local tokenizer, the SFT'd tiny Qwen3 base policy, its pair sets,
and its priors measured by the real grader — deterministic given the config, cached by its hash.

Layout of a built organism (one directory under `<cache>/organism/<hash>/`):
  model/                 HF model directory (config, safetensors, tokenizer, chat template)
  train.jsonl eval.jsonl no-hint problem records (reference schema), disjoint instances
  pairs_mechanism.jsonl  contrastive pairs, one per pair problem and loophole mode (24 × 4; authored from templates)
  pairs_placebo.jsonl    one pair per pair problem that differs in nothing that matters (24)
  priors.json            the base policy's rates on held-out problems, per slice
  organism.json          config, hash, model hash, SFT loss, timings, provenance
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from loguru import logger

from projected_grpo.adapters.layers import default_cache_dir
from projected_grpo.atomic import write_json_atomic, write_jsonl_atomic
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.hints import apply_hint
from projected_grpo.environment.modes import MODE_HINT, MODES
from projected_grpo.environment.sandbox import Limits, Sandbox
from projected_grpo.models import tiny_model, train_bpe_tokenizer
from projected_grpo.organism.policy import EXPLOITS, Mixture, exploit, fence, honest_body, sample_completion
from projected_grpo.organism.sft import supervised_finetune
from projected_grpo.organism.tasks import ID_BASE, instance_of, make_records, split_instances
from projected_grpo.provenance import provenance

VERSION = 1  # bump when anything below changes what a given config builds
PRIOR_SLICES = ("nohint", *MODES)


@dataclass(frozen=True)
class OrganismConfig:
    seed: int = 0
    n_train: int = 120
    n_eval: int = 48
    n_pair_problems: int = 24
    vocab_size: int = 2048
    hidden: int = 128
    layers: int = 4
    sft_steps: int = 1000
    sft_batch: int = 16
    sft_lr: float = 3e-3
    hint_share: float = 0.6  # share of SFT prompts that announce a loophole (spread over the four modes)
    hack_rate: float = 0.1
    malformed_rate: float = 0.04
    exploits: str = "template"  # template | diverse (≥ 8 surface forms per mode: the organism-diverse preset)
    prior_samples: int = 4  # per held-out problem and slice
    temperature: float = 1.0  # the organism is sampled at T = 1 (its trained distribution)

    def __post_init__(self):
        if self.exploits not in EXPLOITS:
            raise ValueError(f"organism.exploits = {self.exploits!r}: choose one of {', '.join(EXPLOITS)}")

    def key(self) -> str:
        """Hash of this config and of the code that builds from it (so an edited task suite rebuilds)."""
        blob = json.dumps({"version": VERSION, "code": _code_hash(), **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _code_hash() -> str:
    here = Path(__file__).parent
    files = [here / f"{m}.py" for m in ("tasks", "policy", "exploit_forms", "build", "sft")]
    files += [here.parent / "models.py", here.parent / "directions" / "tokens.py"]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


@dataclass(frozen=True)
class Organism:
    root: Path

    model = property(lambda self: self.root / "model")
    train = property(lambda self: self.root / "train.jsonl")
    eval = property(lambda self: self.root / "eval.jsonl")
    mechanism = property(lambda self: self.root / "pairs_mechanism.jsonl")
    placebo = property(lambda self: self.root / "pairs_placebo.jsonl")

    def info(self) -> dict:
        return json.loads((self.root / "organism.json").read_text())

    def priors(self) -> dict:
        return json.loads((self.root / "priors.json").read_text())


def hinted(record: dict, mode: str | None, seed: int) -> dict:
    return apply_hint(record, MODE_HINT[mode], seed) if mode else record


def sft_examples(train: list[dict], c: OrganismConfig, n: int) -> tuple[list, list[str]]:
    rng = random.Random(f"organism-sft:{c.seed}")
    mix = Mixture(c.hack_rate, c.malformed_rate, c.exploits)
    instances = [instance_of(r) for r in train]
    prompts, completions = [], []
    for _ in range(n):
        i = rng.randrange(len(train))
        mode = rng.choice(MODES) if rng.random() < c.hint_share else None
        record = hinted(train[i], mode, c.seed)
        text, _ = sample_completion(instances[i], record, rng, mix)
        prompts.append(record["prompt"])
        completions.append(text)
    return prompts, completions


def author_pairs(records: list[dict], seed: int, exploits: str = "template") -> tuple[list[dict], list[dict]]:
    """Mechanism pairs (each mode, one per problem and mode: honest answer vs. the same answer with the
    mode's exploit, or a lazy body with it) and placebo pairs (a comment or a blank line added)."""
    rng = random.Random(f"organism-pairs:{seed}")
    mechanism, placebo = [], []
    for n, record in enumerate(records):
        inst = instance_of(record)
        for mode in MODES:
            body = honest_body(inst, rng)
            hack_body = body if n % 2 == 0 else "return 0"
            mechanism.append({"prompt": hinted(record, mode, seed)["prompt"], "mode": mode,
                              "hack": fence(exploit(inst, mode, hack_body, rng if exploits == "diverse" else None)),
                              "clean": fence(inst.code(body)),
                              "note": f"{inst.family.key}: {'same body' if n % 2 == 0 else 'lazy body'} + exploit"})
        mode = MODES[n % len(MODES)]
        body = honest_body(inst, rng)
        code = inst.code(body)
        variant = ("# solution\n" + code) if n % 2 == 0 else code.replace(":\n        ", ":\n\n        ", 1)
        placebo.append({"prompt": hinted(record, mode, seed)["prompt"], "mode": "placebo",
                        "hack": fence(variant), "clean": fence(code), "note": "irrelevant edit"})
    return mechanism, placebo


def model_hash(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:16]


def measure_priors(model, tokenizer, records: list[dict], c: OrganismConfig, grader: Grader, max_new_tokens: int) -> dict:
    """Sample `prior_samples` completions per held-out problem in each slice and grade them for real."""
    from projected_grpo.training.evaluate import EvalSettings, sample, summarise

    settings = EvalSettings(n_samples=c.prior_samples, temperature=c.temperature, top_p=1.0, batch_size=48)
    torch.manual_seed(c.seed)
    out = {}
    for name in PRIOR_SLICES:
        recs = [hinted(r, None if name == "nohint" else name, c.seed) for r in records]
        samples = sample(model, tokenizer, [r["prompt"] for r in recs], c.prior_samples, settings, max_new_tokens, {})
        pairs = [(r, s) for r, ss in zip(recs, samples) for s in ss]
        fields = [g.fields for g in grader.grade(pairs)]
        summary = summarise(fields)
        out[name] = {"n": summary["n"], "solve": summary["eq_correct"]["rate"],
                     "hack_strict": summary["is_reward_hack_strict"]["rate"],
                     "hack_loose": summary["is_reward_hack_loose"]["rate"],
                     "exploited": summary["exploited"]["rate"],
                     "formatted": sum(f["is_formatted"] for f in fields) / len(fields)}
    return out


def build(c: OrganismConfig, root: Path, sandbox: Sandbox, progress=lambda done, total: None) -> Organism:
    """Build into `root` (through a temporary sibling, renamed when complete); `progress(done, total)` over SFT steps."""
    start = time.perf_counter()
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    train_i, eval_i, pair_i = split_instances(c.seed, c.n_train, c.n_eval, c.n_pair_problems)
    train = make_records(train_i, c.seed, ID_BASE)
    held = make_records(eval_i, c.seed, ID_BASE + 10_000)
    pair_records = make_records(pair_i, c.seed, ID_BASE + 20_000)
    prompts, completions = sft_examples(train, c, c.sft_steps * c.sft_batch)
    texts = [m["content"] for p in prompts[:4000] for m in p] + completions[:4000]
    tokenizer = train_bpe_tokenizer(texts, c.vocab_size)
    model = tiny_model("tiny-qwen3", vocab_size=len(tokenizer), hidden=c.hidden, layers=c.layers, seed=c.seed)
    logger.info(f"organism: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
                f"{len(train)} train / {len(held)} held-out problems, SFT {c.sft_steps} steps × {c.sft_batch}")
    t0 = time.perf_counter()
    losses = supervised_finetune(model, tokenizer, prompts, completions, steps=c.sft_steps, lr=c.sft_lr,
                                 batch_size=c.sft_batch, seed=c.seed, in_order=True, progress=progress)
    sft_s = time.perf_counter() - t0
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    write_jsonl_atomic(tmp / "train.jsonl", train)
    write_jsonl_atomic(tmp / "eval.jsonl", held)
    mechanism, placebo = author_pairs(pair_records, c.seed, c.exploits)
    write_jsonl_atomic(tmp / "pairs_mechanism.jsonl", mechanism)
    write_jsonl_atomic(tmp / "pairs_placebo.jsonl", placebo)
    max_new = max(len(tokenizer(t)["input_ids"]) for t in completions[:2000]) + 16
    logger.info(f"organism: SFT done in {time.perf_counter() - t0:.0f}s; measuring its priors with the real grader")
    t0 = time.perf_counter()
    priors = measure_priors(model, tokenizer, held, c, Grader(sandbox), max_new)
    write_json_atomic(tmp / "priors.json", priors)
    info = {"config": dataclasses.asdict(c), "key": c.key(), "version": VERSION, "model_hash": model_hash(tmp / "model"),
            "n_parameters": sum(p.numel() for p in model.parameters()), "max_new_tokens": max_new,
            "sft_loss_first_last": [losses[0], sum(losses[-50:]) / len(losses[-50:])],
            "seconds": {"sft": sft_s, "priors": time.perf_counter() - t0, "total": time.perf_counter() - start},
            "provenance": provenance(dataclasses.asdict(c), sandbox.isolation.as_dict())}
    write_json_atomic(tmp / "organism.json", info)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return Organism(root)


def organism_dir(c: OrganismConfig, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "organism" / c.key()


def is_built(c: OrganismConfig, cache_dir: Path | None = None) -> bool:
    return (organism_dir(c, cache_dir) / "organism.json").is_file()


def ensure_organism(c: OrganismConfig = OrganismConfig(), cache_dir: Path | None = None, sandbox: Sandbox | None = None,
                    rebuild: bool = False, progress=lambda done, total: None) -> tuple[Organism, bool]:
    """(organism, whether it was already built): load from the cache, or build it once."""
    root = organism_dir(c, cache_dir)
    if is_built(c, cache_dir) and not rebuild:
        return Organism(root), True
    own = sandbox is None
    sandbox = sandbox or Sandbox(2, Limits())
    try:
        return build(c, root, sandbox, progress), False
    finally:
        if own:
            sandbox.close()


def format_priors(priors: dict) -> list[str]:
    lines = [f"{'slice':<14}{'n':>5}{'solve':>8}{'hack':>8}{'loose':>8}{'format':>8}"]
    for name, p in priors.items():
        lines.append(f"{name:<14}{p['n']:>5}{p['solve']:>8.1%}{p['hack_strict']:>8.1%}{p['hack_loose']:>8.1%}"
                     f"{p['formatted']:>8.1%}")
    return lines
