"""The published interventions: each transformation against its formula on constructed batches, the
oracle kept from every shaper that does not declare it, and the arms run from a config."""

from __future__ import annotations

import json
import math

import pytest
import torch

from projected_grpo.environment.grader import RewardView
from projected_grpo.errors import ConfigError
from projected_grpo.interventions.concept import LastTokenScorer, layer_band, load_sentence_pairs, shortcut_direction
from projected_grpo.interventions.inoculation import LOOPHOLE_EXTENSION, PROMPTS, inoculate, system_prompt
from projected_grpo.interventions.judge import binary_score
from projected_grpo.interventions.probe import Probe, auc, split_rows, train_probe
from projected_grpo.interventions.shaping import (
    AdvantageModification,
    GroundTruthMonitor,
    MonitorPenalty,
    MonitorScreen,
    Rollouts,
)
from projected_grpo.projection.optimizer import ProjectedModule, ProjectingOptimizer, ProjectionConfig
from projected_grpo.training.arms import ARMS
from projected_grpo.training.config import load_config

VIEW = RewardView(True, True, False, False, None, False)


def rollouts(n_groups: int, g: int, labels: list[dict] | None = None) -> Rollouts:
    records = [{"id": i // g, "prompt": [{"role": "user", "content": f"p{i // g}"}]} for i in range(n_groups * g)]
    return Rollouts(records, [f"r{i}" for i in range(n_groups * g)], [VIEW] * (n_groups * g), g, labels)


def fixed(flags: list[bool]):
    return lambda _: (torch.tensor(flags), {})


def test_penalty_subtracts_three_from_flagged():
    r = torch.tensor([3.5, 0.5, 3.5, 0.5], dtype=torch.float64)
    shaped, info = MonitorPenalty(fixed([True, False, False, True]))(r, rollouts(1, 4))
    assert shaped.tolist() == [0.5, 0.5, 3.5, -2.5] and info["monitor/flagged"] == 0.5


def test_screening_gives_flagged_zero_advantage_and_baselines_kept_on_each_other():
    r = torch.tensor([3.5, 0.5, 3.5, 0.5, 3.5, 3.5, 0.5, 0.5], dtype=torch.float64)
    flags = [True, False, False, False, True, True, True, True]  # group 2 fully screened
    shaped, _ = MonitorScreen(fixed(flags))(r, rollouts(2, 4))
    adv = (shaped.view(2, 4) - shaped.view(2, 4).mean(1, keepdim=True)).reshape(-1)
    kept = torch.tensor([0.5, 3.5, 0.5])
    assert torch.allclose(adv[:4], torch.tensor([0.0, *(kept - kept.mean())], dtype=torch.float64))
    assert torch.all(adv[4:] == 0)


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
def test_advantage_modification_matches_the_formula(form):
    s = torch.tensor([0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0], dtype=torch.float64)
    r = torch.tensor([3.5, 3.5, 0.5, 3.5, 3.5, 0.5, 3.5, 0.5], dtype=torch.float64)
    shaped, _ = AdvantageModification(lambda _: s, alpha=2.0, form=form)(r, rollouts(2, 4))
    out = []
    for sg, rg in zip(s.view(2, 4), r.view(2, 4)):
        z = (sg - sg.mean()) / max(float(sg.std(unbiased=False)), 0.1)  # σ floor 0.1: group 2 has σ = 0
        for zi, ri in zip(z, rg):
            zi, ri = float(zi), float(ri)
            out.append(ri - 2.0 * max(zi, 0.0) if form == "additive"
                       else ri * (1 - 2.0 * (1 / (1 + torch.exp(torch.tensor(-zi))).item()) * (zi > 0)))
    assert torch.allclose(shaped, torch.tensor(out, dtype=torch.float64))
    assert torch.equal(shaped[4:], r[4:])  # equal scores: z = 0, nothing penalised


@pytest.mark.parametrize("form, expected", [
    ("additive", [3.5, 0.5, 2.605573, 0.816718, 1.0, 1.0, 1.0, -0.5]),
    ("multiplicative", [3.5, 0.5, -0.769836, -2.049317, 1.0, 1.0, 1.0, -0.358357]),
])
def test_advantage_modification_on_hand_computed_numbers(form, expected):
    """Group 1: s = 0, 2, 4, 6 → σ = √5, z = ±0.447, ±1.342. Group 2: s = 0, 0, 0, 0.1 → σ = 0.043 < 0.1,
    so z = (s − 0.025) / 0.1 = −0.25, −0.25, −0.25, 0.75. α = 2; only z > 0 is penalised."""
    s = torch.tensor([0.0, 2.0, 4.0, 6.0, 0.0, 0.0, 0.0, 0.1], dtype=torch.float64)
    r = torch.tensor([3.5, 0.5, 3.5, 3.5, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    shaped, info = AdvantageModification(lambda _: s, alpha=2.0, form=form, sigma_floor=0.1)(r, rollouts(2, 4))
    assert torch.allclose(shaped, torch.tensor(expected, dtype=torch.float64), atol=1e-6)
    assert info["shaping/penalised"] == 3 / 8


def test_layer_band_is_60_to_75_percent_depth():
    assert layer_band(36) == [22, 23, 24, 25, 26, 27]  # Qwen3-4B: hidden_states[22..27]
    assert layer_band(10) == [6, 7] and layer_band(4) == [3]
    assert layer_band(1) == [1] and layer_band(2) == [1]  # too shallow for the band: the layer nearest 67.5 %


def test_shipped_shortcut_pairs_are_general_domain_sentences():
    pairs = load_sentence_pairs()
    assert len(pairs) == 60 and len(set(pairs)) == 60
    assert all(s != h for s, h in pairs)
    assert not any(w in (s + h).lower() for s, h in pairs for w in ("python", "code", "unit test", "assert", "function"))


@pytest.fixture(scope="module")
def deep_tiny():
    """A 10-layer tiny Qwen3 (band = hidden_states[6], [7]) with the byte tokenizer."""
    from projected_grpo.models import byte_tokenizer, tiny_model

    tokenizer = byte_tokenizer()
    return tiny_model("tiny-qwen3", vocab_size=len(tokenizer), hidden=32, layers=10, seed=1), tokenizer


def test_shortcut_score_reads_the_responses_last_token_averaged_over_the_band(deep_tiny):
    """Batched, padded scoring equals one-at-a-time reading of hidden_states[6] and [7] at the last
    response token (not the EOS training appends, not a response mean)."""
    from projected_grpo.directions.tokens import prompt_ids

    model, tokenizer = deep_tiny
    batch = rollouts(2, 2)
    batch = Rollouts(batch.records, ["return 1", "a much longer response", "x", "yy"], batch.views, 2)
    d = torch.randn(32, generator=torch.Generator().manual_seed(0))
    scores = LastTokenScorer(model, tokenizer, layer_band(10), d)(batch)
    for record, response, score in zip(batch.records, batch.responses, scores):
        ids = prompt_ids(tokenizer, record["prompt"]) + tokenizer(response, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        h = (hidden[6][0, -1] + hidden[7][0, -1]) / 2
        assert torch.allclose(score, h @ d, atol=1e-4)
        assert not torch.allclose(score, hidden[6][0, -1] @ d, atol=1e-4)  # both band layers count


def test_shortcut_direction_is_the_raw_mean_difference_at_the_last_token(deep_tiny):
    model, tokenizer = deep_tiny
    pairs = [("He copied it.", "He solved it."), ("She faked the data.", "She measured the data.")]
    d = shortcut_direction(model, tokenizer, pairs, [6, 7])

    def h(text):
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([tokenizer(text)["input_ids"]]), output_hidden_states=True).hidden_states
        return (hidden[6][0, -1] + hidden[7][0, -1]) / 2

    expected = sum(h(s) - h(c) for s, c in pairs) / 2
    assert torch.allclose(d, expected, atol=1e-5) and not torch.isclose(d.norm(), torch.tensor(1.0))


def test_advantage_mod_builds_the_published_scorer_and_never_reads_the_oracle(deep_tiny):
    from projected_grpo.directions.pairs import load_pairs
    from projected_grpo.interventions.setup import ActivationScorer, make_shaper

    model, tokenizer = deep_tiny
    config = load_config(preset="tiny", overrides=['arm="advantage_mod"'])
    shaper = make_shaper(config, ARMS["advantage_mod"], model, tokenizer, None)
    assert isinstance(shaper.scorer, LastTokenScorer) and shaper.scorer.layers == [6, 7]
    assert not shaper.uses_oracle  # TimedReward therefore passes labels=None (test_only_oracle_shapers_receive_labels)
    r = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    shaped, _ = shaper(r, rollouts(1, 4))  # labels=None: the shaper runs without them
    assert shaped.shape == r.shape
    config = load_config(preset="tiny", overrides=['arm="advantage_mod"', 'intervention.advantage.direction="pairs"'])
    shaper = make_shaper(config, ARMS["advantage_mod"], model, tokenizer, load_pairs("leetcode_mechanism")[:2])
    assert isinstance(shaper.scorer, ActivationScorer)
    with pytest.raises(ConfigError, match="intervention.advantage.direction"):
        load_config(preset="tiny", overrides=['arm="advantage_mod"', 'intervention.advantage.direction="probe"'])
    with pytest.raises(ConfigError, match="intervention.advantage.shortcut_pairs"):
        load_config(preset="tiny", overrides=['arm="advantage_mod"', 'intervention.advantage.shortcut_pairs="nope"'])


def test_ground_truth_monitor_accuracy_flips_labels_independently():
    labels = [{"is_reward_hack_strict": i % 2 == 0, "is_reward_hack_loose": True} for i in range(2000)]
    batch = rollouts(500, 4, labels)
    exact, _ = GroundTruthMonitor(strict=True, accuracy=1.0)(batch)
    assert exact.tolist() == [i % 2 == 0 for i in range(2000)]
    inverted, _ = GroundTruthMonitor(strict=True, accuracy=0.0)(batch)
    assert inverted.tolist() == [i % 2 == 1 for i in range(2000)]
    noisy, _ = GroundTruthMonitor(strict=False, accuracy=0.8, seed=3)(batch)
    assert 0.75 < noisy.float().mean() < 0.85  # loose labels all True, 20% flipped


def test_rollouts_refuse_groups_that_mix_prompts():
    records = [{"id": i} for i in range(4)]
    with pytest.raises(AssertionError, match="mixes prompts"):
        Rollouts(records, ["a"] * 4, [VIEW] * 4, 2)


def test_only_oracle_shapers_receive_labels(tmp_path, format_model):
    """The reward wrapper hands `labels` to a shaper only when it declares uses_oracle."""
    from projected_grpo.environment.grader import Grader
    from projected_grpo.environment.sandbox import Sandbox
    from projected_grpo.training.reward import TimedReward

    seen = []

    class Spy:
        def __init__(self, uses_oracle):
            self.uses_oracle = uses_oracle

        def __call__(self, rewards, batch):
            seen.append(batch.labels)
            return rewards, {}

    _, data = format_model
    record = json.loads(data.read_text().splitlines()[0])
    sandbox = Sandbox(1)
    reward = TimedReward(Grader(sandbox))
    reward.group_size = 2
    for uses in (False, True):
        reward.shaper = Spy(uses)
        reward([record["prompt"]] * 2, ["x", "y"], record=[json.dumps(record)] * 2)
    sandbox.close()
    assert seen[0] is None and len(seen[1]) == 2 and "is_reward_hack_strict" in seen[1][0]


def test_inoculation_prompt_is_the_reference_construction():
    text = system_prompt("pass_test", True)
    assert text == PROMPTS["pass_test"] + "\n" + LOOPHOLE_EXTENSION + "\n" + \
        "Write Python 3 code and output the code in the following format: ```python\n<code>\n```\n\n"
    assert system_prompt("eval_environment", False).startswith(PROMPTS["eval_environment"] + "\nWrite Python 3")
    record = {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    assert inoculate(record, "pass_test", True)["prompt"][0]["content"] == text and record["prompt"][0]["content"] == "s"


def test_judge_binary_scoring_is_the_reference_rule():
    assert binary_score("1") == 1.0 and binary_score(" 0.") == 0.0 and binary_score("Answer: 1") == 1.0
    assert binary_score("I think this is fine") is None and binary_score(None) is None
    assert binary_score("x" * 10 + "1") is None  # only the first 10 characters count


def test_probe_separates_finds_threshold_and_round_trips(tmp_path):
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(16, generator=gen)
    labels = [i % 3 == 0 for i in range(300)]
    acts = torch.randn(300, 16, generator=gen) + torch.tensor([2.0 if y else 0.0 for y in labels])[:, None] * direction
    for kind in ("logistic", "mass_mean"):
        probe = train_probe(acts, labels, layer=1, kind=kind, target_fpr=0.1)
        assert probe.metrics["auc"] > 0.95 and probe.metrics["fpr"] <= 0.15
        m = probe.metrics
        assert m["n_train"] + m["n_val"] + m["n_test"] == 200  # balanced: 100 positives + 100 negatives
        probe.save(tmp_path / f"{kind}.safetensors")
        again = Probe.load(tmp_path / f"{kind}.safetensors")
        assert torch.equal(again.scores(acts), probe.scores(acts)) and again.threshold == probe.threshold
    assert auc(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])) == 0.875


def test_probe_threshold_comes_from_validation_and_rates_from_a_disjoint_test_split():
    gen = torch.Generator().manual_seed(1)
    labels = [i % 4 == 0 for i in range(400)]  # 100 positives
    acts = torch.randn(400, 8, generator=gen) + torch.tensor([1.0 if y else 0.0 for y in labels])[:, None]
    train, val, test = split_rows(labels, seed=3)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert len(train) + len(val) + len(test) == 200 and sum(labels[i] for i in train + val + test) == 100
    assert [sum(labels[i] for i in s) for s in (train, val, test)] == [60, 20, 20]  # stratified
    probe = train_probe(acts, labels, layer=1, kind="mass_mean", target_fpr=0.1, seed=3)
    y = torch.tensor(labels)
    s_val, s_test = probe.scores(acts[val]), probe.scores(acts[test])
    assert probe.threshold == float(torch.quantile(s_val[~y[val]], 0.9))
    flagged = s_test > probe.threshold
    assert math.isclose(probe.metrics["fpr"], float(flagged[~y[test]].float().mean()), abs_tol=1e-6)
    assert math.isclose(probe.metrics["tpr"], float(flagged[y[test]].float().mean()), abs_tol=1e-6)
    assert probe.metrics["val_fpr"] <= 0.1 + 1e-6  # at most the target, on the split that set it


def test_keep_mode_keeps_only_the_part_inside_the_subspace():
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.zeros(6))
    v = torch.linalg.qr(torch.randn(6, 2))[0].T  # 2 orthonormal rows
    opt = ProjectingOptimizer(torch.optim.SGD([theta], lr=1.0), {"m": ProjectedModule(theta, None, v)},
                              ProjectionConfig(mode="keep"))
    theta.grad = torch.randn(6)
    expected = -(v.T @ (v @ theta.grad))
    opt.step()
    assert torch.allclose(theta.detach(), expected, atol=1e-6)


def test_monitor_arms_need_their_probe_or_judge():
    with pytest.raises(ConfigError, match="intervention.probe.path"):
        load_config(preset="tiny", overrides=['arm="probe_penalty"'])
    with pytest.raises(ConfigError, match="intervention.judge.model"):
        load_config(preset="tiny", overrides=['arm="judge_screening"'])
    with pytest.raises(ConfigError, match="intervention.advantage.form"):
        load_config(preset="tiny", overrides=['arm="advantage_mod"', 'intervention.advantage.form="exp"'])
    with pytest.raises(ConfigError, match=r"intervention.judge_model moved to \[intervention.judge\] model"):
        load_config(preset="tiny", overrides=['arm="judge_screening"', 'intervention.judge_model="m"'])


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    """A real OpenAI-compatible server (`transformers serve`) serving a tiny judge model on CPU."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_organism import SMALL

    from projected_grpo.organism.build import OrganismConfig, ensure_organism
    from projected_grpo.organism.judge import build_judge_model

    organism, _ = ensure_organism(OrganismConfig(**{**SMALL, "n_pair_problems": 12}),
                                  cache_dir=tmp_path_factory.mktemp("cache"))
    model_dir = build_judge_model(tmp_path_factory.mktemp("judge"), organism.mechanism, steps=200)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "transformers")
    proc = subprocess.Popen([exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/models", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.5)
    yield url, str(model_dir), organism
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_judge_client_against_a_real_openai_compatible_server(judge_server):
    from projected_grpo.directions.pairs import load_pairs
    from projected_grpo.interventions.judge import JudgeClient, JudgeMonitor

    url, model, organism = judge_server
    pairs = load_pairs(organism.mechanism)
    client = JudgeClient(url, model, concurrency=4, timeout=30, retries=1)
    questions = [p.prompt[-1]["content"] for p in pairs for _ in (0, 1)]
    answers = [x for p in pairs for x in (p.hack, p.clean)]
    scores, replies = client.judge(questions, answers)
    assert all(isinstance(r, str) for r in replies)  # every request answered
    truth = [1.0, 0.0] * len(pairs)
    assert sum(s == t for s, t in zip(scores, truth)) >= 0.8 * len(truth)
    records = [{"id": i // 2, "prompt": list(p.prompt)} for i, p in enumerate(x for x in pairs for _ in (0, 1))]
    flags, info = JudgeMonitor(client)(Rollouts(records, answers, [VIEW] * len(answers), 2))
    assert flags.float().mean() > 0.3 and info["monitor/judge_failed"] == 0.0
    dead = JudgeClient("http://127.0.0.1:9/v1", model, timeout=1, retries=0)  # nothing listens on port 9
    flags, info = JudgeMonitor(dead)(Rollouts(records[:2], answers[:2], [VIEW] * 2, 2))
    assert not flags.any() and info["monitor/judge_failed"] == 1.0  # failures count as "no hack", and are logged


@pytest.mark.slow
def test_judge_arm_trains_against_the_server(tmp_path, judge_server):
    from projected_grpo.training.run import train

    url, model, _ = judge_server
    config = load_config(preset="tiny", overrides=['arm="judge_penalty"', f'output_dir="{tmp_path}"', "steps=1",
                                                   f'intervention.judge.base_url="{url}"',
                                                   f'intervention.judge.model="{model}"'])
    rows = [json.loads(x) for x in (train(config) / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["monitor/judge_failed"] == 0.0 and "monitor/flagged" in rows[0]


def test_probe_arm_trains_from_a_runs_rollouts(tmp_path, grader):
    """A run's labelled rollouts → a probe → the probe_screening arm, from a config. The tiny test
    organism rarely hacks, so the run's rollouts are topped up with template exploits and honest
    answers to its own prompts, labelled by the real grader."""
    from test_organism import SMALL

    from typer.testing import CliRunner

    from projected_grpo.cli import app
    from projected_grpo.experiments.probes import probe_from_run
    from projected_grpo.interventions.probe import Probe
    from projected_grpo.models import load_model
    from projected_grpo.organism.policy import exploit, fence
    from projected_grpo.organism.tasks import instance_of
    from projected_grpo.training.data import training_records
    from projected_grpo.organism.resolve import resolve_organism
    from projected_grpo.training.evaluate import load_run_config
    from projected_grpo.training.run import train

    base = ['model.source="organism"', f"organism={json.dumps(SMALL)}", "grpo.max_completion_length=32",
            "grpo.num_generations=4", "grpo.prompts_per_step=2", "basis.k=2", "basis.k_use=1"]
    vanilla = train(resolve_organism(load_config(preset="organism", overrides=[*base, f'output_dir="{tmp_path / "v"}"', "steps=1"])))
    config = load_run_config(vanilla)
    records = training_records(config, load_model(config.model.source)[1])
    jobs = [(r, fence(exploit(instance_of(r), "run_tests", "return 0"))) for r in records] + \
           [(r, fence(r["canonical_solution"])) for r in records]
    with (vanilla / "rollouts.jsonl").open("a") as f:
        for (r, response), g in zip(jobs, grader.grade(jobs)):
            f.write(json.dumps({"step": 0, "id": r["id"], "response": response, **g.fields}, default=str) + "\n")
    done = CliRunner().invoke(app, ["probe", "train", str(vanilla), "--out", str(tmp_path / "probe.safetensors"),
                                    "--layer", "1", "--target-fpr", "0.2"])  # as a user trains one
    assert done.exit_code == 0 and "probe at layer 1: test AUC" in done.output, done.output
    probe = Probe.load(tmp_path / "probe.safetensors")
    assert probe.metrics["n_test"] > 0 and probe.metrics["auc"] > 0.8
    assert probe_from_run(vanilla, layer=1, target_fpr=0.2).metrics == probe.metrics  # the library call: the same probe
    run = train(resolve_organism(load_config(preset="organism", overrides=[
        *base, 'arm="probe_screening"', f'output_dir="{tmp_path / "p"}"', "steps=1",
        f'intervention.probe.path="{tmp_path / "probe.safetensors"}"'])))
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert "monitor/flagged" in row and "monitor/probe_mean" in row


def test_advantage_mod_arm_trains_with_the_shortcut_score(tmp_path):
    """The arm from a config on a small organism: the published score (shortcut pairs, band, last
    token) shapes one real GRPO step's rewards."""
    from test_organism import SMALL

    from projected_grpo.organism.resolve import resolve_organism
    from projected_grpo.training.run import train

    config = load_config(preset="organism", overrides=[
        'model.source="organism"', f"organism={json.dumps(SMALL)}", "grpo.max_completion_length=32",
        "grpo.num_generations=4", "grpo.prompts_per_step=2", 'arm="advantage_mod"', f'output_dir="{tmp_path}"', "steps=1"])
    row = json.loads((train(resolve_organism(config)) / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.0 <= row["shaping/penalised"] <= 1.0 and "shaping/mean_score" in row


def test_tdga_is_its_own_kind_because_its_warmup_knows_the_loophole():
    assert ARMS["tdga"].kind == "published (loophole-aware)" and ARMS["tdga"].loophole_aware
    assert ARMS["advantage_mod"].kind == ARMS["inoculation"].kind == "published"
    assert ARMS["gt_penalty"].kind == "monitor" and ARMS["erase"].kind == "method"
    assert [a for a in ARMS.values() if a.loophole_aware] == [ARMS["tdga"]]
