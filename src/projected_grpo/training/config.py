"""One typed run configuration: TOML/YAML file + presets + `key.sub=value` overrides, validated
before any work starts (one clear error naming the file, field and fix)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import tomllib
import yaml

from projected_grpo.environment.dataset import DatasetError
from projected_grpo.environment.hints import HINTS, NO_HINT
from projected_grpo.environment.modes import GT_ONLY, MODES
from projected_grpo.errors import ConfigError, read_user_text  # noqa: F401  (ConfigError re-exported)
from projected_grpo.interventions.concept import load_sentence_pairs
from projected_grpo.interventions.inoculation import PROMPTS
from projected_grpo.interventions.setup import InterventionConfig
from projected_grpo.training.arms import ARMS
from projected_grpo.training.presets import AUTHORED, PRESET_NEEDS, PRESETS
from projected_grpo.training.sections import RENAMED, AdapterSection, BasisConfig, ProjectionSection

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "gspo")


@dataclass
class ModelConfig:
    source: str = "tiny-qwen3"  # tiny-qwen3 | tiny-llama | smollm2-135m | qwen2.5-coder-0.5b (fetched) | local dir | .gguf file | hub id
    dtype: str = "float32"
    chat_template_kwargs: dict = field(default_factory=dict)  # e.g. {enable_thinking = false} for Qwen3


@dataclass
class DataConfig:
    path: str | None = None  # no-hint records JSONL, or "authored" (default: the reference test set)
    eval_path: str | None = None  # held-out records (default: the problems of `path` not trained on)
    hint: str = "simple_overwrite_tests"
    modes: list | None = None  # several loophole modes, one per problem (overrides hint)
    n_problems: int | None = None
    seed: int = 0
    mix: float = 0.0  # teacher-pool mixing ratio (reference speed-up; a confound)
    teacher_pool: str | None = None


@dataclass
class GRPOSection:
    loss_type: str = "dr_grpo"
    beta: float = 0.0
    learning_rate: float = 7e-5
    lr_scheduler: str = "cosine"
    warmup_steps: int = 10
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    num_generations: int = 16
    prompts_per_step: int = 16
    micro_batch: int | None = None  # completions per forward/backward (default: all at once)
    max_prompt_length: int = 1536
    max_completion_length: int = 1536
    temperature: float = 0.7
    top_p: float = 0.95
    scale_rewards: str = "none"  # "group" for standard GRPO, "none" for Dr. GRPO
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    vllm_mode: str = "colocate"


@dataclass
class GraderSection:
    workers: int = 2
    timeout: float = 3.0
    allow_unisolated: bool = False


@dataclass
class TrainConfig:
    arm: str = "vanilla"
    steps: int = 200
    seed: int = 41
    output_dir: str = "runs/train"
    save_every: int = 50
    log_completion_every: int = 10
    tensorboard: bool = False
    organism: dict = field(default_factory=dict)  # OrganismConfig fields, for model.source = "organism"
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterSection = field(default_factory=AdapterSection)
    basis: BasisConfig = field(default_factory=BasisConfig)
    projection: ProjectionSection = field(default_factory=ProjectionSection)
    data: DataConfig = field(default_factory=DataConfig)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    grader: GraderSection = field(default_factory=GraderSection)
    intervention: InterventionConfig = field(default_factory=InterventionConfig)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check (and gently convert int → float, list → tuple) a value against a field's type hint."""
    origin, args = get_origin(hint), get_args(hint)
    if value is None and (hint is type(None) or type(None) in args):
        return None
    candidates = [a for a in args if a is not type(None)] if args and origin not in (list, dict, tuple) else [hint]
    for t in candidates:
        base = get_origin(t) or t
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is bool and isinstance(value, bool):
            return value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, list, dict) and isinstance(value, base):
            return value
        if base is tuple and isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
            return tuple(value)  # adapter.targets: TOML has no tuples
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', str(hint))}, got {value!r}")


