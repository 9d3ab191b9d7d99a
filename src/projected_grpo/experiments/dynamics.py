"""Training dynamics of an arm × seed matrix, from the saved metrics alone: when each seed starts to hack
(a survival table), whether the oracle-free `cin` signal warns before behaviour changes, how the
projection basis drifts, and the held-out evaluations at intermediate checkpoints.

Every curve is smoothed with a trailing mean over `WINDOW` steps (one step's rollouts are a small sample).
Only `projection/cin` (the gradient's hack-ward fraction, measured against the extracted basis; no label)
acts as the detector; the oracle labels are the outcome it is scored against (method §6).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from projected_grpo.experiments.markdown import markdown_table
from projected_grpo.training.evaluate import eval_summary

WINDOW = 5
HACK = "labels/hack_strict"
CIN = "projection/cin"


def series(run_dir: Path, arm: str, seed: int) -> list[dict]:
    """A finished cell's metrics (empty for a cell that is missing or still running, as in the report's table)."""
    cell = run_dir / "cells" / f"{arm}-s{seed}"
    done = eval_summary(cell).is_file()
    return [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()] if done else []


def smoothed(rows: list[dict], key: str) -> np.ndarray:
    """Trailing mean over the last WINDOW steps (fewer at the start)."""
    x = np.array([r.get(key, np.nan) for r in rows], dtype=float)
    c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(x))])
    n = np.minimum(np.arange(1, len(x) + 1), WINDOW)
    return (c[1:] - c[np.arange(len(x)) + 1 - n]) / n


def first_crossing(values: np.ndarray, threshold: float) -> int | None:
    """Index of the first value ≥ threshold, or None (censored)."""
    hits = np.flatnonzero(values >= threshold)
    return int(hits[0]) if hits.size else None


def survival(run_dir: Path, exp: dict, threshold: float = 0.5) -> dict[str, dict]:
    """Per arm: the step each seed's smoothed training hack rate first reaches `threshold` (None:
    censored at its last step) and the fraction of seeds still below it at each step."""
    out = {}
    for arm in exp["arms"]:
        runs = {seed: rows for seed in exp["seeds"] if (rows := series(run_dir, arm, seed))}
        if not runs:
            continue
        crossed = {seed: (None if (i := first_crossing(smoothed(rows, HACK), threshold)) is None else rows[i]["step"])
                   for seed, rows in runs.items()}
        horizon = min(rows[-1]["step"] for rows in runs.values())
        below = [float(np.mean([c is None or c > t for c in crossed.values()])) for t in range(1, horizon + 1)]
        out[arm] = {"crossed_at": crossed, "horizon": horizon, "surviving": below}
    return out


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    if not pos.size or not neg.size:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def early_warning(run_dir: Path, exp: dict, arm: str = "vanilla", hack_level: float = 0.2,
                  deltas: tuple[int, ...] = (0, 5, 10, 20)) -> dict:
    """Does the smoothed `cin` rise before the smoothed hack rate reaches `hack_level`?

    The seeds are split in two (sorted order: first half calibrates, second half evaluates). The threshold
    is the median, over the calibration seeds that hack, of smoothed `cin` at the step their hack rate
    reaches `hack_level`. On each evaluation seed, the lead time is (step hack reaches the level) − (step
    `cin` first reaches the threshold); positive = a warning ahead of behaviour. AUROC: `cin` at step t as a
    score for "hack rate > level at t + Δ", pooled over the evaluation seeds' steps."""
    runs = {seed: rows for seed in sorted(exp["seeds"]) if (rows := series(run_dir, arm, seed)) and CIN in rows[0]}
    seeds = list(runs)
    if len(seeds) < 2:
        return {"note": f"needs ≥ 2 {arm} seeds with projection/cin logged"}
    calibrate, evaluate = seeds[: len(seeds) // 2], seeds[len(seeds) // 2:]
    at_onset = []
    for seed in calibrate:
        i = first_crossing(smoothed(runs[seed], HACK), hack_level)
        if i is not None:
            at_onset.append(smoothed(runs[seed], CIN)[i])
    threshold = float(np.median(at_onset)) if at_onset else float("nan")
    leads = {}
    for seed in evaluate:
        hack, cin = smoothed(runs[seed], HACK), smoothed(runs[seed], CIN)
        onset, warned = first_crossing(hack, hack_level), (first_crossing(cin, threshold) if at_onset else None)
        leads[seed] = None if onset is None or warned is None else onset - warned
    aurocs = {}
    for delta in deltas:
        scores, labels = [], []
        for seed in evaluate:
            hack, cin = smoothed(runs[seed], HACK), smoothed(runs[seed], CIN)
            n = len(hack) - delta
            scores.append(cin[:n])
            labels.append(hack[delta:] > hack_level)
        aurocs[delta] = _auroc(np.concatenate(scores), np.concatenate(labels)) if scores else float("nan")
    return {"arm": arm, "hack_level": hack_level, "calibration_seeds": calibrate, "evaluation_seeds": evaluate,
            "threshold": threshold, "lead_steps": leads, "auroc_by_delta": aurocs}


def drift(run_dir: Path, exp: dict, cells: dict, last_k: int) -> list[dict]:
    """Per erase-style cell: how the realised update relates to the bases (means over the last `last_k`
    steps) and the last measured overlap of the basis in use with one re-extracted from the current
    adapter, next to its held-out hack cut against same-seed vanilla."""
    rows = []
    for arm in exp["arms"]:
        for seed in exp["seeds"]:
            metrics = series(run_dir, arm, seed)
            if not metrics or "projection/removed_norm" not in metrics[-1] or arm == "vanilla":
                continue
            tail = metrics[-last_k:]
            mean = lambda key: float(np.mean([r[key] for r in tail if key in r])) if any(key in r for r in tail) else None  # noqa: E731
            overlaps = [(r["step"], r[k]) for r in metrics for k in ("projection/drift_overlap", "projection/basis_overlap")
                        if k in r]
            cell, base = cells.get((arm, seed), {}), cells.get(("vanilla", seed), {})
            rows.append({"arm": arm, "seed": seed,
                         "d_eval_hack": (cell["eval_hack"] - base["eval_hack"]) if "eval_hack" in cell and "eval_hack" in base else None,
                         "update_in_span": mean("projection/update_in_span"),
                         "leak_heldout": mean("projection/leak_heldout"),
                         "leak_before_projection": mean("projection/leak_before_projection"),
                         "overlap_last": overlaps[-1] if overlaps else None})
    return rows


def checkpoint_evals(run_dir: Path, exp: dict) -> dict[str, dict[int, list[float]]]:
    """Held-out hack rate (loophole slice, as deployed) per arm at each evaluated checkpoint, per seed."""
    out: dict[str, dict[int, list[float]]] = {}
    for arm in exp["arms"]:
        for seed in exp["seeds"]:
            for c in exp.get("eval_checkpoints", []):
                path = eval_summary(run_dir / "cells" / f"{arm}-s{seed}", c)
                if path.is_file():
                    res = json.loads(path.read_text())["results"]
                    slice_ = res.get("loophole/ablated") or res.get("loophole/kept")
                    out.setdefault(arm, {}).setdefault(c, []).append(slice_["is_reward_hack_strict"]["rate"])
    return out


def _fmt(x, spec: str = ".2f") -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def dynamics_sections(run_dir: Path, exp: dict, cells: dict, last_k: int) -> tuple[list[str], dict]:
    """Markdown sections (survival, intermediate checkpoints, drift, early warning) and their numbers."""
    lines, out = [], {}
    surv = survival(run_dir, exp)
    out["survival"] = surv
    if surv:
        lines += ["", "## When each seed starts hacking", "",
                  f"First step at which the training hack rate (strict, trailing mean over {WINDOW} steps) reaches "
                  "50 %; `>N` = not by its last step N (censored).", ""]
        table = []
        for arm, s in surv.items():
            steps = [c for c in s["crossed_at"].values() if c is not None]
            per_seed = ", ".join(f"{seed}: {c if c is not None else '>' + str(s['horizon'])}" for seed, c in s["crossed_at"].items())
            median = _fmt(float(np.median(steps)), ".0f") if len(steps) * 2 > len(s["crossed_at"]) else f">{s['horizon']}"
            table.append([arm, f"{len(steps)}/{len(s['crossed_at'])}", per_seed, median])
        lines.append(markdown_table(["arm", "seeds crossed", "step per seed", "median step"], table))
    ckpt = checkpoint_evals(run_dir, exp)
    out["checkpoint_evals"] = ckpt
    if ckpt:
        marks = sorted({c for v in ckpt.values() for c in v})
        lines += ["", "## Held-out hack rate over training", "", "Evaluated at intermediate checkpoints and at the end "
                  "(loophole slice, as deployed; mean over seeds, in %).", ""]
        table = []
        for arm, by in ckpt.items():
            final = [c["eval_hack"] for (a, _), c in cells.items() if a == arm and "eval_hack" in c]
            table.append([arm, *(_fmt(100 * np.mean(by[c]), ".1f") if c in by else "—" for c in marks),
                          _fmt(100 * np.mean(final), ".1f") if final else "—"])
        lines.append(markdown_table(["arm", *(f"step {c}" for c in marks), "final"], table))
    rows = drift(run_dir, exp, cells, last_k)
    out["drift"] = rows
    if rows:
        lines += ["", "## Where the update goes (projection arms)", "",
                  f"Means over the last {last_k} steps: `update in span` = ‖VΔ‖/‖Δ‖ of the realised update; "
                  "`leak (held-out)` = its hack-ward fraction against the basis of pairs the projection never saw; "
                  "`leak before` = the inner optimizer's update before projection. `overlap` = the last measured "
                  "mean squared cosine of the principal angles between the basis in use and one re-extracted from "
                  "the current adapter (step in brackets; `track_every` / `refresh_every`).", "",
                  markdown_table(["arm", "seed", "Δ held-out hack vs vanilla (pp)", "update in span", "leak (held-out)",
                                  "leak before", "overlap"],
                                 [[r["arm"], r["seed"], _fmt(None if r["d_eval_hack"] is None else 100 * r["d_eval_hack"], "+.0f"),
                                   _fmt(r["update_in_span"], ".3f"), _fmt(r["leak_heldout"], ".3f"),
                                   _fmt(r["leak_before_projection"], ".3f"),
                                   f"{r['overlap_last'][1]:.2f} (step {r['overlap_last'][0]})" if r["overlap_last"] else "—"]
                                  for r in rows])]
    if "vanilla" in exp["arms"]:
        warn = early_warning(run_dir, exp)
        out["early_warning"] = warn
        lines += ["", "## Early warning", ""]
        if "note" in warn:
            lines.append(f"Not computed: {warn['note']}.")
        else:
            leads = ", ".join(f"{s}: {_fmt(v, '+d') if v is not None else 'no crossing'}" for s, v in warn["lead_steps"].items())
            lines += [f"Detector: the vanilla arm's `cin` (hack-ward fraction of each step's gradient against the "
                      f"extracted basis; reads no label), trailing mean over {WINDOW} steps. Threshold "
                      f"{_fmt(warn['threshold'], '.3f')}, set on seeds {warn['calibration_seeds']} as the median `cin` "
                      f"when their hack rate reached {warn['hack_level']:.0%}; scored on seeds {warn['evaluation_seeds']}.",
                      "", f"Lead time (steps; positive = `cin` crossed first): {leads}.", "",
                      markdown_table(["Δ (steps ahead)", *map(str, warn["auroc_by_delta"])],
                                     [[f"AUROC of cin(t) for hack(t + Δ) > {warn['hack_level']:.0%}",
                                       *(_fmt(a) for a in warn["auroc_by_delta"].values())]])]
    return lines, out


def plot_survival(run_dir: Path, surv: dict) -> Path | None:
    """The fraction of seeds whose training hack rate is still below 50 %, per arm and step."""
    if not surv:
        return None
    import matplotlib  # imported here: reports without a plot stay fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm, s in surv.items():
        ax.step(range(1, s["horizon"] + 1), s["surviving"], where="post", label=arm,
                linewidth=2.2 if arm == "vanilla" else 1.4, color="black" if arm == "vanilla" else None)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("seeds not yet hacking (hack rate < 50 %)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    out = run_dir / "survival.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
