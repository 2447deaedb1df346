"""The paper's findings as ``make paper`` checks them: one verdict per finding (holds / does not
hold, with the numbers), and the stages' mean IU against a committed report (another machine's
run), so a reader on a new machine sees at once whether the findings reproduced."""
from __future__ import annotations

import json
from pathlib import Path

from fcn_deploy.errors import FcnDeployError

STAGES = ("fcn32s-vgg16", "fcn16s-vgg16", "fcn8s-vgg16")
NAMES = dict(zip(STAGES, ("FCN-32s", "FCN-16s", "FCN-8s")))
# What counts as reproduced: FCN-32s's share of FCN-8s's mean IU on every seed (the paper: 95%),
# the spread of a stage's mean IU over seeds, and its distance from the reference run's.
MIN_SHARE, MAX_SEED_SPREAD, MAX_REFERENCE_DIFF = 0.85, 0.02, 0.03
# Converged: the last epoch of every stage moves val mean IU by less than this.
MAX_LAST_EPOCH_CHANGE = 0.01
# Config keys that do not change what a stage learns: a reference may differ in these.
NOT_RECIPE = ("seeds", "bands", "amort_size", "amort_backends", "figure_images",
              "upsampling_variants", "jobs")


def _per_seed(stages: list[dict]) -> dict[int, dict[str, float]]:
    seeds: dict[int, dict[str, float]] = {}
    for r in stages:
        seeds.setdefault(r["seed"], {})[r["arch"]] = r["mean_iu"]
    return {s: v for s, v in seeds.items() if all(a in v for a in STAGES)}


def verdicts(stages: list[dict], summary: list[dict], reference: dict | None = None,
             config: dict | None = None) -> list[dict]:
    """[{"finding", "holds" (True, False, or None: not checked), "numbers"}] for the stages'
    rows, their ``stage_summary`` and, where given, a reference report (compared only when it
    ran the same recipe as ``config``)."""
    seeds, by_arch = _per_seed(stages), {r["arch"]: r for r in summary}
    order = [f"seed {s}: " + " < ".join(f"{v[a]:.3f}" for a in STAGES) for s, v in seeds.items()]
    shares = {s: share(v[STAGES[0]], v[STAGES[-1]]) for s, v in seeds.items()}
    first, last = by_arch[STAGES[0]], by_arch[STAGES[-1]]
    edge = last["boundary"][0]["mean_iu"] - first["boundary"][0]["mean_iu"]
    whole = last["mean_iu"] - first["mean_iu"]
    spreads = {a: by_arch[a]["mean_iu_spread"] for a in STAGES}
    out = [
        {"finding": "32s < 16s < 8s (mean IU) on every seed",
         "holds": all(v[STAGES[0]] < v[STAGES[1]] < v[STAGES[2]] for v in seeds.values()),
         "numbers": "; ".join(order)},
        {"finding": f"FCN-32s reaches at least {MIN_SHARE:.0%} of FCN-8s's mean IU on every seed",
         "holds": None if None in shares.values() else min(shares.values()) >= MIN_SHARE,
         "numbers": ", ".join(f"seed {s}: " + ("FCN-8s scored 0" if v is None else f"{v:.1%}")
                              for s, v in shares.items())},
        {"finding": f"FCN-8s's gain over FCN-32s within {first['boundary'][0]['band_px']} px of "
                    "an edge exceeds its gain on the whole image",
         "holds": edge > whole, "numbers": f"{edge:+.3f} near edges, {whole:+.3f} whole image"},
        {"finding": f"each stage's mean IU moves by at most {MAX_SEED_SPREAD} between seeds",
         "holds": len(seeds) > 1 and max(spreads.values()) <= MAX_SEED_SPREAD,
         "numbers": ", ".join(f"{NAMES[a]} {v:.3f}" for a, v in spreads.items())
         + ("" if len(seeds) > 1 else " (one seed: not checked)")},
    ]
    if len(seeds) < 2:
        out[-1]["holds"] = None
    out.append(_converged(stages))
    out.append(_against(by_arch, reference, config))
    return out