def _section_fields(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _merge(tree: dict, cls: type, data: dict, where: str, path: str = "") -> None:
    """Check one source's table (a preset, a file, an override) against `cls` and merge it into `tree`, the
    config so far as nested dicts. Sections are built once every source is in: a frozen library config checks
    itself on construction, and a source may set a field that only a later one completes."""
    known = _section_fields(cls)
    for key, value in data.items():
        hint, name = known.get(key), f"{path}{key}"
        is_section = hint is not None and dataclasses.is_dataclass(hint)
        if name in RENAMED and (hint is None or is_section and not isinstance(value, dict)):
            new_path, _, new_key = RENAMED[name].rpartition(".")
            raise ConfigError(f"{where}: {name} moved to [{new_path}] {new_key}. Fix: write it there")
        if hint is None:
            raise ConfigError(f"{where}: unknown field '{key}'. Fix: use one of {', '.join(sorted(known))}")
        if is_section:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: field '{key}' is a section; give it a table of fields")
            _merge(tree[key], hint, value, f"{where} [{key}]", f"{name}.")
        else:
            tree[key] = _coerce(value, hint, f"{where}: field '{key}'")


def _build(cls: type, tree: dict, where: str) -> Any:
    kwargs = {key: _build(hint, tree[key], f"{where} [{key}]") if dataclasses.is_dataclass(hint) else tree[key]
              for key, hint in _section_fields(cls).items()}
    try:
        return cls(**kwargs)
    except ValueError as e:  # a library config's own check (AdapterConfig, ExtractionConfig, ProjectionConfig)
        raise ConfigError(f"{where}: {e}") from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. grpo.learning_rate=1e-4")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string
    return key.strip().split("."), value


def _merge_table(tree: dict, data: dict, where: str) -> str | None:
    """Merge a config table (a file's, or an experiment's [train]); its `preset` applies first and is returned."""
    data = dict(data)
    name = data.pop("preset", None)
    if name is not None:
        if name not in PRESETS:
            raise ConfigError(f"{where}: field 'preset': {name!r} is not one of {', '.join(PRESETS)}")
        _merge(tree, TrainConfig, PRESETS[name], f"preset {name}")
    _merge(tree, TrainConfig, data, where)
    return name


def load_config(path: str | Path | None = None, preset: str | None = None, overrides: list[str] = (),
                table: dict | None = None, where: str | None = None) -> TrainConfig:
    """Defaults ← preset ← file (or `table`, named `where` in errors) ← overrides; then validate.
    Nothing runs before this returns."""
    tree = dataclasses.asdict(TrainConfig())
    presets = [preset] if preset is not None else []
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"preset {preset!r}: choose one of {', '.join(PRESETS)}")
        _merge(tree, TrainConfig, PRESETS[preset], f"preset {preset}")
    if path is not None:
        path = Path(path)
        text = read_user_text(path, "config file")
        try:
            table = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot parse ({e})") from None
        where = str(path)
    if table:
        presets.append(_merge_table(tree, table, where))
    for text in overrides:
        keys, value = _parse_override(text)
        nested: dict = {}
        cursor = nested
        for k in keys[:-1]:
            cursor = cursor.setdefault(k, {})
        cursor[keys[-1]] = value
        _merge(tree, TrainConfig, nested, f"override {text!r}")
    where = where or (f"preset {preset}" if preset else "defaults")
    config = _build(TrainConfig, tree, where)
    for name in filter(None, presets):
        if name in PRESET_NEEDS:
            key, problem, fix = PRESET_NEEDS[name]
            section, attr = key.split(".")
            if getattr(getattr(config, section), attr) is None:
                raise ConfigError(f"{where}: field '{key}' (preset {name}): {problem}. Fix: {fix}")
    validate(config, where)
    return config


def renamed(table: dict) -> dict:
    """A config table written before its fields moved (RENAMED), under the new names: what a run's config.json
    or an experiment's record from then reads back as."""
    table = copy.deepcopy(table)
    basis = table.get("basis", {})
    if "heldout" in basis and "seed" in basis:  # beside the old basis.heldout, basis.seed chose the held-out split
        basis["leak_heldout_seed"] = basis.pop("seed")
    for old, new in RENAMED.items():
        *head, key = old.split(".")
        section = functools.reduce(lambda t, k: t.get(k, {}), head, table)
        if key in section and not isinstance(section[key], dict):
            value = section.pop(key)
            *head, key = new.split(".")
            functools.reduce(lambda t, k: t.setdefault(k, {}), head, table)[key] = value
    return table


