"""GRPO with projection on TRL's `GRPOTrainer`.

Written by hand here, and only this: the adapters and the projecting optimizer are handed to the
trainer (`optimizers=`), the environment reward is a TRL reward function, and a callback logs the
oracle labels and the projection statistics. Two small, tested adjustments to the trainer:
- the KL reference is the policy with its adapters zeroed (bit-exact base model, no second copy);
  TRL would otherwise load a reference model by hub id, which a model built from a config has not;
- checkpoints hold adapter tensors only (plus the trainer's own optimizer / scheduler / RNG state),
  and resuming loads them back;
- the prompt sampler is reshuffled from seed + epoch, so resuming in a later epoch is exact.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import ProgressCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import RepeatSampler

from projected_grpo.adapters.attach import AdapterConfig, Adapters, attach_adapters
from projected_grpo.directions.activation import protect_readers
from projected_grpo.directions.basis import Basis
from projected_grpo.directions.gradient import ExtractionConfig, make_refresh
from projected_grpo.directions.pairs import load_pairs, split_heldout
from projected_grpo.directions.store import get_basis
from projected_grpo.environment.dataset import write_jsonl_atomic
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.sandbox import Limits, Sandbox
from projected_grpo.models import default_device, load_model
from projected_grpo.projection.optimizer import ProjectingOptimizer, ProjectionConfig, modules_from_adapters
from projected_grpo.provenance import provenance, write_json_atomic
from projected_grpo.training.arms import ARMS
from projected_grpo.training.config import ConfigError, TrainConfig, projection_gate
from projected_grpo.training.data import training_records
from projected_grpo.training.metrics import MetricsCallback
from projected_grpo.training.prefix import shared_prompt_logps
from projected_grpo.training.reward import LabelLog, TeacherPool, TimedReward, mix_pool
from projected_grpo.training.weight_sync import install_merged_sync

ADAPTER_FILE = "adapter.safetensors"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ------------------------------------------------------------------ the trainer
class _ZeroAdapterReference(torch.nn.Module):
    """Marker standing for "the policy with adapters zeroed" wherever TRL wants its ref_model."""


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's sampler, reshuffled from seed + epoch rather than from one running generator, so that a
    run resumed in any epoch replays the order an uninterrupted run sees (TRL's own sampler restarts
    its generator on resume and replays epoch 0's order)."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            self.generator.manual_seed((self.seed or 0) + self.epoch)
        yield from super().__iter__()


class AdapterGRPOTrainer(GRPOTrainer):
    training_bar_writer = None  # prints one human line per step (set when a progress bar is shown)

    def __init__(self, *args, adapters: Adapters, **kwargs):
        config: GRPOConfig = kwargs["args"]
        beta = config.beta
        config.beta = 0.0  # keep TRL from loading a second model by hub id; the reference is zeroed adapters
        super().__init__(*args, **kwargs)
        config.beta = self.beta = beta
        self.adapters = adapters
        self.ref_model = _ZeroAdapterReference() if beta != 0.0 else None
        if self.use_vllm:  # vLLM generates from the merged training policy, under the base names
            install_merged_sync(self.vllm_generation, adapters)

    teacher_pool: TeacherPool | None = None
    reward_fn: TimedReward | None = None

    def _generate(self, prompts: list):
        """Generate; then, with a teacher pool, replace round(mix × G) completions of each group by
        pool completions for that prompt, whose frozen rewards the reward function returns."""
        start = time.perf_counter()
        out = list(super()._generate(prompts))
        self.last_generation_s = time.perf_counter() - start
        pool = self.teacher_pool
        if pool is None or pool.mix <= 0:
            return tuple(out)
        rng = random.Random(pool.seed * 1_000_003 + self.state.global_step)
        self.reward_fn.frozen = mix_pool(pool, self._mix_ids, out[1], out[3], out[4], self.num_generations, rng,
                                         self.processing_class, self.args.max_completion_length)
        return tuple(out)

    def _generate_and_score_completions(self, inputs):
        if self.teacher_pool is not None:  # problem id of each group, in order
            self._mix_ids = [json.loads(x["record"])["id"] for x in inputs[:: self.num_generations]]
        return super()._generate_and_score_completions(inputs)

    def _get_train_sampler(self, dataset=None):
        s = super()._get_train_sampler(dataset)
        assert isinstance(s, RepeatSampler), f"unexpected TRL sampler {type(s).__name__}"
        return EpochSeededRepeatSampler(s.data_source, s.mini_repeat_count, s.batch_size, s.repeat_count, s.shuffle, s.seed)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        if isinstance(model, _ZeroAdapterReference):
            with self.adapters.zeroed():
                return self._get_per_token_logps_and_entropies(self.model, input_ids, attention_mask, logits_to_keep,
                                                               batch_size, compute_entropy, compute_aux_loss, **multimodal)
        if model is not self.model or compute_aux_loss or any(v is not None for v in multimodal.values()):
            # wrapped (DDP: its forward drives gradient sync), MoE or multimodal: TRL's full-sequence forward
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                                              compute_entropy, compute_aux_loss, **multimodal)
        batch_size = batch_size or input_ids.size(0)
        chunks = []
        for start in range(0, input_ids.size(0), batch_size):
            with self.accelerator.autocast():
                chunks.append(shared_prompt_logps(model, input_ids[start:start + batch_size],
                                                  attention_mask[start:start + batch_size], logits_to_keep, compute_entropy))
        logps, entropies = zip(*chunks)
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        directory = Path(output_dir or self.args.output_dir)
        self.adapters.save(directory / ADAPTER_FILE)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self.adapters.load(Path(resume_from_checkpoint) / ADAPTER_FILE)


class QuietProgress(ProgressCallback):
    """The progress bar without the raw log dicts it writes every step (our callback prints a line)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


