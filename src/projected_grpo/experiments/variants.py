"""The dose-response section of a report with [variants]: each variant changes one or a few settings of
its arm, so the variants of one arm sharing the changed keys (say `basis.k_use`) form a dose axis, with
the arm itself at the setting [train] gives it. One table and one plot (dose.png) of the held-out hack
cut against same-seed vanilla along each axis, the controls drawn as reference lines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from projected_grpo.experiments.markdown import markdown_table


def _flat(table: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in table.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


def _setting(run_dir: Path, column: str, seeds: list[int], key: str) -> object:
    """The value of `key` ("basis.k_use") in a cell's resolved config.json (the arm's default if None)."""
    for seed in seeds:
        path = run_dir / "cells" / f"{column}-s{seed}" / "config.json"
        if path.is_file():
            value = json.loads(path.read_text())
            for part in key.split("."):
                value = value[part]
            return "arm default" if value is None else value
    return "?"


def _order(value: object) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def dose_axes(run_dir: Path, exp: dict) -> dict[str, list[tuple[object, str]]]:
    """axis name ("erase: basis.k_use") → [(setting, column)], sorted by setting, the arm itself included."""
    axes: dict[str, list[tuple[object, str]]] = {}
    for name, table in exp.get("variants", {}).items():
        arm, changed = table["arm"], _flat({k: v for k, v in table.items() if k != "arm"})
        axis = f"{arm}: {', '.join(sorted(changed))}"
        if axis not in axes and arm in exp["arms"]:
            axes[axis] = [(tuple(_setting(run_dir, arm, exp["seeds"], k) for k in sorted(changed)), arm)]
        axes.setdefault(axis, []).append((tuple(changed[k] for k in sorted(changed)), name))
    single = lambda s: s[0] if len(s) == 1 else s  # noqa: E731  (one changed key: its value, not a 1-tuple)
    return {a: sorted([(single(s), c) for s, c in points], key=lambda p: _order(p[0])) for a, points in axes.items()}


def dose_section(run_dir: Path, exp: dict, paired: dict, kinds: dict[str, str]) -> tuple[list[str], dict]:
    """Markdown lines and summary data of the dose-response section; ([], {}) without variants."""
    axes = dose_axes(run_dir, exp)
    if not axes:
        return [], {}
    stat = lambda d: (float(np.mean(d)), float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan"))  # noqa: E731
    pp = lambda m, s: f"{100 * m:+.1f}" + ("" if math.isnan(s) else f" ± {100 * s:.1f}")  # noqa: E731
    rows, data = [], {"axes": {}, "controls": {}}
    for axis, points in axes.items():
        got = [(setting, col) for setting, col in points if col in paired]
        data["axes"][axis] = [{"setting": setting, "column": col, "d_hack": stat(paired[col]["d_hack"]),
                               "d_solve": stat(paired[col]["d_solve"]), "n": len(paired[col]["d_hack"])}
                              for setting, col in got]
        rows += [[axis, str(p["setting"]), p["column"], pp(*p["d_hack"]), pp(*p["d_solve"]), p["n"]]
                 for p in data["axes"][axis]]
    for col in exp["arms"]:
        if kinds[col] == "control" and col in paired:
            data["controls"][col] = {"d_hack": stat(paired[col]["d_hack"]), "d_solve": stat(paired[col]["d_solve"]),
                                     "n": len(paired[col]["d_hack"])}
            c = data["controls"][col]
            rows.append(["control", "—", col, pp(*c["d_hack"]), pp(*c["d_solve"]), c["n"]])
    if not rows:  # no variant (or no vanilla) finished yet
        return [], {}
    lines = ["", "## Dose-response", "",
             "Each axis varies one setting of an arm (the arm itself sits at the setting [train] gives it); "
             "Δ = eval (held-out, loophole slice) minus same-seed vanilla, in pp, mean ± SEM over seeds. "
             "Negative Δ hack = hacking cut.", "",
             markdown_table(["axis", "setting", "column", "Δ hack (pp)", "Δ solve (pp)", "seeds"], rows)]
    if plot_dose(run_dir, data):
        lines += ["", "![dose-response](dose.png)"]
    return lines, data


def plot_dose(run_dir: Path, data: dict) -> Path | None:
    """One panel per axis: Δ held-out hack (pp, ± SEM) against the setting; controls as dashed lines."""
    axes = {a: p for a, p in data["axes"].items() if p}
    if not axes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, len(axes), figsize=(3.6 * len(axes) + 1, 3.8), sharey=True, squeeze=False)
    for ax, (axis, points) in zip(panels[0], axes.items()):
        x = np.arange(len(points))
        y = [100 * p["d_hack"][0] for p in points]
        err = [0.0 if math.isnan(p["d_hack"][1]) else 100 * p["d_hack"][1] for p in points]
        ax.errorbar(x, y, yerr=err, fmt="o-", color="tab:blue", capsize=3)
        for i, (name, c) in enumerate(data["controls"].items()):
            ax.axhline(100 * c["d_hack"][0], color=plt.get_cmap("Greys")(0.4 + 0.15 * i), linestyle="--", linewidth=1,
                       label=name)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, [str(p["setting"]) for p in points], rotation=30, fontsize=8)
        ax.set_title(axis, fontsize=9)
        ax.grid(alpha=0.3)
    panels[0][0].set_ylabel("Δ held-out hack vs vanilla (pp)")
    if data["controls"]:
        panels[0][-1].legend(fontsize=7, title="controls", title_fontsize=7)
    fig.tight_layout()
    out = run_dir / "dose.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
