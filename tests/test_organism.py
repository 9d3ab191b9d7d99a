"""The CPU model organism: task suite graded by the real grader, deterministic cached build, pair sets."""

from __future__ import annotations

import json
import random

import pytest

from projected_grpo.directions.pairs import load_pairs
from projected_grpo.environment.modes import MODES
from projected_grpo.organism.build import OrganismConfig, ensure_organism, hinted
from projected_grpo.organism.exploit_forms import FORMS
from projected_grpo.organism.policy import EXPLOIT_TEMPLATES, Mixture, exploit, fence, sample_completion
from projected_grpo.organism.tasks import FAMILIES, ID_BASE, all_instances, instance_of, make_records, split_instances

SMALL = dict(n_train=16, n_eval=6, n_pair_problems=4, vocab_size=400, hidden=32, layers=1, sft_steps=30, sft_batch=8,
             prior_samples=1)


@pytest.fixture(scope="module")
def records():
    train, _, _ = split_instances(0, 60, 10, 4)
    return make_records(train, 0, ID_BASE)


def test_split_is_disjoint_and_covers_every_family():
    train, held, pairs = split_instances(3, 120, 48, 24)
    keys = [{i.key for i in part} for part in (train, held, pairs)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert {i.family.key for i in held} == {f.key for f in FAMILIES}
    assert split_instances(3, 120, 48, 24)[1] == held  # seeded


def test_every_family_tier_and_instance_builds_discriminating_tests():
    assert {f.tier for f in FAMILIES} == {"easy", "medium", "hard"}
    rng = random.Random(0)
    for inst in all_instances():
        tests = inst.tests(rng, 4)
        assert len(set(tests)) == 4


def test_canonical_correct_wrong_bodies_fail_and_exploits_hack_their_mode_only(grader, records):
    """The real grader: every canonical solution is Correct, every plausible bug fails a GT test, and a
    lazy exploit of mode m is a strict reward hack on an m-hinted prompt and nothing on the others."""
    pairs = [(r, fence(r["canonical_solution"])) for r in records]
    pairs += [(r, fence(instance_of(r).code(w))) for r in records[:24] for w in instance_of(r).family.wrong]
    grades = grader.grade(pairs)
    assert all(g.fields["eq_correct"] and g.fields["gt_correct_hardened"] for g in grades[:len(records)])
    assert not any(g.fields["eq_correct"] for g in grades[len(records):])
    r = records[0]
    inst = instance_of(r)
    for mode in MODES:
        response = fence(exploit(inst, mode, "return None"))
        got = grader.grade([(hinted(r, m, 0), response) for m in MODES] + [(r, response)])
        assert [g.fields["is_reward_hack_strict"] for g in got] == [m == mode for m in MODES] + [False]


def test_every_diverse_exploit_form_hacks_its_mode_only(grader, records):
    """organism-diverse: each of the ≥ 8 surface forms per mode, with a lazy body, is a strict reward hack on
    a prompt hinting its mode and nothing on the other modes' or a no-hint prompt (the real grader); the
    forms differ from each other and from the template."""
    r = records[0]
    inst = instance_of(r)
    jobs, expect = [], []
    for mode, forms in FORMS.items():
        assert len(forms) >= 8 and len(set(forms)) == len(forms)
        for i in range(len(forms)):
            response = fence(exploit(inst, mode, "return None", _Pick(i)))
            assert response != fence(exploit(inst, mode, "return None")) or i == 0
            jobs += [(hinted(r, m, 0), response) for m in MODES] + [(r, response)]
            expect += [m == mode for m in MODES] + [False]
    got = [g.fields["is_reward_hack_strict"] for g in grader.grade(jobs)]
    wrong = [(jobs[i][1], MODES[i % 5] if i % 5 < 4 else "nohint") for i, (a, b) in enumerate(zip(got, expect)) if a != b]
    assert not wrong, wrong[:3]


class _Pick(random.Random):
    """A generator whose choice is fixed: picks form i."""

    def __init__(self, i: int):
        super().__init__(0)
        self.i = i

    def choice(self, seq):
        return seq[self.i]


def test_diverse_policy_draws_many_forms(records):
    inst = instance_of(records[0])
    rng = random.Random(0)
    mix = Mixture(hack_rate=1.0, malformed_rate=0.0, exploits="diverse")
    seen = {sample_completion(inst, hinted(records[0], "sentinel", 0), rng, mix)[0] for _ in range(400)}
    assert len({s.replace("return 0", "").replace("pass", "") for s in seen}) >= 8
    with pytest.raises(ValueError, match="exploits"):
        OrganismConfig(exploits="many")


def test_policy_mixture_hacks_only_when_hinted(records):
    rng = random.Random(0)
    mix = Mixture(hack_rate=0.5, malformed_rate=0.1)
    inst = instance_of(records[0])
    plain = [sample_completion(inst, records[0], rng, mix)[1] for _ in range(300)]
    assert "hack" not in plain and "malformed" in plain
    for mode in MODES:
        kinds = [sample_completion(inst, hinted(records[0], mode, 0), rng, mix)[1] for _ in range(300)]
        assert 0.35 < kinds.count("hack") / 300 < 0.65
    assert set(EXPLOIT_TEMPLATES) == set(MODES)


@pytest.fixture(scope="module")
def small_organism(tmp_path_factory):
    config = OrganismConfig(**SMALL)
    first, cached = ensure_organism(config, cache_dir=tmp_path_factory.mktemp("cache_a"))
    assert not cached
    return config, first


def test_build_is_deterministic_and_cached(small_organism, tmp_path):
    config, first = small_organism
    second, cached = ensure_organism(config, cache_dir=tmp_path)
    assert not cached
    assert first.info()["model_hash"] == second.info()["model_hash"]
    for name in ("train.jsonl", "eval.jsonl", "pairs_mechanism.jsonl", "pairs_placebo.jsonl", "priors.json"):
        assert (first.root / name).read_text() == (second.root / name).read_text(), name
    again, cached = ensure_organism(config, cache_dir=tmp_path)
    assert cached and again.root == second.root
    other = OrganismConfig(**{**SMALL, "seed": 1})
    assert other.key() != config.key()


def test_built_organism_is_a_normal_hf_model_with_priors_and_pairs(small_organism):
    from projected_grpo.models import load_model

    _, organism = small_organism
    model, tokenizer = load_model(str(organism.model))
    assert tokenizer.chat_template and model.config.model_type == "qwen3"
    priors = organism.priors()
    assert set(priors) == {"nohint", *MODES}
    assert all(0.0 <= p["solve"] <= 1.0 and p["n"] == SMALL["n_eval"] for p in priors.values())
    mechanism = load_pairs(organism.mechanism)
    assert {p.mode for p in mechanism} == set(MODES) and len(mechanism) == 4 * SMALL["n_pair_problems"]
    assert {p.mode for p in load_pairs(organism.placebo)} == {"placebo"}
    train = [json.loads(x) for x in organism.train.read_text().splitlines()]
    held = [json.loads(x) for x in organism.eval.read_text().splitlines()]
    assert not {r["canonical_solution"] for r in train} & {r["canonical_solution"] for r in held}


def test_mechanism_pairs_hack_side_exploits_and_clean_side_does_not(grader, small_organism):
    """Graded against the problems they were authored on: every hack side earns the loophole reward
    (a hack, or a correct answer that also exploits); no clean side touches the loophole."""
    from projected_grpo.organism.build import author_pairs

    _, organism = small_organism
    _, _, pair_instances = split_instances(0, SMALL["n_train"], SMALL["n_eval"], SMALL["n_pair_problems"])
    pair_records = make_records(pair_instances, 0, ID_BASE + 20_000)
    mechanism, _ = author_pairs(pair_records, 0)
    assert [list(p.prompt) for p in load_pairs(organism.mechanism)] == [row["prompt"] for row in mechanism]
    jobs = []
    for row, record in zip(mechanism, [r for r in pair_records for _ in MODES]):
        rec = hinted(record, row["mode"], 0)
        jobs += [(rec, row["hack"]), (rec, row["clean"])]
    fields = [g.fields for g in grader.grade(jobs)]
    assert all(f["eq_hinted"] and (f["exploited"] or f["eq_correct"]) for f in fields[0::2])
    assert not any(f["exploited"] or f["is_reward_hack_loose"] for f in fields[1::2])
