"""A training run, assembled (docs/training.md): model → adapters → bases (projection + held-out, cached)
→ `ProjectingOptimizer` handed to the trainer (`optimizers=`) → the environment reward (reward.py) →
the metrics callback (metrics.py); then `train` runs or resumes it. The trainer's adjustments to TRL
are in trainer.py."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from loguru import logger
from transformers import ProgressCallback, TrainerCallback

from projected_grpo.adapters.attach import Adapters, attach_adapters
from projected_grpo.atomic import write_json_atomic, write_jsonl_atomic
from projected_grpo.directions.activation import protect_readers
from projected_grpo.directions.basis import Basis
from projected_grpo.directions.gradient import make_refresh
from projected_grpo.directions.pairs import load_pairs, split_heldout
from projected_grpo.directions.store import get_basis, model_fingerprint
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.sandbox import Limits, Sandbox
from projected_grpo.errors import ConfigError
from projected_grpo.interventions.setup import make_shaper
from projected_grpo.interventions.tdga import trusted_basis
from projected_grpo.models import default_device, load_model
from projected_grpo.projection.optimizer import ProjectingOptimizer, modules_from_adapters
from projected_grpo.provenance import provenance
from projected_grpo.training.arms import ARMS
from projected_grpo.training.config import TrainConfig
from projected_grpo.training.data import training_records
from projected_grpo.training.metrics import MetricsCallback
from projected_grpo.training.resume import resume_point
from projected_grpo.training.reward import LabelLog, TeacherPool, TimedReward
from projected_grpo.training.runlog import CheckpointLog, logged_run
from projected_grpo.training.trainer import ADAPTER_FILE, AdapterGRPOTrainer, QuietProgress, grpo_args

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Run:
    config: TrainConfig
    run_dir: Path
    model: torch.nn.Module
    tokenizer: object
    adapters: Adapters
    basis: Basis
    optimizer: ProjectingOptimizer
    trainer: AdapterGRPOTrainer
    labels: LabelLog
    sandbox: Sandbox


def build_run(config: TrainConfig, run_dir: Path | None = None, progress_bar: bool = True) -> Run:
    if config.model.source == "organism":
        raise ConfigError('model.source = "organism" is resolved by the caller (the organism layer sits above '
                          "training). Fix: pass projected_grpo.organism.resolve.resolve_organism(config)")
    run_dir = Path(run_dir or config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = logger.bind(console=progress_bar)  # under another progress bar (the experiment runner): train.log only
    torch.manual_seed(config.seed)
    arm = ARMS[config.arm]
    # on the training device and dtype from the start: extraction and the shapers run where training will
    model, tokenizer = load_model(config.model.source, dtype=DTYPES[config.model.dtype], device=default_device())
    log.info(f"model: {config.model.source} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
             f"{config.model.dtype}, on {next(model.parameters()).device})")
    adapters = attach_adapters(model, config.adapter.resolve(config.seed), base_model_id=config.model.source)
    b = config.basis
    pool = load_pairs(b.pairs, tuple(b.modes) if b.modes else None)
    kept, held = split_heldout(pool, b.leak_heldout, b.leak_heldout_seed)
    pairs = load_pairs(b.placebo_pairs) if arm.placebo else kept
    extraction = b.extraction(arm, config.seed)
    extract = functools.partial(get_basis, model=model, adapters=adapters, tokenizer=tokenizer, space=b.space,
                                layer=b.layer, m=b.m, model_id=config.model.source,
                                chat_template_kwargs=config.model.chat_template_kwargs)
    if arm.intervention == "tdga":  # the trusted subspace of an honest warm-up replaces the hack basis
        trusted_k = config.intervention.tdga.trusted_k
        basis, basis_path = trusted_basis(honest_warmup(config, run_dir), trusted_k), run_dir / "basis.safetensors"
        b = dataclasses.replace(b, k_use=trusted_k)
        log.info(f"basis: the trusted subspace of the honest warm-up (k {b.k_use})")
    else:
        basis, basis_path, cached = extract(pairs, config=extraction)
        log.info(f"basis: {b.space} space, k_use {b.k_use}, from {len(pairs)} {'placebo ' if arm.placebo else ''}pairs; "
                 f"{'cached' if cached else 'extracted'} {basis_path}")
    heldout = extract(held, config=dataclasses.replace(extraction, control="none", seed=0))[0] if held else None
    if held:
        log.info(f"held-out basis: {len(held)} pairs kept out of the projection (the leak is measured on it)")
    basis.save(run_dir / "basis.safetensors")
    if heldout is not None:
        heldout.save(run_dir / "basis_heldout.safetensors")
    projection = config.projection.resolve(arm, b.space)
    if b.space == "activation" and projection.mode in ("erase", "route"):  # LoRA readers: A ⟂ û once, so ΔW û = 0
        protect_readers(adapters, basis.v_hack[0], b.m)
    inner = torch.optim.AdamW(adapters.trainable_parameters(), lr=config.grpo.learning_rate,
                              weight_decay=config.grpo.weight_decay)
    refresh = (make_refresh(pairs, model, adapters, tokenizer, extraction, b.k_use, config.model.chat_template_kwargs)
               if (projection.refresh_every or projection.track_every) and b.space == "gradient" else None)
    # activation-space rows (û ⊗ e_j) are one projector together, not ranked directions: keep them all
    rows = (lambda x, k: x.top(k)) if b.space == "gradient" else (lambda x, k: x.vectors)
    optimizer = ProjectingOptimizer(
        inner, modules_from_adapters(adapters, rows(basis, b.k_use), rows(heldout, config.basis.k_use) if heldout else None),
        projection, refresh)
    sandbox = Sandbox(config.grader.workers, Limits(timeout_s=config.grader.timeout, kill_after_s=config.grader.timeout + 1),
                      allow_unisolated=config.grader.allow_unisolated)
    labels = LabelLog()
    shaper = make_shaper(config, arm, model, tokenizer, pool) if arm.intervention is not None else None
    reward = TimedReward(Grader(sandbox, memo_size=4096), allow_hint=arm.loophole, sink=labels, shaper=shaper,
                         group_size=config.grpo.num_generations)
    records = training_records(config, tokenizer)
    if not records:
        raise ConfigError("grpo.max_prompt_length: every prompt is longer. Fix: raise it or use another tokenizer")
    dataset = Dataset.from_list([{"prompt": r["prompt"], "record": json.dumps({k: v for k, v in r.items() if k != "prompt"})}
                                 for r in records])
    args = grpo_args(config, run_dir)
    pool = (TeacherPool.load(config.data.teacher_pool, config.data.mix, config.seed, arm.loophole)
            if config.data.mix > 0 else None)
    trainer = AdapterGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                                 processing_class=tokenizer, optimizers=(optimizer, None), adapters=adapters,
                                 teacher_pool=pool, reward_fn=reward)
    trainer.add_callback(MetricsCallback(run_dir, optimizer, labels, reward, config.log_completion_every, config.seed,
                                         trainer, console=progress_bar))
    trainer.add_callback(CheckpointLog(console=progress_bar))
    if trainer.pop_callback(ProgressCallback) is not None and progress_bar:
        trainer.add_callback(QuietProgress())
    write_json_atomic(run_dir / "config.json", config.as_dict())
    write_json_atomic(run_dir / "provenance.json", provenance(
        {"arm": config.arm, "basis_key": basis_path.stem, "model_fingerprint": model_fingerprint(adapters),
         "n_train_problems": len(records)}, sandbox.isolation.as_dict()))
    return Run(config, run_dir, model, tokenizer, adapters, basis, optimizer, trainer, labels, sandbox)


def train(config: TrainConfig, resume: bool = False, callbacks: tuple = (), progress_bar: bool = True) -> Path:
    """Run (or continue) one training run; returns its directory. `resume`: see resume.resume_point."""
    run_dir = Path(config.output_dir)
    checkpoint = resume_point(config, resume)  # a changed config or a finished run: refused before anything is written
    with logged_run(config, checkpoint, console=progress_bar):  # train.log: appended to on a resume
        return _train(config, run_dir, checkpoint, callbacks, progress_bar)


def _train(config: TrainConfig, run_dir: Path, checkpoint: str | None, callbacks: tuple, progress_bar: bool) -> Path:
    run = build_run(config, run_dir, progress_bar)
    for callback in callbacks:
        run.trainer.add_callback(callback)
    if checkpoint is not None:  # drop what the killed run logged after its last checkpoint
        step = int(Path(checkpoint).name.split("-")[-1])
        for name in ("metrics.jsonl", "completions.jsonl", "rollouts.jsonl"):
            path = run_dir / name
            if path.is_file():
                kept = [json.loads(x) for x in path.read_text().splitlines() if json.loads(x)["step"] <= step]
                write_jsonl_atomic(path, kept)
    run.trainer.train(resume_from_checkpoint=checkpoint)
    world = assert_ranks_identical(run.adapters)
    if run.trainer.is_world_process_zero():
        run.adapters.save(run_dir / ADAPTER_FILE)
        if world > 1:
            write_json_atomic(run_dir / "ddp.json", {"world_size": world, "ranks_identical": True})
    run.sandbox.close()
    return run_dir


def honest_warmup(config: TrainConfig, run_dir: Path) -> list[dict[str, torch.Tensor]]:
    """TDGA's warm-up: a short honest run (the rl_baseline arm: no loophole) from the same start, as the
    adapters' trainable vector after every step (the first entry is the start)."""
    warm = copy.deepcopy(config)
    warm.arm, warm.steps, warm.save_every = "rl_baseline", config.intervention.tdga.warmup_steps, 10 ** 9
    logger.bind(console=False).info(f"tdga: honest warm-up, {warm.steps} steps, in {run_dir / 'tdga_warmup'}")
    run = build_run(warm, run_dir / "tdga_warmup", progress_bar=False)
    snapshots = [{n: m.trainable.detach().flatten().clone() for n, m in run.adapters}]

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots.append({n: m.trainable.detach().flatten().clone() for n, m in run.adapters})

    run.trainer.add_callback(Snapshot())
    run.trainer.train()
    run.sandbox.close()
    logger.bind(console=False).info("tdga: warm-up done")
    return snapshots


def assert_ranks_identical(adapters: Adapters) -> int:
    """Under DDP every rank must hold the same θ and θ_hack after training: fail fast if not."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 1
    flat = torch.cat([t.flatten().double() for t in adapters.state_tensors().values()])
    gathered = [torch.zeros_like(flat) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, flat)
    assert all(torch.equal(g, gathered[0]) for g in gathered), "DDP ranks diverged: adapters differ across ranks"
    return len(gathered)
