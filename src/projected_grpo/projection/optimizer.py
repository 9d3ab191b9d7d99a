"""`ProjectingOptimizer`: wraps any torch optimizer and projects off a hack basis at each step.

Modes: `measure` (log only: the vanilla arm), `erase` (remove the hack-ward part), `route` (move it
into the quarantine θ_hack instead; deploy with θ_hack = 0).
Spaces: `grad` projects the gradient before the inner step (reference-compatible, but Adam's first
moment and per-coordinate scaling rotate the update back into span(V)); `update` (default) lets the
inner optimizer step, then projects the actual update `Δ = θ_new − θ_old` and writes `θ_old + Δ'`.
Every mode logs the actual-update leak ‖relu(−VΔ)‖/‖Δ‖: that number says whether projection held.

It subclasses `torch.optim.Optimizer` and shares the inner optimizer's `param_groups` and `state`,
so LR schedulers, gradient clipping, accumulation, accelerate and DDP (whose gradients are
all-reduced before `step()`) work unchanged; equal gradients give equal projections on every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from projected_grpo.projection import gates as G

MODES = ("measure", "erase", "route")
SPACES = ("grad", "update")


@dataclass(frozen=True)
class ProjectionConfig:
    mode: str = "erase"
    space: str = "update"
    gate: str = "one_sided"
    overshoot: float = 1.0
    preserve_magnitude: bool = False
    refresh_every: int = 0  # re-extract the basis every N steps (0: never)

    def __post_init__(self):
        for value, allowed, what in ((self.mode, MODES, "mode"), (self.space, SPACES, "space"),
                                     (self.gate, G.GATES, "gate")):
            if value not in allowed:
                raise ValueError(f"projection {what} {value!r}: choose one of {', '.join(allowed)}")


@dataclass
class ProjectedModule:
    """One module's trainable vector θ (flattened view), its quarantine, and its basis V (k × r)."""

    param: nn.Parameter
    quarantine: nn.Parameter | None
    basis: Float[Tensor, "k r"]


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

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None, "closures are not supported by the projecting optimizer"
        cfg = self.config
        self._step_count += 1
        if self.refresh is not None and cfg.refresh_every and self._step_count > 1 \
                and (self._step_count - 1) % cfg.refresh_every == 0:
            self._refresh()
        before = {n: _work(m.param).clone() for n, m in self.modules.items()}
        cin, cout, fired = [], [], []
        for name, m in self.modules.items():
            if m.param.grad is None:
                continue
            g = _work(m.param.grad)
            v = m.basis.to(g.device, g.dtype)
            c_in = G.hackward_fraction(v, g)
            cin.append(c_in)
            fired.append(c_in > 1e-6)
            if cfg.space == "grad" and cfg.mode != "measure":
                g_new, removed = G.project_gradient(v, g, cfg.gate, cfg.overshoot, cfg.preserve_magnitude)
                m.param.grad.copy_(g_new.view_as(m.param.grad))
                if cfg.mode == "route":
                    m.quarantine.grad = removed.view_as(m.quarantine).to(m.quarantine.dtype)
                g = g_new
            cout.append(G.hackward_fraction(v, g))
        self.inner.step()
        leak, leak_before, moved = [], [], []
        for name, m in self.modules.items():
            delta = _work(m.param) - before[name]
            v = m.basis.to(delta.device, delta.dtype)
            if cfg.space == "update" and cfg.mode != "measure":
                leak_before.append(G.update_leak(v, delta))
                delta_new, removed = G.project_update(v, delta, cfg.gate, cfg.overshoot, cfg.preserve_magnitude)
                m.param.copy_((before[name] + delta_new).view_as(m.param).to(m.param.dtype))
                if cfg.mode == "route":
                    m.quarantine.add_(removed.view_as(m.quarantine).to(m.quarantine.dtype))
                moved.append(removed.norm())
                delta = _work(m.param) - before[name]
            leak.append(G.update_leak(v, delta))
        mean = lambda xs: float(torch.stack(xs).float().mean()) if xs else 0.0  # noqa: E731
        self.last_stats = {
            "cin": mean(cin), "cout": mean(cout), "fired": mean(fired), "leak": mean(leak),
            "leak_before_projection": mean(leak_before) if leak_before else mean(leak),
            "removed_norm": mean(moved), "quarantine_norm": self.quarantine_norm(),
        }
        return None

    def quarantine_norm(self) -> float:
        qs = [m.quarantine.detach().float().norm() for m in self.modules.values() if m.quarantine is not None]
        return float(torch.stack(qs).norm()) if qs else 0.0

    def _refresh(self) -> None:
        new = self.refresh()
        overlaps = [G.basis_overlap(self.modules[n].basis.float(), b.float()) for n, b in new.items()]
        for name, b in new.items():
            self.modules[name].basis = b
        self.last_refresh_overlap = float(torch.stack(overlaps).mean())

    def set_bases(self, bases: dict[str, Tensor]) -> None:
        for name, b in bases.items():
            self.modules[name].basis = b

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "step_count": self._step_count,
                "bases": {n: m.basis.detach().cpu() for n, m in self.modules.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        self._step_count = state["step_count"]
        self.set_bases(state["bases"])

    def __repr__(self) -> str:
        return f"ProjectingOptimizer({self.config}, {len(self.modules)} modules, inner={type(self.inner).__name__})"


def _work(t: Tensor) -> Tensor:
    """A flat copy-free view in the dtype the math runs in: fp32, or fp64 for fp64 parameters."""
    return t.detach().flatten().to(torch.promote_types(t.dtype, torch.float32))


def modules_from_adapters(adapters, bases: dict[str, Tensor]) -> dict[str, ProjectedModule]:
    """Pair each adapted module with its basis (modules without one get an empty k = 0 basis)."""
    out = {}
    for name, m in adapters:
        basis = bases.get(name)
        if basis is None:
            basis = torch.zeros(0, m.trainable.numel())
        out[name] = ProjectedModule(m.trainable, m.quarantine, basis)
    return out