def share(coarse: float, fine: float) -> float | None:
    """``coarse`` mean IU as a fraction of ``fine``'s; None when ``fine`` scored 0 (a tiny run's
    net that learned nothing has no share to reach)."""
    return coarse / fine if fine else None


def _converged(stages: list[dict]) -> dict:
    finding = (f"training converged: each stage's last epoch moves val mean IU by less than "
               f"{MAX_LAST_EPOCH_CHANGE} on every seed")
    if min(len(r["curve"]) for r in stages) < 2:
        return {"finding": finding, "holds": None, "numbers": "a stage ran one epoch"}
    changes = {(r["arch"], r["seed"]): r["curve"][-1] - r["curve"][-2] for r in stages}
    return {"finding": finding,
            "holds": max(map(abs, changes.values())) < MAX_LAST_EPOCH_CHANGE,
            "numbers": ", ".join(f"{NAMES[a]} seed {s}: {d:+.3f}"
                                 for (a, s), d in changes.items())}


def _against(by_arch: dict, reference: dict | None, config: dict | None) -> dict:
    finding = (f"each stage's mean IU is within {MAX_REFERENCE_DIFF} of the reference run's")
    if reference is None:
        return {"finding": finding, "holds": None, "numbers": "no reference report given"}
    changed = _recipe_changes(reference.get("config"), config)
    if changed:
        return {"finding": finding, "holds": None,
                "numbers": f"the reference trained another recipe ({'; '.join(changed)})"}
    ref = {r["arch"]: r for r in reference["summary"]}
    diffs = {a: by_arch[a]["mean_iu"] - ref[a]["mean_iu"] for a in STAGES}
    return {"finding": finding, "holds": max(map(abs, diffs.values())) <= MAX_REFERENCE_DIFF,
            "numbers": ", ".join(f"{NAMES[a]} {by_arch[a]['mean_iu']:.3f} vs "
                                 f"{ref[a]['mean_iu']:.3f} ({d:+.3f})" for a, d in diffs.items())
            + f"; reference: {reference.get('machine_line', 'machine not recorded')}"}


def _recipe_changes(reference: dict | None, config: dict | None) -> list[str]:
    """``key reference -> this run`` for each recipe setting that differs (both as JSON)."""
    if reference is None or config is None:
        return []
    ours = json.loads(json.dumps(config))
    return [f"{k} {json.dumps(reference.get(k))} -> {json.dumps(ours.get(k))}"
            for k in sorted(set(reference) | set(ours))
            if k not in NOT_RECIPE and reference.get(k) != ours.get(k)]


def load_reference(path: Path) -> dict:
    """A committed report.json's summary, recipe and machine; FcnDeployError when it is none."""
    try:
        report = json.loads(Path(path).read_text())
        summary = report["summary"]
        missing = [a for a in STAGES if a not in {r["arch"] for r in summary}]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FcnDeployError(f"--reference {path}: not a reproduce report.json ({e})") from None
    if missing:
        raise FcnDeployError(f"--reference {path}: has no {', '.join(missing)}")
    return {"summary": summary, "config": report.get("config"),
            "machine_line": _machine(report.get("machine"))}


def _machine(machine: dict | None) -> str:
    if not machine:
        return "machine not recorded"
    limits = "".join(f", {k}={v}" for k, v in machine.get("kernel_limits", {}).items())
    return (f"{machine.get('cpu', '?')}, flags "
            f"{', '.join(machine.get('cpu_flags', [])) or 'none'}{limits}")


def verdict_lines(found: list[dict]) -> list[str]:
    """One line per finding: ``holds:``, ``does not hold:`` or ``not checked:``."""
    word = {True: "holds", False: "does not hold", None: "not checked"}
    return [f"{word[v['holds']]}: {v['finding']} ({v['numbers']})" for v in found]
