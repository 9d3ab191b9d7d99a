"""TRL's `GRPOTrainer` with three small, tested adjustments (docs/training.md), and the mapping of our
config onto `GRPOConfig`:
- the KL reference is the policy with its adapters zeroed (bit-exact base model, no second copy);
  TRL would otherwise load a reference model by hub id, which a model built from a config has not;
- checkpoints hold adapter tensors only (plus the trainer's own optimizer / scheduler / RNG state),
  and resuming loads them back;
- the prompt sampler is reshuffled from seed + epoch, so resuming in a later epoch is exact.
Generation with transformers keeps its key/value cache in place (`kv_cache.py`: the same tokens, faster).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import torch
from transformers import ProgressCallback
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import RepeatSampler

from projected_grpo.adapters.attach import Adapters
from projected_grpo.errors import ConfigError
from projected_grpo.training.config import TrainConfig
from projected_grpo.training.kv_cache import generate_with_growing_cache
from projected_grpo.training.prefix import shared_prompt_logps
from projected_grpo.training.reward import TeacherPool, TimedReward, mix_pool
from projected_grpo.training.weight_sync import install_merged_sync

ADAPTER_FILE = "adapter.safetensors"


class _ZeroAdapterReference(torch.nn.Module):
    """Marker standing for "the policy with adapters zeroed" wherever TRL wants its ref_model."""


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's sampler, reshuffled from seed + epoch rather than from one running generator, so that a
    run resumed in any epoch replays the order an uninterrupted run sees (TRL's own sampler restarts
    its generator on resume and replays epoch 0's order)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            self.generator.manual_seed((self.seed or 0) + self.epoch)
        yield from super().__iter__()


class AdapterGRPOTrainer(GRPOTrainer):
    """TRL's trainer with the adapters, the zero-adapter KL reference, adapter-only checkpoints, the
    epoch-seeded sampler, the shared-prompt log-prob forward and (optionally) a teacher pool.

    With a teacher pool, `reward_fn` is told which completions carry frozen pool rewards."""

    def __init__(self, *args, adapters: Adapters, teacher_pool: TeacherPool | None = None,
                 reward_fn: TimedReward | None = None, **kwargs):
        config: GRPOConfig = kwargs["args"]
        beta = config.beta
        config.beta = 0.0  # keep TRL from loading a second model by hub id; the reference is zeroed adapters
        super().__init__(*args, **kwargs)
        config.beta = self.beta = beta
        self.adapters, self.teacher_pool, self.reward_fn = adapters, teacher_pool, reward_fn
        self.last_generation_s = 0.0
        self.ref_model = _ZeroAdapterReference() if beta != 0.0 else None
        if self.use_vllm:  # vLLM generates from the merged training policy, under the base names
            install_merged_sync(self.vllm_generation, adapters)
        else:
            generate_with_growing_cache(self.model)

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

    def create_model_card(self, *args, **kwargs) -> None:
        """No hub model card: TRL writes a README.md into the run directory at every checkpoint ("fine-tuned
        version of [None]"); a run's record is its config.json and provenance.json."""

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        directory = Path(output_dir or self.args.output_dir)
        self.adapters.save(directory / ADAPTER_FILE)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self.adapters.load(Path(resume_from_checkpoint) / ADAPTER_FILE)


class QuietProgress(ProgressCallback):
    """The progress bar without the raw log dicts it writes every step (our callback logs a line)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


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
