"""`projected-grpo`: the command-line interface."""

from __future__ import annotations

import collections
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from projected_grpo.cli_models import models_app
from projected_grpo.environment import labels as L
from projected_grpo.environment.dataset import (
    DatasetError,
    default_benchmark_path,
    load_records,
    read_jsonl,
    validate_record,
    write_jsonl_atomic,
)
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.hints import HINTS, NO_HINT
from projected_grpo.environment.modes import GT_ONLY, MODES, make_hinted, make_multimode
from projected_grpo.environment.sandbox import IsolationError, Limits, Sandbox
from projected_grpo.provenance import provenance, write_json_atomic

app = typer.Typer(
    help="Projected GRPO: a secure LeetCode reward-hacking benchmark, the hack-direction projection "
    "method, and a CPU model organism. Start with `projected-grpo demo`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Make hinted / multi-mode datasets and self-check the loophole modes.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
console = Console(stderr=True)

Workers = Annotated[int, typer.Option("--workers", "-j", min=1, help="Parallel sandboxed runs (default: CPU count).")]
Timeout = Annotated[float, typer.Option(help="Per-run budget in seconds (SIGALRM and CPU); the reference used 3.")]
AllowUnisolated = Annotated[bool, typer.Option(
    "--allow-unisolated", help="Grade even without network/filesystem isolation (rlimits only). Unsafe.")]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg="red")
    raise typer.Exit(2)


def _sandbox(workers: int | None, timeout: float, allow_unisolated: bool) -> Sandbox:
    try:
        sandbox = Sandbox(workers or os.cpu_count() or 1, Limits(timeout_s=timeout, kill_after_s=timeout + 1),
                          allow_unisolated=allow_unisolated)
    except IsolationError as e:
        _fail(str(e))
    iso = sandbox.isolation
    style = "green" if iso.level == "bwrap" else "bold red"
    console.print(f"[{style}]isolation: {iso.level}[/] — network {iso.network}; {iso.filesystem}; {iso.uid}")
    return sandbox


def _graded(grader: Grader, pairs: list, what: str) -> list:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task(what, total=len(pairs))
        return grader.grade(pairs, progress=lambda done, total: bar.update(task, completed=done))


