"""Method commands: extract a hack basis and print its diagnostics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from projected_grpo.adapters.config import KINDS, AdapterConfig
from projected_grpo.atomic import atomic_path
from projected_grpo.cli.common import (Force, app, check_output, console, fail, fail_unloadable, progress_bar,
                                       show_table)
from projected_grpo.directions.config import CONTROLS, ExtractionConfig
from projected_grpo.environment.dataset import DatasetError

EXTRACTION, ADAPTER = ExtractionConfig(), AdapterConfig()  # every option's default is the library config's own


@app.command()
def extract(
    model: Annotated[str, typer.Option(help="organism (the CPU model organism, built or cached), tiny-qwen3 | tiny-llama | "
                                            "tiny-qwen2, a fetched real model, a local model dir, a .gguf file, or a hub id.")],
    pairs: Annotated[Optional[str], typer.Option(help="Pair-set JSONL path or shipped name (leetcode_mechanism, leetcode_placebo; "
                                                      "with --model organism: organism, organism_placebo). Default: "
                                                      "organism with --model organism, else leetcode_mechanism.")] = None,
    space: Annotated[str, typer.Option(help="gradient (δS / B gradients, §2.1) or activation (residual stream, §2.2).")] = "gradient",
    control: Annotated[str, typer.Option(help=f"{' | '.join(CONTROLS)} (placebo: pass --pairs leetcode_placebo).")] = EXTRACTION.control,
    adapter: Annotated[str, typer.Option(help=f"{' | '.join(KINDS)}: the δS knob, fixed-A LoRA, or plain LoRA "
                                              "(activation space only).")] = ADAPTER.kind,
    rank: Annotated[Optional[int], typer.Option(min=1, help="svd: top-m (default full rank); fixed_a_lora: ρ; peft_lora: r = α (32).")] = ADAPTER.rank,
    k: Annotated[int, typer.Option(min=1, help="Directions extracted per module.")] = EXTRACTION.k,
    tau: Annotated[float, typer.Option(help="Per-module relative floor S_i/S_0.")] = EXTRACTION.tau,
    global_floor: Annotated[float, typer.Option(help="Drop this fraction of the smallest S_i pooled over modules.")] = EXTRACTION.global_floor,
    modes: Annotated[Optional[str], typer.Option(help="Extract only from pairs of these modes (comma-separated).")] = None,
    holdout: Annotated[float, typer.Option(help="Share of pairs left out of the extraction to score the basis on "
                                                "(the held-out pair check; 0: none).")] = EXTRACTION.holdout,
    batch_size: Annotated[int, typer.Option(min=1, help="Completions per forward/backward pass.")] = EXTRACTION.batch_size,
    layer: Annotated[Optional[int], typer.Option(min=0, help="activation: layer (default ~65% depth).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the controls, the held-out split and a LoRA's A.")] = EXTRACTION.seed,
    organism: Annotated[Optional[list[str]], typer.Option(help="With --model organism: an organism field, e.g. "
                                                                "--organism 'exploits=\"diverse\"' (organism-diverse); "
                                                                "repeatable; default: the default organism.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also copy the basis here (safetensors).")] = None,
    force: Force = False,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Cache root (default ~/.cache/projected_grpo).")] = None,
) -> None:
    """Extract a hack basis from contrastive pairs and print its diagnostics (cached by its inputs)."""
    import shutil

    from projected_grpo.adapters.attach import attach_adapters
    from projected_grpo.directions.pairs import load_pairs
    from projected_grpo.directions.store import SPACES, extraction_forwards, get_basis
    from projected_grpo.models import load_model

    if out is not None:
        check_output(out, force)
    try:  # every option is checked before a model is loaded
        if space not in SPACES:
            raise ValueError(f"--space {space!r}: choose one of {', '.join(SPACES)}")
        adapter_config = AdapterConfig(adapter, rank=rank, seed=seed)
        if adapter == "peft_lora" and space != "activation":
            raise ValueError("--adapter peft_lora needs --space activation: plain LoRA is bilinear, so a gradient-space "
                             "basis drifts (method §1.3)")
        config = ExtractionConfig(k=k, tau=tau, global_floor=global_floor, control=control, seed=seed,
                                  batch_size=batch_size, holdout=holdout)
        source, pair_source = resolve_model_and_pairs(model, pairs, organism or [])
        chosen = tuple(m.strip() for m in modes.split(",")) if modes else None
        pair_list = load_pairs(pair_source, chosen)
        with console.status(f"loading {model}"):
            lm, tokenizer = load_model(source)  # a real model's name that is not fetched yet: a ValueError naming the fix
    except (DatasetError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # a path that is not a model, or a hub id that is not in the offline cache
        fail_unloadable(model, e, also="organism, a tiny-* name, ")
    adapters = attach_adapters(lm, adapter_config, base_model_id=source, cache_dir=cache_dir)
    start = time.perf_counter()
    total = extraction_forwards(len(pair_list), space, config)
    with progress_bar(f"extracting from {len(pair_list)} pairs (forward passes)", total) as advance:
        passes = [0]

        def count(*_):
            passes[0] += 1
            advance(min(passes[0], total), total)

        hook = lm.register_forward_hook(count)
        try:
            basis, path, cached = get_basis(pair_list, lm, adapters, tokenizer, space, config, layer=layer,
                                            cache_dir=cache_dir, model_id=source)
        finally:
            hook.remove()
        advance(total, total)  # a cache hit runs none
    elapsed = time.perf_counter() - start
    if out is not None:
        with atomic_path(out) as tmp:
            shutil.copyfile(path, tmp)
    _print_basis(basis, path, cached, elapsed, len(pair_list))


def resolve_model_and_pairs(model: str, pairs: str | None, organism_sets: list[str]) -> tuple[str, str]:
    """`--model organism`: the organism's model directory (built or cached), and its pair sets under the names
    organism / organism_placebo (the default pairs then). Other models pass through (default pairs:
    leetcode_mechanism)."""
    if model != "organism":
        if organism_sets:
            fail("--organism: only with --model organism")
        return model, pairs or "leetcode_mechanism"
    from projected_grpo.cli.organism import organism_config
    from projected_grpo.organism.build import ensure_organism

    organism, _ = ensure_organism(organism_config(organism_sets, "--organism"))
    named = {"organism": organism.mechanism, "organism_placebo": organism.placebo}
    return str(organism.model), str(named.get(pairs or "organism", pairs))


def _print_basis(basis, path: Path, cached: bool, elapsed: float, n_pairs: int) -> None:
    meta = basis.meta
    diag = meta.get("diagnostics", {})
    rows = []
    for name, v in basis.vectors.items():
        s = basis.spectra.get(name)
        head = ", ".join(f"{float(x):.3g}" for x in s[:4]) if s is not None else "—"
        energy = diag.get("energy_top_k", {}).get(name)
        rows.append([name, str(v.shape[0]), head, f"{energy:.2f}" if energy is not None else "—"])
    show_table(f"{meta.get('space')} basis, control={meta.get('control')}, {n_pairs} pairs "
               f"({'cache hit' if cached else f'extracted in {elapsed:.1f}s'})",
               ["module", "rows kept", "top singular values of D", "energy in top-k"], rows, right=(1, 3))
    summary = {k: meta[k] for k in ("modules_fired", "modules_total") if k in meta}
    summary |= {k: diag[k] for k in ("modules_with_directions", "modules_total", "mean_energy_top_k",
                                     "heldout_positive", "n_heldout") if k in diag}
    typer.echo("diagnostics: " + json.dumps(summary))
    console.print(f"basis: {path}")
    if basis.spectra:
        png = path.with_suffix(".spectra.png")
        from projected_grpo.directions.plots import plot_spectra  # matplotlib: only when there is a plot

        plot_spectra(basis, png)
        console.print(f"spectra plot: {png}")
