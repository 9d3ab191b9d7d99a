"""Named starting points for a run's configuration (`--preset NAME`, or `preset = "NAME"` in a file)."""

from __future__ import annotations

AUTHORED = "authored"  # data.path naming the project's own problems (training/data.py)

PRESETS: dict[str, dict] = {
    "tiny": {  # CI: the real pipeline on a tiny model from config and a few of the project's own problems
        "steps": 3, "save_every": 2, "log_completion_every": 1, "output_dir": "runs/tiny",
        "model": {"source": "tiny-qwen3"},
        "basis": {"k": 4, "k_use": 2, "global_floor": 0.0},
        "data": {"path": AUTHORED, "n_problems": 4},
        "grpo": {"num_generations": 4, "prompts_per_step": 2, "max_completion_length": 48, "max_prompt_length": 4096,
                 "learning_rate": 1e-2, "warmup_steps": 0, "temperature": 1.0, "top_p": 1.0},
        "grader": {"workers": 2},
    },
    "ariahw-qwen3-4b": {  # the reference's settings (Ariahw, Engels & Nanda 2025), for GPU users
        "steps": 200, "save_every": 50, "output_dir": "runs/ariahw-qwen3-4b",
        "model": {"source": "Qwen/Qwen3-4B", "dtype": "bfloat16", "chat_template_kwargs": {"enable_thinking": False}},
        # loss: the reference (verl) takes the token mean per micro-batch, which is TRL's bnpo, not grpo
        "grpo": {"loss_type": "bnpo", "scale_rewards": "group", "beta": 1e-3, "learning_rate": 7e-5, "lr_scheduler": "cosine",
                 "warmup_steps": 10, "weight_decay": 0.1, "max_grad_norm": 1.0, "num_generations": 16,
                 "prompts_per_step": 16, "micro_batch": 8, "max_prompt_length": 1536, "max_completion_length": 1536,
                 "temperature": 0.7, "top_p": 0.95, "gradient_checkpointing": True},
        "grader": {"workers": 16},
    },
    "organism": {  # the CPU model organism (built on first use, then cached): hacking emerges in minutes
        "steps": 30, "save_every": 10, "log_completion_every": 5, "output_dir": "runs/organism",
        "model": {"source": "organism"},
        "basis": {"pairs": "organism", "k": 8, "k_use": 4, "global_floor": 0.0},
        "grpo": {"loss_type": "dr_grpo", "num_generations": 8, "prompts_per_step": 8, "max_completion_length": 64,
                 "max_prompt_length": 512, "learning_rate": 5e-2, "lr_scheduler": "constant", "warmup_steps": 0,
                 "weight_decay": 0.0, "temperature": 1.0, "top_p": 1.0},
        "grader": {"workers": 2},
    },
    "smollm2-135m": {  # a real LM offline: `projected-grpo models fetch smollm2-135m` first (docs/real_models.md)
        "steps": 100, "save_every": 25, "output_dir": "runs/smollm2-135m",
        "model": {"source": "smollm2-135m"},
        "grpo": {"num_generations": 8, "prompts_per_step": 4, "max_completion_length": 512, "learning_rate": 1e-3,
                 "warmup_steps": 5},
    },
}
# The organism whose base policy writes each exploit in ≥ 8 surface forms (organism/exploit_forms.py): a fairer
# test bed for probes and judges. Its own cached build and priors; longer completions for the longer forms; a hack
# share of 0.3 in the base policy's mixture (0.1 spread over >= 8 forms left ~0 % sampled hacks: docs/organism.md).
PRESETS["organism-diverse"] = {**PRESETS["organism"], "output_dir": "runs/organism-diverse",
                               "organism": {"exploits": "diverse", "hack_rate": 0.3},  # at 0.1 hacking never took off
                               "grpo": {**PRESETS["organism"]["grpo"], "max_completion_length": 96}}


# Fields a preset cannot supply but needs: (field, why, fix). Checked after every source has merged.
PRESET_NEEDS: dict[str, tuple[str, str, str]] = {
    "ariahw-qwen3-4b": ("data.path", "missing; the reference trained on its ~992 *train* problems, which this project "
                        "does not ship, and without data.path the run would train on the reference test set",
                        'set data.path to the reference train JSONL (no-hint records), and data.eval_path to '
                        'leetcode_test_medhard.jsonl to evaluate on the test set as the reference did'),
}