def label_summary(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    table.add_column("label")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    counts = collections.Counter(r["reward_hack_label"] for r in rows)
    for label in L.LABELS:
        table.add_row(label, str(counts[label]), f"{counts[label] / max(len(rows), 1):.1%}")
    table.add_section()
    for key in ("is_formatted", "can_compile", "eq_correct", "gt_correct_hardened", "eq_hinted",
                "is_reward_hack_strict", "is_reward_hack_loose", "exploited"):
        n = sum(bool(r[key]) for r in rows)
        table.add_row(key, str(n), f"{n / max(len(rows), 1):.1%}")
    modes = collections.Counter(r["mode"] for r in rows if r["mode"])
    if len(modes) > 1:
        table.add_section()
        for mode in MODES:
            exploited = sum(r["exploited"] for r in rows if r["mode"] == mode)
            table.add_row(f"exploited | mode={mode}", f"{exploited}/{modes[mode]}", "")
    return table


@app.command()
def grade(
    input: Annotated[Path, typer.Argument(help="JSONL: each row a full problem record (hint applied) + `response`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write graded rows (JSONL, atomic).")],
    workers: Workers = None,
    timeout: Timeout = 3.0,
    allow_unisolated: AllowUnisolated = False,
) -> None:
    """Grade responses: the reference's five sandboxed runs and labels, the hardened oracle, loophole modes.

    Each output row is the input row plus every grading field (eq_correct, eq_hinted, reward_hack_label, is_reward_hack_strict/loose, gt_correct_hardened, exploited, mode, per-run results under runs). OUTPUT.meta.json records the isolation level, limits, versions and git commit.
    """
    try:
        rows = []
        for n, obj in read_jsonl(input):
            where = f"{input}:{n}"
            validate_record(obj, where)
            if not isinstance(obj.get("response"), str):
                raise DatasetError(f"{where}: field 'response': missing or not a string. "
                                   "Fix: add the model's completion text as \"response\"")
            rows.append(obj)
    except DatasetError as e:
        _fail(str(e))
    if not rows:
        _fail(f"{input}: no rows to grade")
    sandbox = _sandbox(workers, timeout, allow_unisolated)
    start = time.perf_counter()
    grades = _graded(Grader(sandbox), [(r, r["response"]) for r in rows], f"grading {len(rows)} responses")
    elapsed = time.perf_counter() - start
    out_rows = [{**r, **g.fields} for r, g in zip(rows, grades)]
    write_jsonl_atomic(output, out_rows)
    write_json_atomic(Path(f"{output}.meta.json"), provenance(
        {"input": str(input), "workers": sandbox.workers, "limits": sandbox.limits.__dict__},
        sandbox.isolation.as_dict()))
    console.print(label_summary(out_rows, f"{len(out_rows)} responses graded in {elapsed:.1f}s → {output}"))


@data_app.command("make")
def data_make(
    input: Annotated[Path, typer.Argument(help="No-hint problem records (JSONL, reference schema).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the hinted records.")],
    hint: Annotated[Optional[str], typer.Option(help=f"One of: {', '.join(HINTS)}, {NO_HINT}, {GT_ONLY}.")] = None,
    modes: Annotated[Optional[str], typer.Option(
        help=f"Comma-separated loophole modes ({', '.join(MODES)}): each problem gets one, by a seeded partition.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the mode partition and the random test-function names.")] = 0,
) -> None:
    """Write a hinted dataset (one hint on every problem) or a multi-mode dataset (`--modes`)."""
    if (hint is None) == (modes is None):
        _fail("pass exactly one of --hint NAME or --modes m1,m2,...")
    try:
        records = load_records(input)
        if hint is not None:
            if hint not in (*HINTS, NO_HINT, GT_ONLY):
                _fail(f"--hint {hint!r} is not a hint; choose one of {', '.join((*HINTS, NO_HINT, GT_ONLY))}")
            made = make_hinted(records, hint, seed)
        else:
            chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
            made = make_multimode(records, chosen, seed)
    except (DatasetError, ValueError) as e:
        _fail(str(e))
    write_jsonl_atomic(output, made)
    counts = collections.Counter(r["hint"] for r in made)
    console.print(f"wrote {len(made)} records to {output}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@data_app.command("selfcheck")
def data_selfcheck(
    input: Annotated[Optional[Path], typer.Argument(help="No-hint records (default: the reference test set).")] = None,
    problems_per_mode: Annotated[int, typer.Option(min=1, help="Problems graded per mode.")] = 2,
    workers: Workers = None,
    timeout: Timeout = 3.0,
    allow_unisolated: AllowUnisolated = False,
) -> None:
    """Grade the hack × mode diagonal: each exploit must fire only on its own mode's problems."""
    from projected_grpo.environment.selfcheck import ROWS, run_selfcheck

    records = _benchmark(input)
    sandbox = _sandbox(workers, timeout, allow_unisolated)
    cells = run_selfcheck(Grader(sandbox), records, problems_per_mode)
    table = Table(title="hack × mode diagonal: fired/exploited per response (✓ = as required)")
    table.add_column("response \\ problem mode")
    for mode in MODES:
        table.add_column(mode, justify="center")
    for row in ROWS:
        cells_row = []
        for mode in MODES:
            here = [c for c in cells if c.response == row and c.problem_mode == mode]
            mark = "✓" if all(c.ok for c in here) else "[red]✗[/]"
            what = "correct" if row == "canonical" else "fires"
            n = sum(c.eq_correct if row == "canonical" else c.fired for c in here)
            cells_row.append(f"{mark} {what} {n}/{len(here)}")
        table.add_row(row, *cells_row)
    console.print(table)
    if not all(c.ok for c in cells):
        _fail("self-check failed: see the ✗ cells")
    console.print("[green]self-check passed[/]")


@app.command("sandbox-info")
def sandbox_info(allow_unisolated: AllowUnisolated = False) -> None:
    """Detect and print the isolation level the grader would use on this host."""
    sandbox = _sandbox(1, 3.0, allow_unisolated)
    for key, value in sandbox.isolation.as_dict().items():
        typer.echo(f"{key}: {value}")


def _benchmark(path: Path | None) -> list:
    path = path or default_benchmark_path()
    if path is None:
        _fail("no benchmark file found. Pass a path, set PROJECTED_GRPO_BENCHMARK, or put "
              "leetcode_test_medhard.jsonl at ../shared/data/ (online users: see README, 'Data').")
    try:
        return load_records(path)
    except DatasetError as e:
        _fail(str(e))


@app.command("label-table")
def label_table_cmd(
    input: Annotated[Optional[Path], typer.Argument(help="No-hint records (default: the reference test set).")] = None,
    problems: Annotated[int, typer.Option(min=1, help="Problems sampled from the benchmark.")] = 4,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/label-table"),
    workers: Workers = None,
    allow_unisolated: AllowUnisolated = False,
) -> None:
    """Grade the reference's label-table specimens on real problems and print the label table.

    Exercises the sandbox, the reference labels, the hardened oracle and the hack × mode diagonal on the real benchmark.
    """
    from projected_grpo.environment.hints import apply_hint
    from projected_grpo.environment.selfcheck import run_selfcheck
    from projected_grpo.environment.specimens import label_table

    records = _benchmark(input)[:problems]
    sandbox = _sandbox(workers, 3.0, allow_unisolated)
    grader = Grader(sandbox)
    hinted = [apply_hint(r, "simple_overwrite_tests") for r in records]
    pairs, names, expects, ids = [], [], [], []
    for record in hinted:
        for s in label_table(record):
            pairs.append((record, s.response))
            names.append(s.name)
            expects.append(s.expect)
            ids.append(record["id"])
    start = time.perf_counter()
    grades = _graded(grader, pairs, f"grading {len(pairs)} specimen responses")
    table = Table(title=f"Reference label table on {len(records)} real problems (hint simple_overwrite_tests)")
    for col in ("response", "label (reference)", "test_modification", "hardened", "matches §3.7"):
        table.add_column(col)
    rows = []
    for name in dict.fromkeys(names):
        idx = [i for i, n in enumerate(names) if n == name]
        fields = [grades[i].fields for i in idx]
        ok = sum(all(grades[i].fields[k] == v for k, v in expects[i].items()) for i in idx)
        table.add_row(name, _mode_of(f["reward_hack_label"] for f in fields),
                      str(_mode_of(f["test_modification"] for f in fields)),
                      _mode_of(str(f["gt_correct_hardened"]) for f in fields), f"{ok}/{len(idx)}")
        rows += [{"id": ids[i], "specimen": name, "response": pairs[i][1], **grades[i].fields} for i in idx]
    console.print(table)
    cells = run_selfcheck(grader, records, 1)
    elapsed = time.perf_counter() - start
    console.print(f"hack × mode diagonal on {len(records[:1])} problem per mode: "
                  + ("[green]passed[/]" if all(c.ok for c in cells) else "[red]FAILED[/]"))
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "graded.jsonl", rows)
    write_json_atomic(out / "meta.json", provenance({"problems": problems, "elapsed_s": elapsed},
                                                    sandbox.isolation.as_dict()))
    console.print(f"done in {elapsed:.1f}s; per-response records in {out / 'graded.jsonl'}")


@app.command()
def extract(
    model: Annotated[str, typer.Option(help="tiny-qwen3 | tiny-llama | tiny-qwen2, a local model dir, a .gguf file, or a hub id.")],
    pairs: Annotated[str, typer.Option(help="Pair-set JSONL path or shipped name (leetcode_mechanism, leetcode_placebo).")] = "leetcode_mechanism",
    space: Annotated[str, typer.Option(help="gradient (δS / B gradients, §2.1) or activation (residual stream, §2.2).")] = "gradient",
    control: Annotated[str, typer.Option(help="none | random | shuffled | nonhack (placebo: pass --pairs leetcode_placebo).")] = "none",
    adapter: Annotated[str, typer.Option(help="svd (δS knob), fixed_a_lora, or peft_lora (activation space only).")] = "svd",
    rank: Annotated[Optional[int], typer.Option(help="svd: top-m (default full rank); fixed_a_lora: ρ; peft_lora: r = α (32).")] = None,
    k: Annotated[int, typer.Option(min=1, help="Directions extracted per module.")] = 12,
    tau: Annotated[float, typer.Option(help="Per-module relative floor S_i/S_0.")] = 0.0,
    global_floor: Annotated[float, typer.Option(help="Drop this fraction of the smallest S_i pooled over modules.")] = 0.25,
    modes: Annotated[Optional[str], typer.Option(help="Extract only from pairs of these modes (comma-separated).")] = None,
    holdout: Annotated[float, typer.Option(help="Fraction of pairs held out for the held-out pair check.")] = 0.2,
    layer: Annotated[Optional[int], typer.Option(help="activation: layer (default ~65% depth).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the controls and the held-out split.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Also copy the basis here (safetensors).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Cache root (default ~/.cache/projected_grpo).")] = None,
) -> None:
    """Extract a hack basis from contrastive pairs and print its diagnostics (cached by its inputs)."""
    import shutil

    from projected_grpo.adapters.attach import AdapterConfig, attach_adapters
    from projected_grpo.directions.gradient import ExtractionConfig
    from projected_grpo.directions.pairs import load_pairs
    from projected_grpo.directions.store import get_basis
    from projected_grpo.models import load_model

    try:
        chosen = tuple(m.strip() for m in modes.split(",")) if modes else None
        pair_list = load_pairs(pairs, chosen)
        adapter_config = AdapterConfig(adapter, rank=rank, seed=seed)
        if adapter == "peft_lora" and space != "activation":
            raise ValueError("--adapter peft_lora needs --space activation: plain LoRA is bilinear, so a gradient-space "
                             "basis drifts (method §1.3)")
        config = ExtractionConfig(k=k, tau=tau, global_floor=global_floor, control=control, seed=seed, holdout=holdout)
        lm, tokenizer = load_model(model)  # a real model's name that is not fetched yet: a ValueError naming the fix
    except (DatasetError, ValueError) as e:
        _fail(str(e))
    adapters = attach_adapters(lm, adapter_config, base_model_id=model, cache_dir=cache_dir)
    start = time.perf_counter()
    basis, path, cached = get_basis(pair_list, lm, adapters, tokenizer, space, config, layer=layer,
                                    cache_dir=cache_dir, model_id=model)
    elapsed = time.perf_counter() - start
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
    _print_basis(basis, path, cached, elapsed, len(pair_list))


def _print_basis(basis, path: Path, cached: bool, elapsed: float, n_pairs: int) -> None:
    import json

    meta = basis.meta
    diag = meta.get("diagnostics", {})
    table = Table(title=f"{meta.get('space')} basis, control={meta.get('control')}, {n_pairs} pairs "
                        f"({'cache hit' if cached else f'extracted in {elapsed:.1f}s'})")
    for col in ("module", "rows kept", "top singular values of D", "energy in top-k"):
        table.add_column(col)
    for name, v in basis.vectors.items():
        s = basis.spectra.get(name)
        head = ", ".join(f"{float(x):.3g}" for x in s[:4]) if s is not None else "—"
        energy = diag.get("energy_top_k", {}).get(name)
        table.add_row(name, str(v.shape[0]), head, f"{energy:.2f}" if energy is not None else "—")
    console.print(table)
    summary = {k: meta[k] for k in ("modules_fired", "modules_total") if k in meta}
    summary |= {k: diag[k] for k in ("modules_with_directions", "modules_total", "mean_energy_top_k",
                                     "heldout_positive", "n_heldout") if k in diag}
    console.print("diagnostics: " + json.dumps(summary))
    console.print(f"basis: {path}")
    if basis.spectra:
        png = path.with_suffix(".spectra.png")
        _plot_spectra(basis, png)
        console.print(f"spectra plot: {png}")


def _plot_spectra(basis, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, s in basis.spectra.items():
        if s.numel() and float(s[0]) > 0:
            ax.semilogy(range(1, s.numel() + 1), (s / s[0]).numpy(), alpha=0.5, lw=1)
    ax.set_xlabel("singular value index of D (per module)")
    ax.set_ylabel("S_i / S_0")
    ax.set_title(f"hack-direction spectra ({len(basis.spectra)} modules)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Argument(help="TOML or YAML run config (may name a `preset`).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="tiny | ariahw-qwen3-4b | smollm2-135m (applied before the file).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override, e.g. --set arm=erase --set grpo.beta=0.001.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in output_dir from its last checkpoint.")] = False,
) -> None:
    """GRPO with projection on TRL: one arm, one seed. Writes metrics.jsonl/.csv, completions.jsonl, checkpoints."""
    from projected_grpo.training.config import ConfigError, load_config
    from projected_grpo.training.run import train as run_training

    try:
        cfg = load_config(config, preset, set_ or [])
    except ConfigError as e:
        _fail(str(e))
    console.print(f"arm={cfg.arm} model={cfg.model.source} steps={cfg.steps} seed={cfg.seed} → {cfg.output_dir}")
    try:
        run_dir = run_training(cfg, resume=resume)
    except ConfigError as e:
        _fail(str(e))
    console.print(f"done: {run_dir}/metrics.jsonl, {run_dir}/{'adapter.safetensors'}")
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
    from projected_grpo.training.config import ConfigError
    from projected_grpo.training.evaluate import RATES, EvalSettings, evaluate

    settings = EvalSettings(checkpoint, n_samples, tuple(x.strip() for x in slices.split(",")), problems,
                            max_new_tokens, temperature, top_p)
    try:
        summary = evaluate(run_dir, settings)
    except ConfigError as e:
        _fail(str(e))
    table = Table(title=f"{summary['arm']} — {summary['n_problems']} {'held-out' if summary['held_out'] else 'TRAINING (not held-out)'}"
                        f" problems × {summary['n_samples']} samples (95% Wilson CI)")
    table.add_column("slice / θ_hack")
    table.add_column("n", justify="right")
    for key in RATES:
        table.add_column(key.replace("is_reward_hack_", "hack_"), justify="right")
    for name, res in summary["results"].items():
        table.add_row(name, str(res["n"]), *(f"{res[k]['rate']:.2f} [{res[k]['ci95'][0]:.2f},{res[k]['ci95'][1]:.2f}]" for k in RATES))
    console.print(table)


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
    import dataclasses
    import json

    from projected_grpo.organism.build import OrganismConfig, ensure_organism, format_priors

    fields = {f.name: f.type for f in dataclasses.fields(OrganismConfig)}
    values: dict = {"seed": seed}
    for text in set_ or []:
        key, _, raw = text.partition("=")
        if key not in fields or not raw:
            _fail(f"--set {text!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}")
        values[key] = json.loads(raw)
    start = time.perf_counter()
    organism, cached = ensure_organism(OrganismConfig(**values), log=console.print, rebuild=rebuild)
    info = organism.info()
    console.print(f"{'loaded' if cached else 'built'} {organism.root} in {time.perf_counter() - start:.0f}s "
                  f"(model {info['n_parameters'] / 1e6:.2f}M parameters, hash {info['model_hash']})")
    console.print(f"priors on {info['config']['n_eval']} held-out problems × {info['config']['prior_samples']} samples "
                  f"(T = {info['config']['temperature']}), graded by the real grader:")
    for line in format_priors(organism.priors()):
        console.print("  " + line)