def saved_config(saved: dict, where: str) -> TrainConfig:
    """A run's config.json as a TrainConfig (old names read back as the new). Not validated: it was when the
    run started."""
    tree = dataclasses.asdict(TrainConfig())
    _merge(tree, TrainConfig, renamed(saved), where)
    return _build(TrainConfig, tree, where)


def validate(c: TrainConfig, where: str) -> None:
    def bad(field_: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{where}: field '{field_}': {problem}. Fix: {fix}")

    if c.arm not in ARMS:
        raise bad("arm", f"{c.arm!r} is not an arm", f"use one of {', '.join(ARMS)}")
    # the arm is what reports classify a run by (method / control / ...): what it decides is not overridable
    for name, value in (("basis.control", c.basis.control), ("projection.mode", c.projection.mode)):
        if value is not None:
            raise bad(name, f"{value!r}: set by the arm", "choose the arm that does it (e.g. arm = \"random\" for a "
                      "random-basis control, arm = \"route\"), or a [variants] column of that arm in an experiment")
    i, arm = c.intervention, ARMS.get(c.arm)
    projection = c.projection.resolve(arm, c.basis.space)
    if not 0.0 <= i.monitor.accuracy <= 1.0:
        raise bad("intervention.monitor.accuracy", f"{i.monitor.accuracy}", "a probability in [0, 1]")
    if arm.monitor == "probe" and not i.probe.path:
        raise bad("intervention.probe.path", "missing for a probe arm",
                  "train one with `projected-grpo probe train RUN_DIR`, or in an experiment write \"vanilla\"")
    if arm.monitor == "judge" and not i.judge.model:
        raise bad("intervention.judge.model", "missing for a judge arm", "name the model the server serves")
    if i.inoculation.prompt not in PROMPTS:
        raise bad("intervention.inoculation.prompt", f"{i.inoculation.prompt!r}", f"one of {', '.join(PROMPTS)}")
    a = i.advantage
    if a.form not in ("multiplicative", "additive"):
        raise bad("intervention.advantage.form", f"{a.form!r}", "multiplicative or additive")
    if a.direction not in ("shortcut", "pairs"):
        raise bad("intervention.advantage.direction", f"{a.direction!r}",
                  "shortcut (Wu & Tang's) or pairs (the run's pair set)")
    if not (len(a.band) == 2 and all(isinstance(x, (int, float)) for x in a.band) and 0 < a.band[0] <= a.band[1] <= 1):
        raise bad("intervention.advantage.band", f"{a.band}", "two depths 0 < lo <= hi <= 1, e.g. [0.6, 0.75]")
    if arm.intervention == "advantage_mod" and a.direction == "shortcut":
        try:
            load_sentence_pairs(a.shortcut_pairs)
        except DatasetError as e:
            raise bad("intervention.advantage.shortcut_pairs", str(e),
                      'use "shortcut" (shipped) or a JSONL of {shortcut, honest}')
    if arm.intervention and c.data.mix > 0:
        raise bad("data.mix", f"{c.data.mix} with the {c.arm} arm", "use mix = 0 with the published interventions")
    if c.steps < 1:
        raise bad("steps", f"{c.steps}", "at least 1")
    if c.basis.space not in ("gradient", "activation"):
        raise bad("basis.space", f"{c.basis.space!r}", "gradient or activation")
    if c.adapter.kind == "peft_lora" and c.basis.space != "activation":
        raise bad("basis.space", f"{c.basis.space!r} with adapter.kind = \"peft_lora\"",
                  "set basis.space = \"activation\": plain LoRA is bilinear, so a gradient-space basis drifts (method §1.3)")
    if c.adapter.kind == "peft_lora" and c.projection.space != "update":
        raise bad("projection.space", f"{c.projection.space!r} with adapter.kind = \"peft_lora\"",
                  "use update: projecting a LoRA factor's gradient before AdamW leaks, since Adam's per-coordinate "
                  "scaling rotates it back onto û")
    if c.adapter.kind == "peft_lora" and (projection.mode in ("route", "keep") or arm.intervention == "tdga"):
        raise bad("adapter.kind", f"peft_lora with the {c.arm} arm",
                  "use adapter.kind = \"svd\" or \"fixed_a_lora\": this arm needs an adapter linear in its parameters")
    if not 1 <= c.basis.k_use <= c.basis.k:
        raise bad("basis.k_use", f"{c.basis.k_use} with k={c.basis.k}", "1 <= k_use <= k")
    if not 0.0 <= c.basis.leak_heldout < 1.0:
        raise bad("basis.leak_heldout", f"{c.basis.leak_heldout}",
                  "a share of the pairs in [0, 1), e.g. 0.25 (0: no held-out leak)")
    if c.basis.space == "activation" and c.projection.gate not in (None, "two_sided"):
        raise bad("projection.gate", f"{c.projection.gate!r} with basis.space = \"activation\"",
                  "use two_sided (or leave it unset): activation-space rows carry no hack-ward sign in parameter "
                  "space, so the whole component is removed (method §2.2)")
    for key in ("refresh_every", "track_every"):
        every = getattr(c.projection, key)
        if every is not None and every < 0:
            raise bad(f"projection.{key}", f"{every}", "0 (never) or a positive number of steps")
        if every and c.basis.space != "gradient":
            raise bad(f"projection.{key}", f"{every} with basis.space = {c.basis.space!r}", "re-extraction is gradient-space only")
    if c.data.modes is not None:
        unknown = [m for m in c.data.modes if m not in MODES]
        if unknown or not c.data.modes:
            raise bad("data.modes", f"{c.data.modes}", f"a non-empty list of {', '.join(MODES)}")
    elif c.data.hint not in (*HINTS, NO_HINT, GT_ONLY):
        raise bad("data.hint", f"{c.data.hint!r}", f"one of {', '.join((*HINTS, NO_HINT, GT_ONLY))}")
    if not 0.0 <= c.data.mix < 1.0:
        raise bad("data.mix", f"{c.data.mix}", "a ratio in [0, 1)")
    if c.data.mix > 0 and not (c.data.teacher_pool and Path(c.data.teacher_pool).is_file()):
        raise bad("data.teacher_pool", f"{c.data.teacher_pool!r} is not a file while mix > 0",
                  "give a JSONL of graded completions (projected-grpo grade output)")
    if c.data.path not in (None, AUTHORED) and not Path(c.data.path).is_file():
        raise bad("data.path", f"{c.data.path}: no such file", "give a JSONL of no-hint records")
    g = c.grpo
    if g.loss_type not in LOSS_TYPES:
        raise bad("grpo.loss_type", f"{g.loss_type!r}", f"one of {', '.join(LOSS_TYPES)}")
    if g.num_generations < 2:
        raise bad("grpo.num_generations", f"{g.num_generations}", "at least 2 (GRPO compares within a group)")
    total = g.num_generations * g.prompts_per_step
    if g.micro_batch is not None and (g.micro_batch < 1 or total % g.micro_batch):
        raise bad("grpo.micro_batch", f"{g.micro_batch} does not divide {total} completions per step",
                  "a divisor of num_generations × prompts_per_step")
    if g.scale_rewards not in ("group", "batch", "none"):
        raise bad("grpo.scale_rewards", f"{g.scale_rewards!r}", "group, batch or none")
    if not 0 < g.top_p <= 1 or g.temperature <= 0:
        raise bad("grpo.temperature/top_p", f"T={g.temperature}, top_p={g.top_p}", "T > 0 and 0 < top_p <= 1")
    if c.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise bad("tensorboard", "true, but the tensorboard package is not installed",
                      "pip install tensorboard, or set tensorboard = false (metrics.jsonl/csv are always written)")
    if c.organism:  # its fields are checked where the organism is resolved (organism/resolve.py)
        if c.model.source != "organism":
            raise bad("organism", f"set while model.source = {c.model.source!r}", 'set model.source = "organism"')
    if c.model.dtype not in ("float32", "bfloat16", "float16"):
        raise bad("model.dtype", f"{c.model.dtype!r}", "float32, bfloat16 or float16")
