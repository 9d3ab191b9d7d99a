"""`ProjectingOptimizer`: wraps any torch optimizer and projects off a hack basis at each step.

Modes: `measure` (log only: the vanilla arm), `erase` (remove the hack-ward part), `route` (move it
into the quarantine θ_hack instead; deploy with θ_hack = 0), `keep` (the opposite use of a basis:
keep only the part of the update inside span(V), as TDGA does with a trusted subspace).
Spaces: `grad` projects the gradient before the inner step (reference-compatible, but Adam's first
moment and per-coordinate scaling rotate the update back into span(V)); `update` (default) lets the
inner optimizer step, then projects the actual update `Δ = θ_new − θ_old` and writes `θ_old + Δ'`.
Every mode logs the actual update's hack-ward fraction ‖relu(−VΔ)‖/‖Δ‖ twice: `leak_own_basis`
against the basis it projects with (zero under erase/route by construction: a check of the
arithmetic; in the vanilla arm a real measurement), and `leak_heldout` against a basis extracted from
pairs the projection never saw (a leak that can fail: hack-ward movement outside span(V)). Under
the two-sided gate (activation-space rows carry no hack-ward sign) every fraction drops the relu:
the whole component, as the gate removes it.
`cout` (the gradient after projection) exists only in grad space; in update space nothing projects
the gradient, so it is not logged.

It subclasses `torch.optim.Optimizer` and shares the inner optimizer's `param_groups` and `state`,
so LR schedulers, gradient clipping, accumulation, accelerate and DDP (whose gradients are
all-reduced before `step()`) work unchanged; equal gradients give equal projections on every rank.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor, nn

from projected_grpo.projection import gates as G

MODES = ("measure", "erase", "route", "keep")
SPACES = ("grad", "update")


@dataclass(frozen=True)
class ProjectionConfig:
    mode: str = "erase"
    space: str = "update"
    gate: str = "one_sided"
    overshoot: float = 1.0
    preserve_magnitude: bool = False
    refresh_every: int = 0  # re-extract the basis every N steps and project with the new one (0: never)
    track_every: int = 0  # re-extract every N steps only to measure how far the basis drifted (0: never)

    def __post_init__(self):
        for value, allowed, what in ((self.mode, MODES, "mode"), (self.space, SPACES, "space"),
                                     (self.gate, G.GATES, "gate")):
            if value not in allowed:
                raise ValueError(f"projection {what} {value!r}: choose one of {', '.join(allowed)}")


@dataclass
class _GroupStep:
    """One shape group's step: its parameters, bases (v; held-out h with its row mask), θ before the inner
    step, and what the step measured."""

    names: list[str]
    params: list[nn.Parameter]
    v: Float[Tensor, "m k r"]
    h: tuple[Float[Tensor, "m h r"], Tensor] | None
    before: Float[Tensor, "m r"]
    c_in: Float[Tensor, " m"]
    c_out: Tensor | None = None
    delta: Tensor | None = None
    leak_before: Tensor | None = None
    moved: Tensor | None = None


@dataclass
class ProjectedModule:
    """One module's trainable vector θ (flattened view), its quarantine, its basis V (k × r) and the
    held-out basis its leak is also measured against (h × r; measurement only)."""

    param: nn.Parameter
    quarantine: nn.Parameter | None
    basis: Float[Tensor, "k r"]
    heldout: Float[Tensor, "h r"] | None = None


class ProjectingOptimizer(torch.optim.Optimizer):
    def __init__(
        self,
        inner: torch.optim.Optimizer,
        modules: dict[str, ProjectedModule],
        config: ProjectionConfig = ProjectionConfig(),
        refresh: Callable[[], dict[str, Tensor]] | None = None,
    ):
        # Deliberately not calling Optimizer.__init__: we are a view onto `inner`.
        self.inner, self.modules, self.config, self.refresh = inner, modules, config, refresh
        self.defaults = inner.defaults
        self._step_count = 0
        self._grouped = None
        self.last_stats: dict[str, float] = {}
        self._optimizer_step_pre_hooks: dict = {}
        self._optimizer_step_post_hooks: dict = {}
        self._optimizer_state_dict_pre_hooks: dict = {}
        self._optimizer_state_dict_post_hooks: dict = {}
        self._optimizer_load_state_dict_pre_hooks: dict = {}
        self._optimizer_load_state_dict_post_hooks: dict = {}
        if config.mode == "route":
            assert all(m.quarantine is not None for m in modules.values()), "route needs a quarantine per module"
            if config.space == "grad":  # the removed gradient steps θ_hack through the inner optimizer, wd 0
                params = [m.quarantine for m in modules.values()]
                inner.add_param_group({"params": params, "weight_decay": 0.0})
        for name, m in modules.items():
            assert m.basis.shape[-1] == m.param.numel(), f"{name}: basis width {m.basis.shape} vs θ {m.param.numel()}"

    @property
    def param_groups(self):
        return self.inner.param_groups

    @param_groups.setter
    def param_groups(self, value):  # Optimizer machinery may assign; keep the inner one authoritative
        self.inner.param_groups = value

    @property
    def state(self):
        return self.inner.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none)
        for m in self.modules.values():
            if m.quarantine is not None:
                m.quarantine.grad = None

    def _groups(self) -> list[tuple[list[str], Tensor, tuple[Tensor, Tensor] | None]]:
        """Modules whose θ has one shape, with their bases stacked (M × k_max × r, zero rows padded)
        and their held-out bases likewise, with the mask of modules that have held-out rows (or None):
        the step then costs a few batched ops per shape instead of a dozen per module."""
        if self._grouped is None:
            by_shape: dict[tuple, list[str]] = {}
            for name, m in self.modules.items():
                by_shape.setdefault((tuple(m.param.shape), m.param.dtype), []).append(name)
            groups = []
            for names in by_shape.values():
                v = _stack_bases([self.modules[n].basis for n in names], self.modules[names[0]].param.numel())
                held = [self.modules[n].heldout for n in names]
                h = None if all(x is None for x in held) else _stack_bases(
                    [x if x is not None else v.new_zeros(0, v.shape[-1]) for x in held], v.shape[-1])
                groups.append((names, v, None if h is None else (h, h.abs().sum((1, 2)) > 0)))
            self._grouped = groups
        return self._grouped

    @torch.no_grad()
    def step(self, closure=None):
        """Grad-space projection (if any) → the inner step → update-space projection (if any) → statistics."""
        assert closure is None, "closures are not supported by the projecting optimizer"
        cfg = self.config
        self._step_count += 1
        start = time.perf_counter()
        overlaps = {}
        if self._due(cfg.refresh_every):
            overlaps["basis_overlap"] = self._refresh()
        if self._due(cfg.track_every):
            overlaps["drift_overlap"] = self._drift()
        groups = [self._grad_step(names, v, h) for names, v, h in self._groups()]
        before_inner = time.perf_counter()
        self.inner.step()
        after_inner = time.perf_counter()
        for group in groups:
            self._update_step(group)
        self.last_stats = self._statistics(groups) | overlaps
        # wall time of the projection's own work (everything in step() but the inner optimizer's step)
        self.last_stats["time_projection_s"] = (before_inner - start) + (time.perf_counter() - after_inner)
        return None

    def _due(self, every: int) -> bool:
        """Re-extraction is due before steps 1 + N, 1 + 2N, ... (step 1 uses the extracted basis)."""
        return self.refresh is not None and every > 0 and self._step_count > 1 and (self._step_count - 1) % every == 0

    def _fraction(self, basis: Float[Tensor, "m k r"], x: Float[Tensor, "m r"]) -> Float[Tensor, " m"]:
        """What the gate would remove, as a fraction: the whole component when two-sided."""
        return G.batched_hackward_fraction(basis, x, signed=self.config.gate != "two_sided")

    def _grad_step(self, names: list[str], v: Tensor, h: tuple[Tensor, Tensor] | None) -> _GroupStep:
        """Measure `cin` on the gradients of one shape group; in grad space, project them (route: the removed
        part becomes θ_hack's gradient)."""
        cfg = self.config
        params = [self.modules[n].param for n in names]
        theta = _stacked(params)
        v = v.to(theta.device, theta.dtype)
        h = (h[0].to(theta.device, theta.dtype), h[1].to(theta.device)) if h is not None else None
        grad = _stacked([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
        group = _GroupStep(names, params, v, h, theta, self._fraction(v, grad))
        if cfg.space == "grad" and cfg.mode != "measure":
            grad_new, removed = (_keep(v, grad) if cfg.mode == "keep" else
                                 G.batched_project(v, grad, cfg.gate, cfg.overshoot, cfg.preserve_magnitude, sign=1.0))
            _write([p.grad for p in params], grad_new)
            if cfg.mode == "route":
                for i, n in enumerate(names):
                    q = self.modules[n].quarantine
                    q.grad = removed[i].view_as(q).to(q.dtype)
            group.c_out = self._fraction(v, grad_new)
        return group

    def _update_step(self, group: _GroupStep) -> None:
        """The realised update Δ of one shape group; in update space, project it and write θ_old + Δ'
        (route: the removed part moves into θ_hack)."""
        cfg, v = self.config, group.v
        group.delta = _stacked(group.params) - group.before
        if cfg.space == "update" and cfg.mode != "measure":
            group.leak_before = self._fraction(v, -group.delta)
            delta_new, removed = (_keep(v, group.delta) if cfg.mode == "keep" else
                                  G.batched_project(v, group.delta, cfg.gate, cfg.overshoot, cfg.preserve_magnitude,
                                                    sign=-1.0))
            _write(group.params, group.before + delta_new)
            if cfg.mode == "route":
                quarantines = [self.modules[n].quarantine for n in group.names]
                _write(quarantines, _stacked(quarantines) + removed)
            group.moved = removed.norm(dim=1)
            group.delta = _stacked(group.params) - group.before

    def _statistics(self, groups: list[_GroupStep]) -> dict[str, float]:
        """Means over modules: cin, fired, cout (grad space), the realised update's leak against the
        projection basis and against the held-out basis (modules with held-out rows only)."""
        cat = lambda xs: torch.cat(xs).double()  # noqa: E731
        leak = [self._fraction(g.v, -g.delta) for g in groups]
        in_span = [G.batched_hackward_fraction(g.v, g.delta, signed=False) for g in groups]
        leak_before = [g.leak_before for g in groups if g.leak_before is not None]
        moved = [g.moved for g in groups if g.moved is not None]
        cout = [g.c_out for g in groups if g.c_out is not None]
        leak_held = [self._fraction(g.h[0], -g.delta)[g.h[1]] for g in groups if g.h is not None]
        c_in_all = cat([g.c_in for g in groups])
        named = {"cin": c_in_all.mean(), "fired": (c_in_all > 1e-6).double().mean(), "leak_own_basis": cat(leak).mean(),
                 "leak_before_projection": cat(leak_before).mean() if leak_before else cat(leak).mean(),
                 "removed_norm": cat(moved).mean() if moved else torch.zeros((), dtype=torch.float64),
                 "update_in_span": cat(in_span).mean()}
        if cout:
            named["cout"] = cat(cout).mean()
        if leak_held and (held_all := cat(leak_held)).numel():
            named["leak_heldout"] = held_all.mean()
        stats = dict(zip(named, torch.stack(list(named.values())).tolist()))
        stats["quarantine_norm"] = self.quarantine_norm()
        return stats

    def quarantine_norm(self) -> float:
        qs = [m.quarantine.detach() for m in self.modules.values() if m.quarantine is not None]
        return float(torch.stack(torch._foreach_norm(qs)).norm()) if qs else 0.0

    def _reextract(self) -> tuple[dict[str, Tensor], float]:
        """A basis extracted from the current adapter on the same pairs, and its mean overlap with the
        basis in use (the mean squared cosine of the principal angles between the two subspaces)."""
        with torch.enable_grad():  # step() runs under no_grad; extraction needs backward
            new = self.refresh()
        overlaps = [G.basis_overlap(self.modules[n].basis.float(), b.float()) for n, b in new.items() if b.shape[0]]
        return new, float(torch.stack(overlaps).mean()) if overlaps else float("nan")

    def _refresh(self) -> float:
        new, overlap = self._reextract()
        self.set_bases(new)
        return overlap

    def _drift(self) -> float:
        return self._reextract()[1]

    def set_bases(self, bases: dict[str, Tensor]) -> None:
        for name, b in bases.items():
            self.modules[name].basis = b
        self._grouped = None

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "step_count": self._step_count,
                "bases": {n: m.basis.detach().cpu() for n, m in self.modules.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        self._step_count = state["step_count"]
        self.set_bases(state["bases"])

    def __repr__(self) -> str:
        return f"ProjectingOptimizer({self.config}, {len(self.modules)} modules, inner={type(self.inner).__name__})"


def _stack_bases(bases: list[Tensor], r: int) -> Float[Tensor, "m k r"]:
    """Bases of one width as one zero-padded stack (fp32, or fp64 when a basis is)."""
    k = max(b.shape[0] for b in bases)
    out = torch.zeros(len(bases), k, r, dtype=torch.float64 if any(b.dtype == torch.float64 for b in bases) else torch.float32)
    for i, b in enumerate(bases):
        out[i, : b.shape[0]] = b.detach().to("cpu", out.dtype)
    return out


def _keep(v: Float[Tensor, "m k r"], x: Float[Tensor, "m r"]) -> tuple[Tensor, Tensor]:
    """(the part of x inside span(V), the rest); V's rows orthonormal (zero rows allowed)."""
    inside = einsum(einsum(v, x, "m k r, m r -> m k"), v, "m k, m k r -> m r")
    return inside, x - inside


def _stacked(tensors: list[Tensor]) -> Float[Tensor, "m r"]:
    """Same-shape tensors as one (M × r) matrix in the dtype the math runs in (fp32, or fp64)."""
    out = torch.stack([t.detach() for t in tensors]).flatten(1)
    return out.to(torch.promote_types(out.dtype, torch.float32))


def _write(targets: list[Tensor], rows: Float[Tensor, "m r"]) -> None:
    """Copy row i into targets[i] (one fused call)."""
    torch._foreach_copy_(targets, [r.view_as(t).to(t.dtype) for r, t in zip(rows.unbind(0), targets)])


def modules_from_adapters(adapters, bases: dict[str, Tensor], heldout: dict[str, Tensor] | None = None
                          ) -> dict[str, ProjectedModule]:
    """Pair each adapted module with its basis (modules without one get an empty k = 0 basis) and,
    when given, its held-out basis."""
    out = {}
    for name, m in adapters:
        empty = torch.zeros(0, m.trainable.numel())
        basis = bases.get(name, empty)
        held = None if heldout is None else heldout.get(name, empty)
        out[name] = ProjectedModule(m.trainable, m.quarantine, basis, held)
    return out
