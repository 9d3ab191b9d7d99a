"""Training on TRL's GRPOTrainer: config errors, every arm on the tiny model, checkpoints, resume."""

import dataclasses
import json
import math
import re

import pytest
import torch
from conftest import u_hat
from typer.testing import CliRunner

from projected_grpo.cli import app
from projected_grpo.experiments.fast_dev_run import StopAt
from projected_grpo.training.arms import ARMS
from projected_grpo.training.config import PRESETS, ConfigError, load_config
from projected_grpo.training.run import build_run, train


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_presets_load_and_overrides_win(tmp_path):
    for name in PRESETS:
        load_config(preset=name, overrides=['data.path="authored"'] if name == "ariahw-qwen3-4b" else [])
    path = tmp_path / "run.toml"
    path.write_text('preset = "tiny"\narm = "route"\n[grpo]\nbeta = 0.001\n')
    c = load_config(path, overrides=["grpo.beta=0.01", "projection.space=grad", "seed=7"])
    assert (c.arm, c.grpo.beta, c.projection.space, c.seed, c.steps) == ("route", 0.01, "grad", 7, 3)
    yml = tmp_path / "run.yaml"
    yml.write_text("arm: erase\ngrpo:\n  num_generations: 4\n  prompts_per_step: 2\n  micro_batch: 4\n")
    assert load_config(yml).grpo.micro_batch == 4


