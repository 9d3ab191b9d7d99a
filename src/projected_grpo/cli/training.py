"""Training commands: train, eval, fast-dev-run."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from projected_grpo.cli.common import app, console, fail, fail_unloadable, progress_bar, show_table
from projected_grpo.training.presets import PRESETS


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Argument(help="TOML or YAML run config (may name a `preset`).")] = None,
    preset: Annotated[Optional[str], typer.Option(help=f"{' | '.join(PRESETS)} (applied before the file; organism: "
                                                       "the CPU model organism, built on first use).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override, e.g. --set arm=erase --set grpo.beta=0.001.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in output_dir from its last checkpoint.")] = False,
) -> None:
    """GRPO with projection on TRL: one arm, one seed.

    Writes into output_dir: config.json, provenance.json, basis.safetensors, metrics.jsonl / metrics.csv (one row
    per step), rollouts.jsonl (every rollout with its labels), completions.jsonl (one sampled rollout every
    log_completion_every steps), checkpoint-N/ (every save_every steps) and adapter.safetensors (when finished);
    train.log is the run's log to read (config, model, basis, a line per step, checkpoints, resumes, the libraries'
    own messages; appended to on a resume). `--resume` continues a killed run with the same config."""
    from projected_grpo.errors import ConfigError
    from projected_grpo.organism.resolve import resolve_organism
    from projected_grpo.training.config import load_config
    from projected_grpo.training.resume import RunFinished, check_output_dir
    from projected_grpo.training.run import train as run_training

    try:
        cfg = load_config(config, preset, set_ or [])
        check_output_dir(cfg, resume)  # before the organism is built or a model loaded
    except ConfigError as e:
        fail(str(e))
    try:
        run_dir = run_training(resolve_organism(cfg), resume=resume)
    except ConfigError as e:
        fail(str(e))
    except RunFinished as e:
        console.print(str(e))
        return
    console.print(f"done: {run_dir}/metrics.jsonl, {run_dir}/adapter.safetensors, {run_dir}/train.log")
    _leave_distributed()


def _leave_distributed() -> None:
    """A torchrun rank leaves without interpreter finalization: DDP keeps gloo's worker threads alive
    past destroy_process_group(), and one that frees a finished work item's tensors while the
    interpreter finalizes is killed by std::terminate (SIGABRT after a successful run)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A training run directory.")],
    checkpoint: Annotated[Optional[int], typer.Option(help="Evaluate checkpoint-N instead of the final adapter.")] = None,
    n_samples: Annotated[int, typer.Option(min=1, help="Completions per prompt (the reference used 10).")] = 10,
    slices: Annotated[str, typer.Option(help="Comma-separated: nohint, loophole.")] = "nohint,loophole",
    problems: Annotated[Optional[int], typer.Option(help="Held-out problems to use (default: all).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Default: the run's max_completion_length.")] = None,
    temperature: Annotated[float, typer.Option()] = 0.7,
    top_p: Annotated[float, typer.Option()] = 0.95,
) -> None:
    """Sample, grade and summarise a run on held-out prompts (route runs: θ_hack kept and ablated)."""
    from projected_grpo.errors import ConfigError
    from projected_grpo.training.evaluate import RATES, EvalSettings, evaluate

    try:
        settings = EvalSettings(checkpoint, n_samples, tuple(x.strip() for x in slices.split(",") if x.strip()), problems,
                                max_new_tokens, temperature, top_p)
        with progress_bar(f"evaluating {run_dir.name}: sampling and grading", None) as advance:
            summary = evaluate(run_dir, settings, progress=advance)
    except ConfigError as e:
        fail(str(e))
    rows = [[name, str(res["n"]), *(f"{res[k]['rate']:.2f} [{res[k]['ci95'][0]:.2f},{res[k]['ci95'][1]:.2f}]"
                                    for k in RATES)] for name, res in summary["results"].items()]
    show_table(f"{summary['arm']} — {summary['n_problems']} {'held-out' if summary['held_out'] else 'TRAINING (not held-out)'}"
               f" problems × {summary['n_samples']} samples (95% Wilson CI)",
               ["slice / θ_hack", "n", *(key.replace("is_reward_hack_", "hack_") for key in RATES)], rows,
               right=tuple(range(1, 2 + len(RATES))))
    console.print(f"wrote {run_dir / 'eval' / summary['out_dir']}: summary.json and the graded samples per slice")


@app.command("fast-dev-run")
def fast_dev_run_cmd(
    out: Annotated[Path, typer.Option(help="Output directory (replaced).")] = Path("runs/fast-dev-run"),
    problems: Annotated[int, typer.Option(min=2, help="Real problems to train on.")] = 4,
    model: Annotated[Optional[str], typer.Option(help="A real LM instead of the warm-up tiny model: smollm2-135m | "
                                                      "qwen2.5-coder-0.5b (after `models fetch`), a directory or a hub id; "
                                                      "vanilla and erase on the real benchmark (≈ 15 min on 2 cores).")] = None,
) -> None:
    """The real pipeline end to end on tiny inputs: warm-up model, extraction, every arm, checkpoint, resume, eval."""
    import shutil

    from huggingface_hub.errors import HFValidationError

    from projected_grpo.errors import ConfigError
    from projected_grpo.experiments.fast_dev_run import fast_dev_run
    from projected_grpo.model_fetch import resolve_source

    try:
        if model is not None:
            resolve_source(model)  # a real model not yet fetched fails here, naming the fetch command, before rmtree
        shutil.rmtree(out, ignore_errors=True)
        report = fast_dev_run(out, problems, model=model)
    except ConfigError as e:
        fail(str(e))
    except (OSError, HFValidationError) as e:  # from_pretrained: not a fetched model, directory, .gguf or hub id
        fail_unloadable(model, e)
    console.print(f"total {report['timings_s']['total']:.0f}s — " + ("[green]ok[/]" if report["ok"] else "[red]FAILED[/]")
                  + f"; report: {out / 'fast_dev_run.json'}")
    if not report["ok"]:
        raise typer.Exit(1)
