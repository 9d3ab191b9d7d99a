"""The projection's math and the projecting optimizer under Adam, schedulers, checkpoints and DDP."""

import copy

import pytest
import torch

from projected_grpo.projection import gates as G
from projected_grpo.projection.optimizer import ProjectedModule, ProjectingOptimizer, ProjectionConfig


def _basis(k, r, seed=0):
    q, _ = torch.linalg.qr(torch.randn(r, k, generator=torch.Generator().manual_seed(seed)))
    return q.T.contiguous()


@pytest.mark.parametrize("seed", range(5))
def test_gate_math(seed):
    gen = torch.Generator().manual_seed(seed)
    v, g = _basis(3, 10, seed), torch.randn(10, generator=gen)
    c = v @ g
    for kind in G.GATES:
        out, removed = G.project_gradient(v, g, kind)
        torch.testing.assert_close(removed, v.T @ (v @ removed), atol=1e-6, rtol=0)  # removed ∈ span(V)
        torch.testing.assert_close(out + removed, g)
    one, _ = G.project_gradient(v, g, "one_sided")
    assert (v @ one <= c + 1e-6).all() and (v @ one <= 1e-6).all()  # never increases V g
    torch.testing.assert_close(v @ one, torch.clamp(c, max=0), atol=1e-6, rtol=0)
    two, _ = G.project_gradient(v, g, "two_sided")
    torch.testing.assert_close(v @ two, torch.zeros(3), atol=1e-6, rtol=0)  # zeroes it
    rev, _ = G.project_gradient(v, g, "reverse")
    torch.testing.assert_close(v @ rev, -c, atol=1e-6, rtol=0)  # flips it
    pm, _ = G.project_gradient(v, g, "two_sided", preserve_magnitude=True)
    torch.testing.assert_close(pm.norm(), g.norm())
    over, _ = G.project_gradient(v, g, "two_sided", overshoot=2.0)
    torch.testing.assert_close(v @ over, -c, atol=1e-6, rtol=0)


def test_update_gate_treats_negative_coefficients_as_hackward():
    v = torch.eye(4)[:2]
    delta = torch.tensor([-1.0, 2.0, 3.0, 4.0])  # moves hack-ward along row 0 only
    out, removed = G.project_update(v, delta, "one_sided")
    torch.testing.assert_close(out, torch.tensor([0.0, 2.0, 3.0, 4.0]))
    assert float(G.update_leak(v, out)) == 0.0 and float(G.update_leak(v, delta)) > 0.1
    assert float(G.hackward_fraction(v, torch.zeros(4))) == 0.0


def _stream(steps, r, seed):
    """Gradients with a persistent hack-ward drift along v and anisotropic per-coordinate scales."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-2, 1, r)
    v = _basis(1, r, seed)
    return v, [(torch.randn(r, generator=gen) + 3 * v[0] * (i % 3 == 0)) * scales for i in range(steps)]


def _run(config, v, grads, lr=1e-2, weight_decay=0.0, dtype=torch.float32):
    theta = torch.nn.Parameter(torch.zeros(v.shape[1], dtype=dtype))
    quarantine = torch.nn.Parameter(torch.zeros(v.shape[1], dtype=dtype), requires_grad=False)
    inner = torch.optim.AdamW([theta], lr=lr, weight_decay=weight_decay)
    opt = ProjectingOptimizer(inner, {"m": ProjectedModule(theta, quarantine, v)}, config)
    stats = []
    for g in grads:
        theta.grad = g.clone().to(dtype)
        opt.step()
        opt.zero_grad()
        stats.append(dict(opt.last_stats))
    return theta.detach(), quarantine.detach(), stats


def test_demonstration_grad_space_leaks_under_adamw_update_space_does_not():
    """A persistent hack-ward drift along v plus anisotropic noise: after grad-space erase, V g' ≤ 0
    (cout = 0), yet AdamW's per-coordinate 1/√v̂ rotates the update back into span(V)."""
    r, gen = 16, torch.Generator().manual_seed(1)
    v = _basis(1, r, seed=1).double()
    v = v / v.norm()
    scales = torch.logspace(-2, 1, r)[torch.randperm(r, generator=gen)]
    grads = [(scales * torch.randn(r, generator=gen)).double() + 2 * v[0] for _ in range(60)]
    _, _, grad_stats = _run(ProjectionConfig("erase", "grad"), v, grads, dtype=torch.float64)
    _, _, upd_stats = _run(ProjectionConfig("erase", "update"), v, grads, dtype=torch.float64)
    assert all(s["cout"] < 1e-9 for s in grad_stats)  # cout = 0 under one_sided: arithmetic, not evidence
    leaking = [s["leak_own_basis"] for s in grad_stats if s["leak_own_basis"] > 1e-3]
    assert len(leaking) >= 10 and max(leaking) > 0.3  # yet the actual update moves hack-ward
    assert max(s["leak_own_basis"] for s in upd_stats) <= 1e-6


def test_measure_changes_nothing_and_logs():
    v, grads = _stream(20, 8, seed=1)
    plain = torch.nn.Parameter(torch.zeros(8))
    opt = torch.optim.AdamW([plain], lr=1e-2, weight_decay=0.0)
    for g in grads:
        plain.grad = g.clone()
        opt.step()
    theta, _, stats = _run(ProjectionConfig("measure"), v, grads)
    assert torch.equal(theta, plain.detach())
    assert any(s["cin"] > 0 for s in stats) and any(s["leak_own_basis"] > 0 for s in stats)


