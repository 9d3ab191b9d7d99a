"""`projected-grpo experiment CONFIG`: an arm × seed matrix of training runs, each evaluated on held-out
problems, resumable, then the report (report.py).

An experiment file (TOML/YAML) holds the matrix and a `[train]` table that is an ordinary run config
(it may name a `preset`):

    name = "demo"
    arms = ["vanilla", "erase", "random", "rl_baseline"]
    seeds = [41, 42]
    last_k = 5                      # training-curve window of the headline table
    [train]
    preset = "organism"
    steps = 30
    [eval]
    n_samples = 4

Cell `<arm>-s<seed>` lives in `<output>/cells/`; it is done when its evaluation summary exists. A
killed matrix re-run with the same command skips done cells, resumes a cell from its last checkpoint,
and restarts a cell that had not reached one.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import queue
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
import yaml
from loguru import logger
from tqdm.auto import tqdm
from transformers import TrainerCallback

from projected_grpo.atomic import write_json_atomic
from projected_grpo.errors import ConfigError, read_user_text
from projected_grpo.provenance import provenance
from projected_grpo.training.arms import ARMS
from projected_grpo.training.config import TrainConfig, load_config, renamed
from projected_grpo.training.evaluate import EvalSettings, eval_summary
from projected_grpo.training.resume import last_complete_checkpoint

EVAL_FIELDS = {f.name for f in dataclasses.fields(EvalSettings)} - {"checkpoint"}


@dataclass
class Experiment:
    name: str
    arms: list[str]
    seeds: list[int]
    train: dict  # a run config as a table (preset + fields)
    eval: dict = field(default_factory=dict)
    last_k: int = 5
    eval_checkpoints: list[int] = field(default_factory=list)  # also evaluate checkpoint-N (intermediate, held-out)
    variants: dict = field(default_factory=dict)  # name → {arm = ..., <train sections>}: an arm with its own settings
    hypothesis: str = ""  # what we expect and why (printed above the results)
    resolve: str = ""  # the measured outcome that would confirm or refute it
    source: str = ""

    def cell_config(self, name: str, seed: int, cell_dir: Path) -> TrainConfig:
        """The run config of one cell; a variant is its arm with its own sections merged over [train]."""
        table, where, arm = self.train, f"{self.source} [train]", name
        if name in self.variants:
            sections = dict(self.variants[name])
            arm = sections.pop("arm")
            table, where = _merged(self.train, sections), f"{self.source} [train] + [variants.{name}]"
        overrides = [f'arm="{arm}"', f"seed={seed}", f'output_dir="{cell_dir}"']
        return load_config(overrides=overrides, table=table, where=where)

    def eval_settings(self, config: TrainConfig) -> EvalSettings:
        settings = {"temperature": config.grpo.temperature, "top_p": config.grpo.top_p, **self.eval}
        if "slices" in settings:
            settings["slices"] = tuple(settings["slices"])
        return EvalSettings(**settings)


def _merged(base: dict, over: dict) -> dict:
    """`over` merged into a copy of `base`, tables recursively."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file: every cell's config is checked before anything runs."""
    path = Path(path)
    text = read_user_text(path, "experiment file")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot parse ({e})") from None
    known = {f.name for f in dataclasses.fields(Experiment)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown field '{unknown[0]}'. Fix: use one of {', '.join(sorted(known))}")
    for key in ("name", "arms", "seeds", "train"):
        if key not in data:
            raise ConfigError(f"{path}: field '{key}': missing. Fix: see `projected-grpo experiment --help`")
    variants = data.get("variants", {})
    for name, v in variants.items():
        if name in ARMS or not isinstance(v, dict) or v.get("arm") not in ARMS:
            raise ConfigError(f"{path}: [variants.{name}]: needs arm = one of {', '.join(ARMS)}, and a name that is "
                              "not an arm's. Fix: e.g. [variants.erase_k1] arm = \"erase\", basis = {{ k_use = 1 }}")
    bad_arms = [a for a in data["arms"] if a not in ARMS and a not in variants]
    if bad_arms:
        raise ConfigError(f"{path}: field 'arms': {bad_arms[0]!r} is neither an arm nor a [variants] name. "
                          f"Fix: use some of {', '.join(ARMS)}, or define [variants.{bad_arms[0]}]")
    if not data["seeds"] or not all(isinstance(s, int) for s in data["seeds"]):
        raise ConfigError(f"{path}: field 'seeds': expected a non-empty list of integers, e.g. [41, 42, 43]")
    bad_eval = sorted(set(data.get("eval", {})) - EVAL_FIELDS)
    if bad_eval:
        raise ConfigError(f"{path}: [eval] unknown field '{bad_eval[0]}'. Fix: use one of {', '.join(sorted(EVAL_FIELDS))}")
    exp = Experiment(**data, source=str(path))
    for arm in exp.arms:
        config = exp.cell_config(arm, exp.seeds[0], Path("cell"))  # fail here, not after the first cells ran
        bad = [c for c in exp.eval_checkpoints if not (isinstance(c, int) and 0 < c < config.steps and c % config.save_every == 0)]
        if bad:  # per column: a variant may set its own steps / save_every
            raise ConfigError(f"{path}: field 'eval_checkpoints': {bad[0]!r} is not a saved checkpoint of {arm}. Fix: "
                              f"steps below {config.steps} that are multiples of save_every = {config.save_every}")
    return exp


class _StepReport(TrainerCallback):
    """Reports (cell, optimizer step reached) after each step of the cell being trained."""

    def __init__(self, report: Callable[[str, int], None], cell: str):
        self.report, self.cell = report, cell

    def on_step_end(self, args, state, control, **kwargs):
        self.report(self.cell, state.global_step)


def cell_name(arm: str, seed: int) -> str:
    return f"{arm}-s{seed}"


def cell_done(cell_dir: Path, checkpoints: list[int] = ()) -> bool:
    return all(eval_summary(cell_dir, c).is_file() for c in (None, *checkpoints))


def vanilla_probe(out_dir: Path, seed: int) -> Path:
    """The probe of a probe arm: trained on the same-seed vanilla cell's labelled rollouts (once)."""
    from projected_grpo.experiments.probes import probe_from_run

    source = out_dir / "cells" / cell_name("vanilla", seed)
    path = out_dir / "probes" / f"probe-s{seed}.safetensors"
    if not cell_done(source):
        raise ConfigError(f"probe arm with intervention.probe.path = \"vanilla\": {source} is not finished. "
                          "Fix: include the vanilla arm in the experiment")
    if not path.is_file() and not (source / "rollouts.jsonl").is_file():
        raise ConfigError(f"{source}: no rollouts.jsonl to train the probe arms' probe on (an exported cell keeps "
                          "none). Fix: copy probes/ from the original run, or re-run the vanilla cell")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = probe_from_run(source, seed=seed)
        probe.save(path)
        write_json_atomic(path.with_suffix(".json"), {"layer": probe.layer, "kind": probe.kind,
                                                      "threshold": probe.threshold, **probe.metrics})
    return path


def recorded(experiment: dict) -> dict:
    """A saved experiment record with its run-config tables under today's field names (training.config.RENAMED),
    so an experiment started before a field moved continues once its file is updated."""
    out = experiment | {"train": renamed(experiment["train"])}
    if "variants" in experiment:
        out["variants"] = {name: renamed(table) for name, table in experiment["variants"].items()}
    return out


def run_cell(exp: Experiment, arm: str, seed: int, out_dir: Path, report: Callable[[str, int], None]) -> dict:
    """Train (or resume) and evaluate one cell; `report(cell, step)` as it goes. Returns its timings."""
    from projected_grpo.organism.resolve import resolve_organism
    from projected_grpo.training.evaluate import evaluate
    from projected_grpo.training.run import train

    name = cell_name(arm, seed)
    cell_dir = out_dir / "cells" / name
    config = exp.cell_config(arm, seed, cell_dir)
    start = time.perf_counter()
    if learns_probe_from_vanilla(config):
        config.intervention.probe.path = str(vanilla_probe(out_dir, seed))  # other arms ignore the probe
    if not (cell_dir / "adapter.safetensors").is_file():
        checkpoint = last_complete_checkpoint(cell_dir) if cell_dir.is_dir() else None  # not a half-saved one
        if checkpoint is None:
            shutil.rmtree(cell_dir, ignore_errors=True)
        else:
            report(name, int(Path(checkpoint).name.split("-")[-1]))
        train(resolve_organism(config), resume=checkpoint is not None,
              callbacks=(_StepReport(report, name),), progress_bar=False)
    report(name, config.steps)
    trained = time.perf_counter() - start
    settings = exp.eval_settings(config)
    for checkpoint in (None, *exp.eval_checkpoints):
        if not eval_summary(cell_dir, checkpoint).is_file():
            evaluate(cell_dir, dataclasses.replace(settings, checkpoint=checkpoint))
    return {"train_s": trained, "eval_s": time.perf_counter() - start - trained}


def run_experiment(exp: Experiment, out_dir: str | Path, workers: int = 1) -> Path:
    """Run every unfinished cell — `workers` at a time, each in its own process with an equal share of the
    cores (a thread count is part of what fixes a run's floating-point results: see the cells' provenance) —
    then write the report."""
    from projected_grpo.experiments.report import write_report
    from projected_grpo.organism.resolve import resolve_organism
    from projected_grpo.training.resume import config_diff

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": exp.name, "arms": exp.arms, "seeds": exp.seeds, "train": exp.train, "eval": exp.eval,
              "last_k": exp.last_k} | ({"eval_checkpoints": exp.eval_checkpoints} if exp.eval_checkpoints else {}) \
        | ({"variants": exp.variants} if exp.variants else {})
    saved = out_dir / "experiment.json"
    if saved.is_file() and (before := recorded(json.loads(saved.read_text())["experiment"])) != record:
        diff = config_diff(before, record)
        raise ConfigError(f"{out_dir}: holds an experiment with a different configuration ({'; '.join(diff)}). "
                          "Fix: choose another output directory, or restore the original config")
    if not saved.is_file():
        write_json_atomic(saved, {"experiment": record, "hypothesis": exp.hypothesis, "resolve": exp.resolve,
                                  "source": exp.source, "provenance": provenance(record)})
    arms = sorted(exp.arms, key=lambda a: a != "vanilla")  # vanilla first: probe arms learn from its rollouts
    cells = [(arm, seed) for seed in exp.seeds for arm in arms]
    first = exp.cell_config(cells[0][0], cells[0][1], out_dir / "cells" / "x")
    resolve_organism(first)  # build the organism once, before the progress bar
    todo = [(a, s) for a, s in cells if not cell_done(out_dir / "cells" / cell_name(a, s), exp.eval_checkpoints)]
    configs = {cell: exp.cell_config(*cell, out_dir / "cells" / cell_name(*cell)) for cell in todo}
    steps = {cell_name(*cell): c.steps for cell, c in configs.items()}  # a variant may set its own
    each = f"{first.steps} steps each" if set(steps.values()) <= {first.steps} else f"{min(steps.values())}–{max(steps.values())} steps"
    logger.info(f"{exp.name}: {len(cells)} cells ({len(cells) - len(todo)} done), {each} → {out_dir}")
    timings_path = out_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    with tqdm(total=sum(steps.values()), desc=exp.name, unit="step", dynamic_ncols=True) as bar:
        reached: dict[str, int] = {}

        def advance(cell: str, step: int) -> None:
            bar.update(step - reached.get(cell, 0))
            reached[cell] = step
            bar.set_postfix_str(f"{cell} step {step}/{steps[cell]}" + (" (eval)" if step == steps[cell] else ""))

        def finished(cell: str, timing: dict) -> None:
            timings[cell] = timing
            write_json_atomic(timings_path, timings)
            tqdm.write(f"  {cell}: trained {timing['train_s']:.0f}s, evaluated {timing['eval_s']:.0f}s")

        if workers == 1:
            for arm, seed in todo:
                finished(cell_name(arm, seed), run_cell(exp, arm, seed, out_dir, advance))
        elif todo:
            run_parallel(exp, configs, out_dir, workers, advance, finished)
    return write_report(out_dir)


