"""Plots of a basis: the singular-value spectra of the per-module pair-gradient matrices D."""

from __future__ import annotations

from pathlib import Path

from projected_grpo.directions.basis import Basis


def plot_spectra(basis: Basis, png: Path) -> Path:
    """S_i / S_0 per module on a log scale: how many directions carry the hack signal."""
    import matplotlib  # imported here: the CLI's start-up stays fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for s in basis.spectra.values():
        if s.numel() and float(s[0]) > 0:
            ax.semilogy(range(1, s.numel() + 1), (s / s[0]).numpy(), alpha=0.5, lw=1)
    ax.set_xlabel("singular value index of D (per module)")
    ax.set_ylabel("S_i / S_0")
    ax.set_title(f"hack-direction spectra ({len(basis.spectra)} modules)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