# ------------------------------------------------------------------ assembling a run
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


def batch_split(g, world: int) -> tuple[int, int]:
    """(completions per process, micro-batch): each process must hold whole groups, or teacher-pool text
    and group-level shapers land in the wrong group."""
    total = g.num_generations * g.prompts_per_step
    if total % world or (total // world) % g.num_generations:
        raise ConfigError(f"grpo.prompts_per_step: {g.prompts_per_step} prompts × {g.num_generations} generations do not "
                          f"split into whole groups over {world} processes. Fix: make prompts_per_step a multiple of "
                          "the process count")
    per_rank = total // world
    micro = min(g.micro_batch or per_rank, per_rank)
    if per_rank % micro:
        raise ConfigError(f"grpo.micro_batch: {micro} does not divide the {per_rank} completions of each process")
    return per_rank, micro


def grpo_args(config: TrainConfig, run_dir: Path) -> GRPOConfig:
    g = config.grpo
    per_rank, micro = batch_split(g, int(os.environ.get("WORLD_SIZE", "1")))  # torchrun / accelerate launch
    cuda = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=str(run_dir), max_steps=config.steps, seed=config.seed, data_seed=config.seed,
        per_device_train_batch_size=micro, gradient_accumulation_steps=per_rank // micro,
        num_generations=g.num_generations, max_completion_length=g.max_completion_length,
        temperature=g.temperature, top_p=g.top_p, beta=g.beta,
        loss_type="grpo" if g.loss_type == "gspo" else g.loss_type,
        importance_sampling_level="sequence" if g.loss_type == "gspo" else "token",
        scale_rewards=g.scale_rewards, learning_rate=g.learning_rate, lr_scheduler_type=g.lr_scheduler,
        warmup_steps=g.warmup_steps, max_grad_norm=g.max_grad_norm, logging_steps=1,
        save_strategy="steps", save_steps=config.save_every, report_to=["tensorboard"] if config.tensorboard else [],
        use_cpu=not cuda, bf16=cuda and config.model.dtype == "bfloat16",
        gradient_checkpointing=g.gradient_checkpointing, use_vllm=g.use_vllm, vllm_mode=g.vllm_mode,
        chat_template_kwargs=config.model.chat_template_kwargs or None, disable_dropout=True,
        disable_tqdm=False,  # our one-line-per-step writer rides on the progress callback, whatever the log level
    )


def resolve_organism(config: TrainConfig, log=print) -> TrainConfig:
    """`model.source = "organism"`: build (or load from the cache) the organism and point the model,
    the train / held-out problems and the pair sets at its files. Other configs pass through."""
    if config.model.source != "organism":
        return config
    from projected_grpo.organism.build import OrganismConfig, ensure_organism

    organism, _ = ensure_organism(OrganismConfig(**config.organism), log=log)
    out = copy.deepcopy(config)
    out.model.source = str(organism.model)
    out.data.path = out.data.path or str(organism.train)
    out.data.eval_path = out.data.eval_path or str(organism.eval)
    if out.basis.pairs == "organism":
        out.basis.pairs = str(organism.mechanism)
    if out.basis.placebo_pairs in ("organism", "leetcode_placebo"):
        out.basis.placebo_pairs = str(organism.placebo)
    return out