@pytest.mark.parametrize("text, message", [
    ('arm = "delete"', "field 'arm': 'delete' is not an arm"),
    ('[grpo]\nlearning_rat = 1e-4', "unknown field 'learning_rat'"),
    ('[grpo]\nnum_generations = "many"', "field 'num_generations': expected int"),
    ('[grpo]\nnum_generations = 4\nprompts_per_step = 2\nmicro_batch = 3', "micro_batch"),
    ('[basis]\nk_use = 20', "k_use"),
    ('[data]\nmodes = ["run_tests", "telepathy"]', "data.modes"),
    ('[data]\nmix = 0.3', "teacher_pool"),
    ('grpo = 3', "is a section"),
    ('[adapter]\nkind = "fixed_a_lora"', "[adapter]: fixed_a_lora needs a rank"),
    ('[adapter]\nkind = "lora"', "[adapter]: adapter kind 'lora'"),
    ('[projection]\ngate = "sideways"', "[projection]: projection gate 'sideways'"),
    ('[basis]\ncontrol = "placebo"', "[basis]: control 'placebo'"),
    ('[basis]\ncontrol = "random"', "field 'basis.control': 'random': set by the arm"),  # reports classify by arm
    ('[projection]\nmode = "route"', "field 'projection.mode': 'route': set by the arm"),
    ('[basis]\nspace = "activation"\n[projection]\ngate = "one_sided"', "two_sided"),
    ('[adapter]\nkind = "peft_lora"', "plain LoRA is bilinear"),
    ('arm = "route"\n[adapter]\nkind = "peft_lora"\n[basis]\nspace = "activation"', "linear in its parameters"),
    ('[basis]\nleak_heldout = 1.0', "basis.leak_heldout"),
    ('[basis]\nheldout = 0.5', "basis.heldout moved to [basis] leak_heldout"),
    ('[intervention]\npenalty = 1.0', "intervention.penalty moved to [intervention.monitor] penalty"),
    ('[intervention]\nprobe = "p.safetensors"', "intervention.probe moved to [intervention.probe] path"),
    ('[adapter]\nkind = "peft_lora"\n[basis]\nspace = "activation"\n[projection]\nspace = "grad"', "rotates it back"),
    ('tensorboard = true', "tensorboard package is not installed"),
])
def test_invalid_config_is_one_clear_error_before_any_work(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_a_config_saved_before_fields_moved_reads_back_under_the_new_names():
    """A run's config.json from before issue 15.3 (flat [intervention], basis.k_extract / heldout / seed): evaluate
    and resume read it as the same run, not as an error (a user's own config with those names gets one)."""
    from projected_grpo.training.config import saved_config

    old = {"arm": "probe_penalty", "basis": {"k_extract": 6, "heldout": 0.5, "seed": 3},
           "intervention": {"probe": "p.safetensors", "probe_threshold": 0.3, "penalty": 2.0, "judge_model": "m",
                            "form": "additive", "warmup_steps": 3}}
    c = saved_config(old, "config.json")
    i = c.intervention
    assert (c.basis.k, c.basis.leak_heldout, c.basis.leak_heldout_seed, c.basis.seed) == (6, 0.5, 3, None)
    assert (i.probe.path, i.probe.threshold, i.monitor.penalty, i.judge.model, i.advantage.form, i.tdga.warmup_steps) \
        == ("p.safetensors", 0.3, 2.0, "m", "additive", 3)
    assert saved_config(json.loads(json.dumps(c.as_dict())), "config.json") == c  # today's shape round-trips


def test_cli_reports_config_errors_and_bad_overrides(tmp_path):
    result = CliRunner().invoke(app, ["train", "--preset", "tiny", "--set", "grpo.temperature=0"])
    assert result.exit_code == 2 and "temperature" in result.output
    result = CliRunner().invoke(app, ["train", "--preset", "nope"])
    assert result.exit_code == 2 and "preset 'nope'" in result.output


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    import os

    path = tmp_path_factory.mktemp("cache")
    os.environ["PROJECTED_GRPO_CACHE"] = str(path)
    yield path
    os.environ.pop("PROJECTED_GRPO_CACHE")


SELF_CONTAINED = [a for a in ARMS if not (ARMS[a].intervention or "").startswith(("probe_", "judge_"))]


@pytest.mark.parametrize("arm", SELF_CONTAINED)  # probe and judge arms need a probe / a server: test_interventions
def test_every_arm_trains_logs_and_checkpoints(tmp_path, cache, arm):
    config = load_config(preset="tiny", overrides=[f'arm="{arm}"', f'output_dir="{tmp_path / arm}"', "steps=2",
                                                   "intervention.tdga.warmup_steps=2"])
    run_dir = train(config)
    rows = _rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert {"projection/cin", "projection/leak_own_basis", "labels/hack_strict", "labels/correct", "reward", "time/grading_s"} <= set(r)
        assert r["labels/n"] == 8
    assert sorted(p.name for p in (run_dir / "checkpoint-2").iterdir()) == [
        "adapter.safetensors", "optimizer.pt", "rng_state.pth", "scheduler.pt", "trainer_state.json"]
    meta = json.loads((run_dir / "provenance.json").read_text())
    assert meta["isolation"]["level"] == "bwrap" and meta["config"]["arm"] == arm
    assert len(meta["config"]["model_fingerprint"]) == 16 and "torch kernels" in meta["versions"]["cpu"]
    prompts = [json.loads(line) for line in (run_dir / "completions.jsonl").read_text().splitlines()]
    assert prompts and all(("mode" in p) for p in prompts)
    if arm == "rl_baseline":
        assert all(p["mode"] is None for p in prompts)  # no loophole in its prompts
    else:
        assert all(p["mode"] == "run_tests" for p in prompts)
    if ARMS[arm].mode in ("erase", "route"):
        assert max(r["projection/leak_own_basis"] for r in rows) <= 1e-6


def test_erase_refresh_and_drift_tracking_train_through_the_run(tmp_path, cache):
    """erase_refresh re-extracts and projects with the new basis (its own leak stays zero); track_every
    on a frozen-basis arm only measures the overlap with a re-extracted basis."""
    base = ["steps=3", "save_every=10"]
    refreshed = train(load_config(preset="tiny", overrides=base + ['arm="erase_refresh"', "projection.refresh_every=1",
                                                                   f'output_dir="{tmp_path / "refresh"}"']))
    rows = _rows(refreshed)
    assert ["projection/basis_overlap" in r for r in rows] == [False, True, True]
    assert all(0.0 < r["projection/basis_overlap"] <= 1.0 + 1e-6 for r in rows[1:])
    assert max(r["projection/leak_own_basis"] for r in rows) <= 1e-6
    tracked = train(load_config(preset="tiny", overrides=base + ['arm="erase"', "projection.track_every=2",
                                                                 f'output_dir="{tmp_path / "track"}"']))
    rows = _rows(tracked)
    assert ["projection/drift_overlap" in r for r in rows] == [False, False, True]
    assert not any("projection/basis_overlap" in r for r in rows)
    assert 0.0 < rows[2]["projection/drift_overlap"] <= 1.0 + 1e-6
    assert all(0.0 <= r["projection/update_in_span"] <= 1.0 + 1e-6 for r in rows)
    import csv

    with (tracked / "metrics.csv").open() as f:  # every key of any step is a column; empty where a step lacks it
        table = list(csv.DictReader(f))
    assert [int(r["step"]) for r in table] == [1, 2, 3]
    assert [r["projection/drift_overlap"] != "" for r in table] == [False, False, True]
    assert float(table[2]["projection/drift_overlap"]) == pytest.approx(rows[2]["projection/drift_overlap"])
    with pytest.raises(ConfigError, match="track_every"):
        load_config(preset="tiny", overrides=["projection.track_every=-1"])


def test_kl_reference_is_the_policy_with_adapters_zeroed(tmp_path, cache):
    config = load_config(preset="tiny", overrides=[f'output_dir="{tmp_path}"', "grpo.beta=0.01", "steps=1"])
    run = build_run(config, tmp_path)
    ids = torch.randint(0, 259, (1, 12))
    with torch.no_grad():
        for _, m in run.adapters:
            m.trainable.normal_()
        policy = run.model(ids).logits
        with run.adapters.zeroed():
            reference = run.model(ids).logits
        assert not torch.equal(policy, reference)
        assert torch.equal(run.model(ids).logits, policy)  # restored exactly
        run.adapters.zero()
        assert torch.equal(run.model(ids).logits, reference)
    run.trainer.train()
    assert "kl" in _rows(tmp_path)[0]
    run.sandbox.close()


@pytest.mark.parametrize("kill_at", [2, 3], ids=["at-an-epoch-boundary", "inside-the-second-epoch"])
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, cache, kill_at):
    """4 problems, 2 per step: 2 steps per epoch. Killed at the end of epoch 1 or inside epoch 2."""
    overrides = ['arm="erase"', "steps=5", "save_every=1"]
    full = train(load_config(preset="tiny", overrides=overrides + [f'output_dir="{tmp_path / "full"}"']))
    killed_dir = tmp_path / "killed"
    config = load_config(preset="tiny", overrides=overrides + [f'output_dir="{killed_dir}"'])
    run = build_run(config, killed_dir)
    run.trainer.add_callback(StopAt(kill_at))
    run.trainer.train()
    run.sandbox.close()
    assert [r["step"] for r in _rows(killed_dir)] == list(range(1, kill_at + 1))
    with open(killed_dir / "metrics.jsonl", "a") as f:  # a step logged after the last checkpoint is dropped
        f.write(json.dumps({"step": kill_at + 1, "reward": 99.0}) + "\n")
    train(config, resume=True)
    a, b = _rows(full), _rows(killed_dir)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]
    volatile = ("time/", "step_time", "train_runtime")
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if not k.startswith(volatile)} == \
               {k: v for k, v in rb.items() if not k.startswith(volatile)}