@pytest.mark.parametrize("space", ["update", "grad"])
def test_route_moves_the_removed_part_into_quarantine(space):
    v, grads = _stream(30, 8, seed=2)
    theta_v, _, _ = _run(ProjectionConfig("measure"), v, grads)
    theta, quarantine, stats = _run(ProjectionConfig("route", space), v, grads)
    assert stats[-1]["quarantine_norm"] > 0
    if space == "update":  # θ + θ_hack follows the unprojected trajectory; θ alone never moves hack-ward
        torch.testing.assert_close(theta + quarantine, theta_v, atol=1e-6, rtol=1e-5)
        assert max(s["leak_own_basis"] for s in stats) <= 1e-6


def test_works_with_accumulation_clipping_and_schedulers():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1, bias=False)
    v = _basis(2, 8)
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    opt = ProjectingOptimizer(inner, {"w": ProjectedModule(model.weight, None, v)}, ProjectionConfig("erase"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    for step in range(6):
        for _ in range(2):  # gradient accumulation
            model(torch.randn(4, 8)).pow(2).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        sched.step()
        opt.zero_grad()
        assert opt.last_stats["leak_own_basis"] <= 1e-6
    assert inner.param_groups[0]["lr"] == pytest.approx(1e-2)


def test_state_dict_resume_is_exact():
    v, grads = _stream(20, 8, seed=3)
    full, _, _ = _run(ProjectionConfig("erase"), v, grads)
    theta = torch.nn.Parameter(torch.zeros(8))
    inner = torch.optim.AdamW([theta], lr=1e-2, weight_decay=0.0)
    opt = ProjectingOptimizer(inner, {"m": ProjectedModule(theta, None, v)}, ProjectionConfig("erase"))
    for g in grads[:10]:
        theta.grad = g.clone()
        opt.step()
    saved, saved_theta = copy.deepcopy(opt.state_dict()), theta.detach().clone()
    theta2 = torch.nn.Parameter(saved_theta)
    opt2 = ProjectingOptimizer(torch.optim.AdamW([theta2], lr=1e-2, weight_decay=0.0),
                               {"m": ProjectedModule(theta2, None, torch.zeros(0, 8))}, ProjectionConfig("erase"))
    opt2.load_state_dict(saved)
    for g in grads[10:]:
        theta2.grad = g.clone()
        opt2.step()
    assert torch.equal(theta2.detach(), full)


def test_refresh_swaps_bases_and_logs_overlap():
    v, grads = _stream(7, 8, seed=4)
    theta = torch.nn.Parameter(torch.zeros(8))
    calls = []

    def refresh():
        calls.append(1)
        return {"m": _basis(1, 8, seed=len(calls) + 10)}

    opt = ProjectingOptimizer(torch.optim.SGD([theta], lr=0.1), {"m": ProjectedModule(theta, None, v)},
                              ProjectionConfig("erase", refresh_every=3), refresh=refresh)
    for g in grads:
        theta.grad = g.clone()
        opt.step()
    assert len(calls) == 2 and 0 <= opt.last_stats["basis_overlap"] <= 1
    assert torch.equal(opt.modules["m"].basis, _basis(1, 8, seed=12))  # the second refresh's basis is in use


def test_tracking_measures_drift_without_replacing_the_basis():
    """`track_every`: re-extract to measure the overlap with the frozen basis; projection keeps the
    frozen one. `update_in_span` is ‖VΔ‖/‖Δ‖ of the realised update."""
    v, grads = _stream(7, 8, seed=4)
    theta = torch.nn.Parameter(torch.zeros(8))
    calls = []

    def refresh():
        calls.append(1)
        return {"m": v.clone() if len(calls) == 1 else _basis(v.shape[0], 8, seed=99)}

    opt = ProjectingOptimizer(torch.optim.SGD([theta], lr=0.1), {"m": ProjectedModule(theta, None, v)},
                              ProjectionConfig("measure", track_every=3), refresh=refresh)
    seen = []
    for g in grads:
        theta.grad = g.clone()
        before = theta.detach().clone()
        opt.step()
        delta = theta.detach() - before
        assert opt.last_stats["update_in_span"] == pytest.approx(float((v @ delta).norm() / delta.norm()), rel=1e-5)
        seen.append(opt.last_stats.get("drift_overlap"))
    assert len(calls) == 2 and torch.equal(opt.modules["m"].basis, v)
    assert seen[3] == pytest.approx(1.0) and seen[6] < 0.99  # the same subspace, then another one
    assert [s is None for s in seen] == [True, True, True, False, True, True, False]


def test_bad_projection_config():
    with pytest.raises(ValueError, match="projection mode"):
        ProjectionConfig(mode="delete")
    with pytest.raises(ValueError, match="gate"):
        ProjectionConfig(gate="sideways")


def test_heldout_leak_is_measured_over_modules_with_heldout_rows_and_two_sided_without_the_relu():
    """The held-out leak averages over the modules that have held-out rows (an empty one would dilute
    it); under the two-sided gate every fraction is the whole component ‖VΔ‖/‖Δ‖, not its relu."""
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    e = torch.eye(4)
    modules = {"a": ProjectedModule(a, None, e[:1], heldout=e[1:2]), "b": ProjectedModule(b, None, e[:1], heldout=e[:0])}
    for gate, expected in (("one_sided", 0.0), ("two_sided", 2 ** -0.5)):
        with torch.no_grad():
            a.zero_()
            b.zero_()
        opt = ProjectingOptimizer(torch.optim.SGD([a, b], lr=1.0), modules, ProjectionConfig("measure", "update", gate))
        a.grad, b.grad = torch.tensor([0.0, -1.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0, 0.0])
        opt.step()  # Δa = (0, 1, −1, 0): V_held Δa = +1, not hack-ward one-sided; 1/√2 of ‖Δa‖ two-sided
        assert opt.last_stats["leak_heldout"] == pytest.approx(expected)  # b (no held-out rows) is not averaged in