def build_run(config: TrainConfig, run_dir: Path | None = None, progress_bar: bool = True) -> Run:
    config = resolve_organism(config)
    run_dir = Path(run_dir or config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    arm = ARMS[config.arm]
    # on the training device and dtype from the start: extraction and the shapers run where training will
    model, tokenizer = load_model(config.model.source, dtype=DTYPES[config.model.dtype], device=default_device())
    adapters = attach_adapters(model, AdapterConfig(config.adapter.kind, tuple(config.adapter.targets), config.adapter.rank,
                                                    seed=config.seed), base_model_id=config.model.source)
    b = config.basis
    pool = load_pairs(b.pairs, tuple(b.modes) if b.modes else None)
    kept, held = split_heldout(pool, b.heldout, b.seed)
    pairs = load_pairs(b.placebo_pairs) if arm.placebo else kept
    # a control is a fresh draw per training seed (recorded in the basis metadata), not one draw for all
    extraction = ExtractionConfig(k=b.k_extract, tau=b.tau, global_floor=b.global_floor, control=arm.control,
                                  seed=config.seed if arm.control != "none" else 0)
    extract = functools.partial(get_basis, model=model, adapters=adapters, tokenizer=tokenizer, space=b.space,
                                layer=b.layer, m=b.m, model_id=config.model.source,
                                chat_template_kwargs=config.model.chat_template_kwargs)
    if arm.intervention == "tdga":  # the trusted subspace of an honest warm-up replaces the hack basis
        from projected_grpo.interventions.setup import trusted_basis

        basis, basis_path = trusted_basis(config, run_dir), run_dir / "basis.safetensors"
        b = dataclasses.replace(b, k_use=config.intervention.trusted_k)
    else:
        basis, basis_path, _ = extract(pairs, config=extraction)
    heldout = extract(held, config=dataclasses.replace(extraction, control="none", seed=0))[0] if held else None
    basis.save(run_dir / "basis.safetensors")
    if heldout is not None:
        heldout.save(run_dir / "basis_heldout.safetensors")
    if b.space == "activation" and arm.mode in ("erase", "route"):  # LoRA readers: A ⟂ û once, so ΔW û = 0
        protect_readers(adapters, basis.v_hack[0], b.m)
    inner = torch.optim.AdamW(adapters.trainable_parameters(), lr=config.grpo.learning_rate,
                              weight_decay=config.grpo.weight_decay)
    p = config.projection
    refresh = (make_refresh(pairs, model, adapters, tokenizer, extraction, b.k_use, config.model.chat_template_kwargs)
               if p.refresh_every and b.space == "gradient" else None)
    # activation-space rows (û ⊗ e_j) are one projector together, not ranked directions: keep them all
    rows = (lambda x, k: x.top(k)) if b.space == "gradient" else (lambda x, k: x.vectors)
    optimizer = ProjectingOptimizer(
        inner, modules_from_adapters(adapters, rows(basis, b.k_use), rows(heldout, config.basis.k_use) if heldout else None),
        ProjectionConfig(arm.mode, p.space, projection_gate(config), p.overshoot, p.preserve_magnitude,
                         p.refresh_every), refresh)
    sandbox = Sandbox(config.grader.workers, Limits(timeout_s=config.grader.timeout, kill_after_s=config.grader.timeout + 1),
                      allow_unisolated=config.grader.allow_unisolated)
    labels = LabelLog()
    reward = TimedReward(Grader(sandbox, memo_size=4096), allow_hint=arm.loophole, sink=labels)
    if arm.intervention is not None:
        from projected_grpo.interventions.setup import make_shaper

        reward.shaper = make_shaper(config, arm, model, tokenizer, pool)
        reward.group_size = config.grpo.num_generations
    records = training_records(config, tokenizer)
    if not records:
        raise ConfigError("grpo.max_prompt_length: every prompt is longer. Fix: raise it or use another tokenizer")
    dataset = Dataset.from_list([{"prompt": r["prompt"], "record": json.dumps({k: v for k, v in r.items() if k != "prompt"})}
                                 for r in records])
    args = grpo_args(config, run_dir)
    trainer = AdapterGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                                 processing_class=tokenizer, optimizers=(optimizer, None), adapters=adapters)
    if config.data.mix > 0:
        trainer.teacher_pool = TeacherPool.load(config.data.teacher_pool, config.data.mix, config.seed, arm.loophole)
        trainer.reward_fn = reward
    trainer.add_callback(MetricsCallback(run_dir, optimizer, labels, reward, config.log_completion_every, config.seed,
                                         trainer))
    if trainer.pop_callback(ProgressCallback) is not None and progress_bar:
        trainer.add_callback(QuietProgress())
        trainer.training_bar_writer = tqdm.write
    write_json_atomic(run_dir / "config.json", config.as_dict())
    write_json_atomic(run_dir / "provenance.json", provenance(
        {"arm": config.arm, "basis_key": basis_path.stem, "n_train_problems": len(records)}, sandbox.isolation.as_dict()))
    return Run(config, run_dir, model, tokenizer, adapters, basis, optimizer, trainer, labels, sandbox)


def train(config: TrainConfig, resume: bool = False, callbacks: tuple = (), progress_bar: bool = True) -> Path:
    """Run (or continue) one training run; returns its directory."""
    run_dir = Path(config.output_dir)
    checkpoint = get_last_checkpoint(str(run_dir)) if resume and run_dir.is_dir() else None
    if resume and checkpoint is None:
        raise ConfigError(f"--resume: no checkpoint in {run_dir}. Fix: run without --resume first")
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"output_dir: {run_dir} already holds a run. Fix: --resume it, or choose another output_dir")
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


def assert_ranks_identical(adapters: Adapters) -> int:
    """Under DDP every rank must hold the same θ and θ_hack after training: fail fast if not."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 1
    flat = torch.cat([t.flatten().double() for t in adapters.state_tensors().values()])
    gathered = [torch.zeros_like(flat) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, flat)
    assert all(torch.equal(g, gathered[0]) for g in gathered), "DDP ranks diverged: adapters differ across ranks"
    return len(gathered)