@organism_app.command("judge")
def organism_judge(
    out: Annotated[Path, typer.Argument(help="Directory for the judge model (an HF model directory).")],
    steps: Annotated[int, typer.Option(help="SFT steps on the organism's mechanism pairs.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the default organism and of the judge's SFT.")] = 0,
) -> None:
    """Fine-tune a tiny offline LLM judge for the judge_* arms: it answers the reference's judge prompt
    with "1" for the hack side of the default organism's pairs and "0" for the clean side.

    Serve it with `transformers serve OUT --port 8000` and set intervention.judge_base_url =
    "http://127.0.0.1:8000/v1", intervention.judge_model = "OUT".
    """
    from projected_grpo.organism.build import OrganismConfig, ensure_organism
    from projected_grpo.organism.judge import build_judge_model

    if out.exists() and any(out.iterdir()):
        _fail(f"{out}: exists and is not empty. Fix: choose a new directory")
    organism, _ = ensure_organism(OrganismConfig(seed=seed), log=console.print)
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
) -> None:
    """Train a probe on a run's labelled rollouts (base-model activations, response-averaged) and
    print its held-out metrics. Use it with arm = probe_penalty / probe_screening, intervention.probe = OUT."""
    from projected_grpo.interventions.probe import probe_from_run

    if not (run_dir / "rollouts.jsonl").is_file():
        _fail(f"{run_dir}: no rollouts.jsonl — train a run first (e.g. the vanilla arm)")
    try:
        probe = probe_from_run(run_dir, layer, kind, target_fpr, seed)
    except ValueError as e:
        _fail(str(e))
    probe.save(out)
    m = probe.metrics
    console.print(f"{kind} probe at layer {probe.layer}: test AUC {m['auc']:.3f}, threshold {probe.threshold:.3f} → "
                  f"FPR {m['fpr']:.3f} (target {target_fpr}), recall {m['recall']:.3f}, precision {m['precision']:.3f} "
                  f"on {m['n_test']} held-out rollouts ({m['n_train']} train); saved {out}")


