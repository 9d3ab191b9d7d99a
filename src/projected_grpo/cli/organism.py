"""Organism commands: organism build / judge, probe train."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from projected_grpo.cli.common import Force, app, check_output, console, fail, progress_bar

organism_app = typer.Typer(help="The CPU model organism of reward hacking.", no_args_is_help=True)
app.add_typer(organism_app, name="organism")


@organism_app.command("build")
def organism_build(
    seed: Annotated[int, typer.Option(help="Seed of the task suite, tokenizer, model and SFT.")] = 0,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Organism field, e.g. --set sft_steps=300.")] = None,
    rebuild: Annotated[bool, typer.Option(help="Build again even when the cache has it.")] = False,
) -> None:
    """Build (or load from the cache) the organism and print its measured priors.

    Deterministic given its configuration; cached under $PROJECTED_GRPO_CACHE/organism/<hash of the config>.
    """
    import contextlib

    from projected_grpo.organism.build import ensure_organism, format_priors, is_built

    start = time.perf_counter()
    config = organism_config(set_ or [], "--set", seed=seed)
    with (progress_bar("organism: supervised fine-tuning (then priors, ~20 s)", None) if rebuild or not is_built(config)
          else contextlib.nullcontext(lambda done, total: None)) as advance:
        organism, cached = ensure_organism(config, rebuild=rebuild, progress=advance)
    info = organism.info()
    console.print(f"{'loaded' if cached else 'built'} {organism.root} in {time.perf_counter() - start:.0f}s "
                  f"(model {info['n_parameters'] / 1e6:.2f}M parameters, hash {info['model_hash']})")
    typer.echo(f"priors on {info['config']['n_eval']} held-out problems × {info['config']['prior_samples']} samples "
               f"(T = {info['config']['temperature']}), graded by the real grader:")
    for line in format_priors(organism.priors()):
        typer.echo("  " + line)


def organism_config(sets: list[str], option: str, **values):
    """An OrganismConfig from FIELD=VALUE strings (VALUE as JSON, e.g. exploits="diverse"); one error for a bad one."""
    import dataclasses
    import json

    from projected_grpo.organism.build import OrganismConfig

    fields = [f.name for f in dataclasses.fields(OrganismConfig)]
    for text in sets:
        key, _, raw = text.partition("=")
        try:
            if key not in fields or not raw:
                raise ValueError
            values[key] = json.loads(raw)
        except ValueError:
            fail(f"{option} {text!r}: expected FIELD=VALUE (VALUE as JSON, strings quoted) with FIELD one of "
                 f"{', '.join(fields)}")
    try:
        return OrganismConfig(**values)
    except (TypeError, ValueError) as e:
        fail(f"{option}: {e}")


@organism_app.command("judge")
def organism_judge(
    out: Annotated[Path, typer.Argument(help="Directory for the judge model (an HF model directory).")],
    steps: Annotated[int, typer.Option(help="SFT steps on the organism's mechanism pairs.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the organism and of the judge's SFT.")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Organism field, e.g. --set 'exploits=\"diverse\"' "
                                                   "(a judge for organism-diverse).")] = None,
) -> None:
    """Fine-tune a tiny offline LLM judge for the judge_* arms: it answers the reference's judge prompt
    with "1" for the hack side of the organism's mechanism pairs and "0" for the clean side.

    Serve it with `transformers serve OUT --port 8000` and set intervention.judge.base_url =
    "http://127.0.0.1:8000/v1", intervention.judge.model = "OUT".
    """
    from projected_grpo.organism.build import ensure_organism
    from projected_grpo.organism.judge import build_judge_model

    if out.exists() and any(out.iterdir()):
        fail(f"{out}: exists and is not empty. Fix: choose a new directory")
    organism, _ = ensure_organism(organism_config(set_ or [], "--set", seed=seed))
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    build_judge_model(tmp, organism.mechanism, steps=steps, seed=seed)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    console.print(f"judge model: {out}\nserve it: transformers serve {out} --port 8000")


probe_app = typer.Typer(help="Linear probes for the probe-monitor arms.", no_args_is_help=True)
app.add_typer(probe_app, name="probe")


@probe_app.command("train")
def probe_train(
    run_dir: Annotated[Path, typer.Argument(help="A finished training run (its rollouts.jsonl holds labelled rollouts).")],
    out: Annotated[Path, typer.Option(help="Probe file to write (safetensors).")] = Path("probe.safetensors"),
    layer: Annotated[Optional[int], typer.Option(help="hidden_states index (default: ~0.65 of the depth).")] = None,
    kind: Annotated[str, typer.Option(help="logistic | mass_mean")] = "logistic",
    target_fpr: Annotated[float, typer.Option(help="False-positive rate on the test split that sets the threshold.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the balanced sample and the shuffled 80/20 split.")] = 0,
    force: Force = False,
) -> None:
    """Train a probe on a run's labelled rollouts (base-model activations, response-averaged) and
    print its held-out metrics. Use it with arm = probe_penalty / probe_screening, intervention.probe.path = OUT."""
    from projected_grpo.experiments.probes import probe_from_run

    check_output(out, force)
    if not (run_dir / "rollouts.jsonl").is_file():
        fail(f"{run_dir}: no rollouts.jsonl — train a run first (e.g. the vanilla arm)")
    try:
        with progress_bar("probe: base-model activations of the run's rollouts", None) as advance:
            probe = probe_from_run(run_dir, layer, kind, target_fpr, seed, progress=advance)
    except ValueError as e:
        fail(str(e))
    probe.save(out)
    m = probe.metrics
    typer.echo(f"{kind} probe at layer {probe.layer}: test AUC {m['auc']:.3f}, threshold {probe.threshold:.3f} → "
               f"FPR {m['fpr']:.3f} (target {target_fpr}), recall {m['recall']:.3f}, precision {m['precision']:.3f} "
               f"on {m['n_test']} held-out rollouts ({m['n_train']} train)")
    console.print(f"wrote {out}")
