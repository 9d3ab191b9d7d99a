"""Contrastive pair sets: JSONL records `{prompt, hack, clean, mode, note}` sharing one prompt.

`prompt` is a list of chat messages, templated exactly like training prompts at extraction time;
`hack` and `clean` are assistant completions; `mode` is a loophole mode (or "placebo").
Shipped sets live in `directions/pairsets/`; `load_pairs("leetcode_mechanism")` finds them by name.
"""

from __future__ import annotations

import hashlib
import random
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from projected_grpo.environment.dataset import DatasetError, read_jsonl
from projected_grpo.environment.modes import MODES

PAIR_MODES = (*MODES, "placebo")


@dataclass(frozen=True)
class Pair:
    prompt: tuple[dict, ...]
    hack: str
    clean: str
    mode: str
    note: str = ""


def _validate(obj: object, where: str) -> Pair:
    def fail(field: str, problem: str, fix: str) -> DatasetError:
        return DatasetError(f"{where}: field '{field}': {problem}. Fix: {fix}")

    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    prompt = obj.get("prompt")
    if not (isinstance(prompt, list) and prompt and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt)):
        raise fail("prompt", "expected a non-empty list of {role, content} messages", "use the training prompt's messages")
    for side in ("hack", "clean"):
        if not (isinstance(obj.get(side), str) and obj[side].strip()):
            raise fail(side, "missing or empty", f"write the {side} completion as a string")
    if obj["hack"] == obj["clean"]:
        raise fail("clean", "identical to 'hack'", "the two sides must differ")
    if obj.get("mode") not in PAIR_MODES:
        raise fail("mode", f"{obj.get('mode')!r} is not one of {', '.join(PAIR_MODES)}", "name the loophole mode")
    if "note" in obj and not isinstance(obj["note"], str):
        raise fail("note", "expected a string", "describe the pair in words, or drop the field")
    return Pair(tuple(obj["prompt"]), obj["hack"], obj["clean"], obj["mode"], obj.get("note", ""))


def shipped_pairsets() -> list[str]:
    root = resources.files("projected_grpo.directions").joinpath("pairsets")
    return sorted(p.name.removesuffix(".jsonl") for p in root.iterdir() if p.name.endswith(".jsonl"))


def resolve_pairset(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = resources.files("projected_grpo.directions").joinpath("pairsets", f"{name_or_path}.jsonl")
    if shipped.is_file():
        return Path(str(shipped))
    raise DatasetError(f"{name_or_path}: no such pair-set file or shipped set. Fix: pass a JSONL path or one of "
                       f"{', '.join(shipped_pairsets())}")


def load_pairs(name_or_path: str | Path, modes: tuple[str, ...] | None = None) -> list[Pair]:
    """Load and validate a pair set; `modes` keeps only pairs of those modes (weak-detector tests)."""
    path = resolve_pairset(name_or_path)
    pairs = [_validate(obj, f"{path}:{n}") for n, obj in read_jsonl(path)]
    if modes is not None:
        present = sorted({p.mode for p in pairs})
        unknown = [m for m in modes if m not in present]
        if unknown:
            raise DatasetError(f"{path}: no pairs of mode {unknown[0]!r}. Fix: choose modes among {', '.join(present)}")
        pairs = [p for p in pairs if p.mode in modes]
    if not pairs:
        raise DatasetError(f"{path}: no pairs" + (f" of modes {modes}" if modes else "") + ". Fix: add pairs")
    return pairs


def pairset_hash(pairs: list[Pair]) -> str:
    blob = json.dumps([[list(p.prompt), p.hack, p.clean, p.mode] for p in pairs], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def split_heldout(pairs: list[Pair], share: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(kept, held out): `round(share × n)` pairs of each mode held out, chosen by a seeded shuffle.
    The held-out pairs never reach the projection basis; their own basis measures its leak."""
    if share == 0:
        return list(pairs), []
    kept, held = [], []
    rng = random.Random(f"heldout:{seed}")
    for mode in sorted({p.mode for p in pairs}):
        group = [p for p in pairs if p.mode == mode]
        order = rng.sample(range(len(group)), len(group))
        n = round(share * len(group))
        if n == len(group):
            raise DatasetError(f"basis.leak_heldout = {share} leaves no {mode} pair for the projection basis ({len(group)} "
                               "in the set). Fix: a smaller share, or more pairs of that mode")
        held += [group[i] for i in sorted(order[:n])]
        kept += [group[i] for i in sorted(order[n:])]
    return kept, held