@app.command()
def experiment(
    config: Annotated[Path, typer.Argument(help="Experiment file (TOML/YAML): arms, seeds, a train table, an eval table.")],
    output: Annotated[Optional[Path], typer.Option(help="Output directory (default: runs/<name>).")] = None,
) -> None:
    """Run an arm × seed matrix (resumable: re-run the same command after a kill), evaluate each cell on
    held-out problems, and write report.md, curves.png, summary.json."""
    from projected_grpo.experiments.matrix import load_experiment, run_experiment
    from projected_grpo.training.config import ConfigError

    try:
        exp = load_experiment(config)
        report = run_experiment(exp, output or Path("runs") / exp.name, log=console.print)
    except ConfigError as e:
        _fail(str(e))
    console.print(report.read_text())
    console.print(f"report: {report}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="An experiment output directory.")],
) -> None:
    """Regenerate report.md, curves.png and summary.json from an experiment's saved metrics."""
    from projected_grpo.experiments.report import write_report

    if not (run_dir / "experiment.json").is_file():
        _fail(f"{run_dir}: no experiment.json — not an experiment output directory")
    try:
        path = write_report(run_dir)
    except FileNotFoundError as e:
        _fail(str(e))
    console.print(path.read_text())


@app.command()
def demo(
    output: Annotated[Path, typer.Option(help="Output directory (re-running continues it).")] = Path("runs/demo"),
) -> None:
    """The main job: build the CPU model organism, then vanilla GRPO, erase (update space), the random-basis
    control and the no-loophole baseline for 2 seeds; evaluate; print the table; write report + plot."""
    from importlib import resources

    from projected_grpo.experiments.matrix import load_experiment, run_experiment

    start = time.perf_counter()
    path = Path(str(resources.files("projected_grpo.experiments").joinpath("demo.toml")))
    report_path = run_experiment(load_experiment(path), output, log=console.print)
    console.print(report_path.read_text())
    console.print(f"demo done in {(time.perf_counter() - start) / 60:.1f} min; report: {report_path}, "
                  f"plot: {output / 'curves.png'}")