class CellFailed(RuntimeError):
    """A cell of a parallel matrix raised (a bug's traceback is printed above the error) or its process died."""


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the parent dies (SIGKILL, OOM), so no orphan trains on into a cell that
    a re-run would train again beside it."""
    import ctypes
    import signal

    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if multiprocessing.parent_process() is not None and not multiprocessing.parent_process().is_alive():
            os._exit(1)


def _worker(index: int, inbox, reports, threads: int) -> None:
    """A spawned process that trains the cells it is sent, one after another: `threads` torch threads, a quiet
    console (a cell's lines go to its train.log); reports (worker, cell, step) while training, then
    (worker, cell, timings) or (worker, cell, (error, traceback))."""
    import signal
    import traceback

    import torch

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    torch.set_num_threads(threads)
    logger.remove()
    for exp, arm, seed, out_dir in iter(inbox.get, None):
        name = cell_name(arm, seed)
        try:
            timings = run_cell(exp, arm, seed, out_dir, lambda cell, step: reports.put((index, cell, step)))
        except ConfigError as e:  # the user's to fix: the message says how
            reports.put((index, name, (str(e), "")))
        except Exception as e:  # a bug: the parent prints the traceback and stops the matrix
            reports.put((index, name, (f"{type(e).__name__}: {e} (traceback above)", traceback.format_exc())))
        else:
            reports.put((index, name, timings))


def learns_probe_from_vanilla(config: TrainConfig) -> bool:
    return ARMS[config.arm].monitor == "probe" and config.intervention.probe.path == "vanilla"


def probe_waits(configs: dict[tuple[str, int], TrainConfig]) -> dict[tuple[str, int], str]:
    """The cells that learn their probe from their seed's vanilla cell, and that cell's name."""
    return {cell: cell_name("vanilla", cell[1]) for cell, c in configs.items() if learns_probe_from_vanilla(c)}


def run_parallel(exp: Experiment, configs: dict[tuple[str, int], TrainConfig], out_dir: Path, workers: int,
                 advance: Callable[[str, int], None], finished: Callable[[str, dict], None]) -> None:
    """The cells of `configs` (each cell's config) over `workers` processes (each imports torch once and trains cell after cell). A probe arm's
    cell waits for its seed's vanilla cell, and its probe is trained here, once, before the cell is sent. What
    several cells share is made here first (organisms); a failed cell, a worker that dies, or Ctrl-C stops them
    all; re-running the command resumes the matrix."""
    from projected_grpo.organism.resolve import resolve_organism

    todo = list(configs)
    for config in configs.values():  # each organism a cell needs, built once (two workers would build it in one place)
        resolve_organism(config)
    threads = max(1, len(os.sched_getaffinity(0)) // workers)  # by the count asked for: a cell's numbers depend on it
    workers = min(workers, len(todo))
    ctx = multiprocessing.get_context("spawn")  # not fork: torch's thread pools do not survive a fork
    reports, inboxes = ctx.Queue(), [ctx.Queue() for _ in range(workers)]
    procs = [ctx.Process(target=_worker, args=(i, inboxes[i], reports, threads)) for i in range(workers)]
    waits = probe_waits(configs)
    pending, busy, left = list(todo), {}, {cell_name(*c) for c in todo}  # busy: worker → its cell
    try:
        for proc in procs:
            proc.start()
        while left:
            idle = [i for i in range(workers) if i not in busy]
            for i, cell in zip(idle, [c for c in pending if waits.get(c) not in left]):
                pending.remove(cell)
                if cell in waits:
                    vanilla_probe(out_dir, cell[1])
                busy[i] = cell_name(*cell)
                inboxes[i].put((exp, *cell, out_dir))
            try:
                i, name, what = reports.get(timeout=1.0)
            except queue.Empty:
                i, name, what = None, None, None
            if isinstance(what, int):
                advance(name, what)
            elif isinstance(what, tuple):
                if what[1]:
                    tqdm.write(what[1], file=sys.stderr)
                raise CellFailed(f"cell {name} failed: {what[0]}. Re-running the command resumes the matrix")
            elif what is not None:
                del busy[i]
                left.discard(name)
                finished(name, what)
            dead = [busy[i] for i, proc in enumerate(procs) if i in busy and not proc.is_alive()]
            if dead:
                raise CellFailed(f"cell {dead[0]} failed: its process died (out of memory?). Re-running the command "
                                 "resumes the matrix")
    finally:
        started = [proc for proc in procs if proc.pid is not None]
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.join()