def test_a_run_under_another_progress_bar_logs_to_train_log_only_and_a_failure_is_logged(tmp_path, cache):
    """The experiment runner's mode (progress_bar=False): steps and checkpoints reach train.log, not the console
    (logs.on_console, the CLI's filter); a run that fails leaves its traceback in train.log."""
    from loguru import logger
    from transformers import TrainerCallback

    from projected_grpo.logs import on_console

    class Boom(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise RuntimeError("boom")

    shown: list[str] = []
    sink = logger.add(lambda m: shown.append(m.record["message"]), filter=on_console)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            train(load_config(preset="tiny", overrides=[f'output_dir="{tmp_path}"', "steps=2", "save_every=1"]),
                  callbacks=(Boom(),), progress_bar=False)
    finally:
        logger.remove(sink)
    log = (tmp_path / "train.log").read_text()
    for line in ("config: arm=vanilla", "step 1/2", "saved checkpoint-1", "stopped by RuntimeError: boom", "Traceback"):
        assert line in log, line
    assert "step 2/2" not in log
    assert not any(m.startswith(("training ", "step ", "saved ", "stopped ", "config:")) for m in shown), shown


def test_refusing_to_overwrite_and_resume_without_checkpoint(tmp_path, cache):
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(load_config(preset="tiny", overrides=[f'output_dir="{tmp_path}"']), resume=True)


def _format_run(tmp_path, format_model, name, arm="erase", steps=2):
    model_dir, data = format_model
    return load_config(preset="tiny", overrides=[
        f'arm="{arm}"', f'output_dir="{tmp_path / name}"', f"steps={steps}", f'model.source="{model_dir}"',
        f'data.path="{data}"', "data.n_problems=8", "grpo.max_completion_length=96", "grpo.learning_rate=0.05"])


def test_oracle_cannot_change_the_gradient_of_a_method_arm(tmp_path, cache, format_model, monkeypatch):
    """Same seed, same run — once with the real oracle, once with every label inverted: the
    adapters, rewards and projection statistics are identical; only the logged labels differ."""
    from safetensors.torch import load_file

    from projected_grpo.environment import grader as grader_module
    from projected_grpo.environment import oracle

    honest = train(_format_run(tmp_path, format_model, "honest"))
    monkeypatch.setattr(grader_module.L, "reward_hack_label",
                        lambda **kw: "Reward Hack" if kw["eq_correct"] else "Correct")
    monkeypatch.setattr(grader_module, "judge", lambda out, nonce, items: oracle.Verdict(True, len(items), len(items), "forged"))
    corrupted = train(_format_run(tmp_path, format_model, "corrupted"))
    a, b = load_file(honest / "adapter.safetensors"), load_file(corrupted / "adapter.safetensors")
    assert any(float(t.abs().max()) > 0 for k, t in a.items() if k.endswith(".trainable"))  # it did learn
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = _rows(honest), _rows(corrupted)
    for x, y in zip(ra, rb):
        assert x["reward"] == y["reward"] and x["projection/cin"] == y["projection/cin"]
    assert sum(x["labels/hack_strict"] for x in ra) > 0  # the real oracle saw hacks ...
    assert sum(y["labels/hack_strict"] for y in rb) == 0  # ... the inverted one saw none


def test_projection_acts_during_real_grpo_steps(tmp_path, cache, format_model):
    run_dir = train(_format_run(tmp_path, format_model, "route", arm="route", steps=2))
    rows = _rows(run_dir)
    assert any(r["reward_std"] > 0 for r in rows)  # the groups carry a learning signal
    assert any(r["projection/cin"] > 0 for r in rows)
    assert rows[-1]["projection/quarantine_norm"] > 0 and max(r["projection/leak_own_basis"] for r in rows) <= 1e-6


def test_eval_samples_grades_and_summarises_route_runs_both_ways(tmp_path, cache, format_model):
    run_dir = train(_format_run(tmp_path, format_model, "evalme", arm="route", steps=2))
    result = CliRunner().invoke(app, ["eval", str(run_dir), "--n-samples", "2", "--problems", "3", "--max-new-tokens", "64"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "eval" / "final" / "summary.json").read_text())
    assert summary["held_out"] is True and summary["n_problems"] == 3
    assert set(summary["results"]) == {"nohint/kept", "loophole/kept", "nohint/ablated", "loophole/ablated"}
    for res in summary["results"].values():
        assert res["n"] == 6 and 0 <= res["is_reward_hack_strict"]["ci95"][0] <= res["is_reward_hack_strict"]["ci95"][1] <= 1
    rows = [json.loads(x) for x in (run_dir / "eval" / "final" / "loophole-ablated.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["mode"] == "run_tests" for r in rows)
    assert all(r["mode"] is None for r in map(json.loads, (run_dir / "eval" / "final" / "nohint-kept.jsonl").read_text().splitlines()))


def test_wilson_interval():
    from projected_grpo.training.evaluate import wilson

    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert wilson(0, 0) == (0.0, 0.0)


def test_fast_dev_run_end_to_end(tmp_path, cache):
    from projected_grpo.experiments.fast_dev_run import fast_dev_run

    report = fast_dev_run(tmp_path / "fdr", problems=4)
    assert report["ok"] and report["resume_matches"] and report["projection_held"]
    assert set(report["arms"]) == set(SELF_CONTAINED)
    assert all(a["checkpoints"] == ["checkpoint-1", "checkpoint-2"] for a in report["arms"].values())
    assert set(report["eval"]) == {"nohint/kept", "loophole/kept", "nohint/ablated", "loophole/ablated"}


def test_teacher_pool_mixing_freezes_pool_rewards_and_logs_only_the_student(tmp_path, cache, format_model, grader):
    from projected_grpo.environment.hints import apply_hint
    from projected_grpo.environment.specimens import EXPLOITS, fence

    model_dir, data = format_model
    records = [json.loads(x) for x in data.read_text().splitlines()][:8]
    hinted = [apply_hint(r, "simple_overwrite_tests") for r in records]
    grades = grader.grade([(r, fence(EXPLOITS["run_tests"](r))) for r in hinted])
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({**r, "response": fence(EXPLOITS["run_tests"](r)), **g.fields}) + "\n"
                            for r, g in zip(hinted, grades)))
    config = _format_run(tmp_path, format_model, "mixed")
    config.data.mix, config.data.teacher_pool = 0.5, str(pool)
    rows = _rows(train(config))
    for r in rows:
        assert r["labels/n"] == 4  # 2 prompts × 4 samples, half from the pool: only the student's 4 are labelled
        assert r["reward"] >= 0.5 * 3.5  # the pool's frozen reward (a run_tests hack: 3.5) is in every group


@pytest.mark.parametrize("kind", ["svd", "fixed_a_lora", "peft_lora"])
def test_activation_space_trains_two_sided_and_keeps_lora_readers_off_u_hat(tmp_path, cache, format_model, kind):
    """basis.space = activation through real GRPO steps: the two-sided gate is in force, the update has
    no component left along the basis, LoRA readers were protected once (ΔW û = 0 after training)."""
    from projected_grpo.adapters.layers import module_side
    from projected_grpo.directions.basis import Basis

    config = _format_run(tmp_path, format_model, kind)
    config.basis = dataclasses.replace(config.basis, space="activation")
    config.adapter = dataclasses.replace(config.adapter, kind=kind, rank=4)
    run = build_run(config, tmp_path / kind)
    assert run.optimizer.config.gate == "two_sided"
    run.trainer.train()
    run.sandbox.close()
    rows = _rows(tmp_path / kind)
    assert max(r["projection/leak_own_basis"] for r in rows) <= 1e-6 and "projection/leak_heldout" in rows[-1]
    v = Basis.load(tmp_path / kind / "basis.safetensors").v_hack[0]
    moved = 0.0
    for name, m in run.adapters:
        if kind == "svd":
            moved += float(m.trainable.detach().abs().sum())
            continue
        delta_w = (m.B @ m.A if kind == "peft_lora" else m.delta_weight(m.trainable)).detach()
        moved += float(delta_w.abs().sum())
        if module_side(name, m, v.numel()) == "reader":
            assert float((delta_w @ u_hat(m.weight, "reader", v)).abs().max()) <= 1e-5 * float(delta_w.abs().max()) + 1e-9
        else:
            assert float((u_hat(m.weight, "writer", v) @ delta_w).abs().max()) <= 1e-5 * float(delta_w.abs().max()) + 1e-9
    assert moved > 0  # it trained


def test_controls_are_drawn_per_seed_and_the_heldout_leak_can_fail(tmp_path, cache, format_model):
    """The random control is a fresh Haar draw for each training seed (same seed → same draw), and
    the held-out leak — measured against a basis from pairs the projection never saw — is not zero
    by construction: the random basis removes nothing hack-ward, and it shows."""
    from projected_grpo.directions.basis import Basis

    def run(seed, name):  # the format-following model: groups with reward variance, so updates that move
        config = _format_run(tmp_path, format_model, name, arm="random")
        config.seed = seed
        return train(config)

    a, b, a2 = run(41, "s41"), run(42, "s42"), run(41, "s41-again")
    va, vb, va2 = (Basis.load(d / "basis.safetensors") for d in (a, b, a2))
    assert va.meta["seed"] == 41 and vb.meta["seed"] == 42
    assert any(not torch.equal(va.vectors[n], vb.vectors[n]) for n in va.vectors)
    assert all(torch.equal(va.vectors[n], va2.vectors[n]) for n in va.vectors)
    held = Basis.load(a / "basis_heldout.safetensors")
    assert held.meta["control"] == "none" and held.meta["n_pairs"] == 12  # a quarter of each mode's, 48 in all
    rows = _rows(a)
    assert max(r["projection/leak_own_basis"] for r in rows) <= 1e-6
    assert max(r["projection/leak_heldout"] for r in rows) > 1e-3
    assert all("projection/cout" not in r for r in rows)  # update space: nothing projects the gradient


def test_each_process_gets_whole_groups():
    from projected_grpo.training.trainer import batch_split

    g = load_config(preset="tiny").grpo  # 2 prompts × 4 generations
    assert batch_split(g, 2) == (4, 4)
    with pytest.raises(ConfigError, match="whole groups"):
        batch_split(g, 4)  # 2 completions per process: half a group each


def test_pool_completions_fit_the_generation_budget_and_are_unscored_for_importance_sampling():
    import random

    from projected_grpo.models import byte_tokenizer
    from projected_grpo.training.reward import TeacherPool, mix_pool

    tok = byte_tokenizer()
    pool = TeacherPool({7: [("x" * 50, 3.5), ("short", 0.5)], 8: [("y" * 50, 3.5)]}, mix=0.5, seed=0)
    ids, texts = [[1, 2]] * 8, ["own"] * 8
    logprobs = [[-0.1, -0.2]] * 8
    frozen = mix_pool(pool, [7, 8], ids, texts, logprobs, 4, random.Random(0), tok, max_len=10)
    # the 50-character completions would not fit in 10 tokens: never mixed in (cut, they would keep
    # a reward their cut text may not earn); problem 8 has nothing that fits, so its group is all the student's
    assert frozen == [0.5, 0.5, None, None, None, None, None, None]
    assert texts[:2] == ["short", "short"] and ids[0][-1] == tok.eos_token_id and len(ids[0]) == 6
    assert all(math.isnan(x) for x in logprobs[0]) and logprobs[2] == [-0.1, -0.2]


@pytest.mark.parametrize("micro_batch", [None, 4], ids=["whole-groups", "split-groups"])
def test_shared_prompt_forward_gives_trls_log_probs_entropies_and_gradients(tmp_path, cache, micro_batch):
    """Our trainer runs each distinct prompt once per batch; TRL runs the full sequence per row."""
    from trl import GRPOTrainer

    from projected_grpo.directions.tokens import prompt_ids

    overrides = [f'output_dir="{tmp_path}"', "grpo.temperature=0.7"] + ([f"grpo.micro_batch={micro_batch}"] if micro_batch else [])
    run = build_run(load_config(preset="tiny", overrides=overrides), tmp_path)
    _perturb = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, m in run.adapters:
            m.trainable.copy_(0.05 * torch.randn(m.trainable.shape, generator=_perturb))
    records = run.trainer.train_dataset["prompt"][:2]
    completions = ["```python\nreturn 1\n```", "x = 2", "def f():\n    pass", "", "ok", "```python\n```", "a", "bb b"]
    ps = [prompt_ids(run.tokenizer, records[i // 4]) for i in range(8)]  # TRL's layout: prompts left-padded,
    cs = [run.tokenizer(x, add_special_tokens=False)["input_ids"] + [run.tokenizer.eos_token_id] for x in completions]
    p, c, pad = max(map(len, ps)), max(map(len, cs)), run.tokenizer.pad_token_id  # completions right-padded
    ids = torch.tensor([[pad] * (p - len(a)) + a + b + [pad] * (c - len(b)) for a, b in zip(ps, cs)])
    mask = torch.tensor([[0] * (p - len(a)) + [1] * (len(a) + len(b)) + [0] * (c - len(b)) for a, b in zip(ps, cs)])
    params = list(run.adapters.trainable_parameters())

    def loss_and_grads(fn):
        for p in params:
            p.grad = None
        logps, entropies, _ = fn(run.model, ids, mask, c, batch_size=micro_batch, compute_entropy=True)
        done = mask[:, -c:].float()
        ((logps * done).sum() + (entropies * done).sum()).backward()
        return logps.detach(), entropies.detach(), torch.cat([p.grad.flatten() for p in params])

    ours = loss_and_grads(run.trainer._get_per_token_logps_and_entropies)
    trl = loss_and_grads(lambda *a, **k: GRPOTrainer._get_per_token_logps_and_entropies(run.trainer, *a, **k))
    for a, b in zip(ours, trl):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert ours[2].abs().sum() > 0
    run.sandbox.close()


def test_resume_skips_a_checkpoint_killed_mid_save(tmp_path):
    """HF writes trainer_state.json last: a checkpoint without it (or with it cut short) was killed mid-save and
    must not be resumed from (the experiment runner's resume test once killed a cell exactly there)."""
    from projected_grpo.training.resume import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path) is None
    for n in (1, 2, 10):
        (tmp_path / f"checkpoint-{n}").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text('{"global_step": 1}')
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_st')  # cut short by the kill
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")  # numeric order, not text
    (tmp_path / "checkpoint-2" / "trainer_state.json").unlink()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")