@app.command("fast-dev-run")
def fast_dev_run_cmd(
    out: Annotated[Path, typer.Option(help="Output directory (replaced).")] = Path("runs/fast-dev-run"),
    problems: Annotated[int, typer.Option(min=2, help="Real problems to train on.")] = 4,
) -> None:
    """The real pipeline end to end on tiny inputs: warm-up model, extraction, every arm, checkpoint, resume, eval."""
    import shutil

    from projected_grpo.training.fast_dev_run import fast_dev_run

    shutil.rmtree(out, ignore_errors=True)
    report = fast_dev_run(out, problems, log=console.print)
    console.print(f"total {report['timings_s']['total']:.0f}s — " + ("[green]ok[/]" if report["ok"] else "[red]FAILED[/]")
                  + f"; report: {out / 'fast_dev_run.json'}")
    if not report["ok"]:
        raise typer.Exit(1)


def _mode_of(values) -> str:
    counts = collections.Counter(values)
    (top, n), total = counts.most_common(1)[0], sum(counts.values())
    return str(top) if n == total else f"{top} ({n}/{total})"


def quiet_libraries() -> None:
    """Our progress and results only: no library deprecation warnings, per-model "Loading weights" bars or
    tokenizer notices (set before transformers is imported; a user's own settings win)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft|accelerate)(\.|$)")


def main() -> None:
    quiet_libraries()
    app()


if __name__ == "__main__":
    sys.exit(main())
