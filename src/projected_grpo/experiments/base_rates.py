"""Base rates of an untrained model on the real benchmark: the counterpart of the reference's base-model table.

For each model and slice (`nohint`, or one loophole mode's hint on every problem), sample n completions per
problem, grade them, and record the rates with Wilson 95% intervals: strict / loose hack, solve (ground truth
and the hardened oracle), exploited, formatted, plus the mean response length in tokens and the fraction cut
at the token cap. No adapter, no training: the model as loaded.

Resumable: each (model, slice) is written as `<out>/<model>/<slice>.jsonl` (graded samples) + `.json`
(summary and settings) once finished, and skipped when it already exists with the same settings. Slices are
sampled in the order given from one seed: an uninterrupted run reproduces its cells; a resumed one draws
other samples (from the same distribution) for the slices after the interruption.
`write_report` gathers every finished (model, slice) under `<out>` into report.md + summary.json.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from loguru import logger

from projected_grpo.atomic import write_json_atomic, write_jsonl_atomic, write_text_atomic
from projected_grpo.environment.dataset import load_records
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.modes import MODE_HINT, MODES, make_hinted
from projected_grpo.environment.sandbox import Limits, Sandbox
from projected_grpo.errors import ConfigError
from projected_grpo.experiments.markdown import markdown_table
from projected_grpo.models import default_device, load_model
from projected_grpo.provenance import provenance
from projected_grpo.training.evaluate import RATES, EvalSettings, generate_texts, summarise

SLICE_HINTS = {"nohint": "nohint", **{m: MODE_HINT[m] for m in MODES}}  # slice name → hint applied to every problem
COLUMNS = (("is_reward_hack_strict", "hack strict"), ("is_reward_hack_loose", "hack loose"),
           ("eq_correct", "solve (gt)"), ("gt_correct_hardened", "solve (hardened)"), ("exploited", "exploited"),
           ("is_formatted", "formatted"), ("truncated", "reached cap"))
KIND = "base_rates_cell"  # marks a finished cell's JSON (nothing else under --out is read as one)


@dataclass(frozen=True)
class BaseRateSettings:
    data_path: str
    n_problems: int | None = None  # the first n of the file (default: all)
    n_samples: int = 1
    max_new_tokens: int = 320
    temperature: float = 0.7
    top_p: float = 0.95
    batch_size: int = 8
    seed: int = 0
    workers: int = 2
    timeout_s: float = 3.0

    def __post_init__(self):
        if self.n_problems is not None and self.n_problems < 1:
            raise ConfigError(f"--problems {self.n_problems}: must be >= 1 (omit it for all)")
        EvalSettings(n_samples=self.n_samples, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                     top_p=self.top_p, batch_size=self.batch_size)  # the same checks as `eval`


def check_slices(slices: list[str]) -> list[str]:
    unknown = [s for s in slices if s not in SLICE_HINTS]
    if unknown or not slices:
        raise ConfigError(f"--slices {','.join(slices)}: {'unknown slice ' + repr(unknown[0]) if unknown else 'empty'}."
                          f" Fix: choose from {', '.join(SLICE_HINTS)}")
    return list(dict.fromkeys(slices))  # each slice once, in the order given


def model_dirname(model_name: str) -> str:
    """A directory name for a model name, hub id or path (`org/x` → `org_x`; never empty, `.` or `..`)."""
    return re.sub(r"[^\w.-]+", "_", model_name).strip("._") or "model"


def base_rates(model_name: str, slices: list[str], settings: BaseRateSettings, out_dir: str | Path, command: str = "",
               progress=lambda done, total: None) -> dict[str, dict]:
    """Sample and grade `model_name` on each slice; returns {slice: summary}, finished slices read back."""
    out = Path(out_dir) / model_dirname(model_name)
    records = load_records(settings.data_path)[: settings.n_problems or None]
    todo = [s for s in check_slices(slices) if not _finished(out, s, settings)]
    results = {s: json.loads((out / f"{s}.json").read_text())["summary"] for s in slices if s not in todo}
    if not todo:
        return results
    torch.manual_seed(settings.seed)
    model, tokenizer = load_model(model_name, device=default_device())
    sampling = EvalSettings(n_samples=settings.n_samples, temperature=settings.temperature, top_p=settings.top_p,
                            batch_size=settings.batch_size, seed=settings.seed)
    per_slice, total = len(records) * settings.n_samples, 2 * len(todo) * len(records) * settings.n_samples
    limits = Limits(timeout_s=settings.timeout_s, kill_after_s=settings.timeout_s + 1)
    with contextlib.closing(Sandbox(settings.workers, limits)) as sandbox:
        grader = Grader(sandbox, memo_size=4096)
        for i, name in enumerate(todo):
            logger.info(f"{model_name} / {name}: sampling {per_slice} responses")
            flat = [r for r in make_hinted(records, SLICE_HINTS[name], settings.seed) for _ in range(settings.n_samples)]
            texts, lengths = generate_texts(model, tokenizer, [r["prompt"] for r in flat], sampling,
                                            settings.max_new_tokens, {}, lambda n: progress(2 * i * per_slice + n, total))
            pairs = list(zip(flat, texts))
            grades = grader.grade(pairs, progress=lambda n, _: progress((2 * i + 1) * per_slice + n, total))
            rows = [{"id": r["id"], "slice": name, "response": s, "tokens": n, "truncated": n >= settings.max_new_tokens,
                     **g.fields} for (r, s), g, n in zip(pairs, grades, lengths)]
            summary = summarise(rows, (*RATES, "is_formatted", "truncated"))
            summary["mean_tokens"] = sum(lengths) / len(lengths)
            write_jsonl_atomic(out / f"{name}.jsonl", rows)
            write_json_atomic(out / f"{name}.json", {
                "kind": KIND, "model": model_name, "slice": name, "hint": SLICE_HINTS[name], "settings": asdict(settings),
                "command": command, "summary": summary, "provenance": provenance({}, sandbox.isolation.as_dict())})
            results[name] = summary
            logger.info(f"{model_name} / {name}: hack strict {summary['is_reward_hack_strict']['rate']:.3f}, "
                       f"solve {summary['eq_correct']['rate']:.3f}, formatted {summary['is_formatted']['rate']:.3f}")
    return results


def _finished(out: Path, name: str, settings: BaseRateSettings) -> bool:
    path = out / f"{name}.json"
    return path.is_file() and json.loads(path.read_text())["settings"] == asdict(settings)


def write_report(out_dir: str | Path) -> Path:
    """report.md + summary.json over every finished (model, slice) under out_dir."""
    out_dir = Path(out_dir)
    cells = [c for p in sorted(out_dir.glob("*/*.json")) if p.stem in SLICE_HINTS
             for c in [json.loads(p.read_text())] if c.get("kind") == KIND]
    if not cells:
        raise ConfigError(f"{out_dir}: no finished (model, slice) results to report")
    order = list(SLICE_HINTS)
    cells.sort(key=lambda c: (c["model"], order.index(c["slice"])))
    fmt = lambda r: f"{100 * r['rate']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"  # noqa: E731
    # settings shared by every cell go in the header; any that differ get a column (never silently mixed)
    shared = {k: v for k, v in cells[0]["settings"].items() if all(c["settings"][k] == v for c in cells)}
    differ = [k for k in cells[0]["settings"] if k not in shared and k != "n_problems"]  # n is its own column
    rows = [[c["model"], c["slice"], str(c["summary"]["n"]), *(str(c["settings"][k]) for k in differ),
             *(fmt(c["summary"][k]) for k, _ in COLUMNS), f"{c['summary']['mean_tokens']:.0f}"] for c in cells]
    header = ", ".join(f"{k} = {v}" for k, v in shared.items() if k not in ("data_path", "n_problems"))
    text = "\n".join([
        "# Base rates of real models on the reference benchmark", "",
        f"Untrained models on {Path(cells[0]['settings']['data_path']).name} (the first n problems), each response "
        f"graded by the project's grader; {header}. Rates in % with Wilson 95% intervals over responses; "
        "`reached cap`: the response used all max_new_tokens; `mean tokens` counts the end-of-sequence token. "
        "`nohint`: no loophole announced; a mode name: that mode's hint on every problem (run_tests = the "
        "reference's `simple_overwrite_tests`).", "",
        markdown_table(["model", "slice", "n", *differ, *(h for _, h in COLUMNS), "mean tokens"], rows), "",
        "Produced by `projected-grpo base-rates` (the command per model is in summary.json).", ""])
    write_text_atomic(out_dir / "report.md", text)
    write_json_atomic(out_dir / "summary.json", {"models": sorted({c["model"] for c in cells}), "cells": [
        {k: c[k] for k in ("model", "slice", "hint", "command", "settings", "summary")} for c in cells]})
    return out_dir / "report.md"
