"""Which samplers meet both of #13's per-task rules, and how many tasks any inference rule could
meet them on in hindsight: from ``suite_large_n.py`` outputs of inference rules on the same
training runs (no sampling).

Per task and sampler, from the paired intervals each file stores (the same rules as
``suite_large_n.py``'s summary and the suite):

* *reached*: SW2 minus the best grid point's, paired on the evaluation seeds, at most +1 std of
  the pairing (:func:`~diffgym.benchmarks.suite_outcomes.reached`);
* *masses kept*: mode TV minus the default sampler's, paired, with a mean at or below 0.

The samplers: each ``--rule LABEL FILE [FILE ...]``'s ``learned`` row (the rule the comparison
chose, under LABEL; several files pool their tasks, and a task met again in a later file is
taken from that file, in its first place: a re-scoring of the tasks whose choice changed), and
from the first rule's files the ``greedy`` and ``mean`` policy rows (when scored), the best grid
point and the default sampler.
Per sampler: the tasks reached, with the masses kept, and with both. Then the *hindsight bound*:
the tasks where at least one of the rules' rows, greedy, mean or the default sampler (which the
inference guard may choose) meets both rules.
Choosing per task with knowledge of the evaluation seeds, no choice among those samplers can do
better. A rule that meets both suite targets (:data:`~diffgym.benchmarks.suite_outcomes.TARGETS`:
reached on at least 80 % of the tasks, masses kept on at least 90 %) meets both rules on at least
``ceil(0.8 n) + ceil(0.9 n) - n`` of the n tasks (``both_needed``), so a bound below that says
that no per-task choice among those samplers, on the search seed or in hindsight, meets them.

    python benchmarks/scripts/rule_frontier.py \\
        --rule chosen benchmarks/results/suite_large_n/dev-rf-base-mean-n16384.json \\
                      benchmarks/results/suite_large_n/dev-rf-base-mean-8-15-n16384.json \\
        --rule guard benchmarks/results/suite_large_n/dev-rf-g2-n16384.json \\
                     benchmarks/results/suite_large_n/dev-rf-g2-8-15-n16384.json \\
        --out benchmarks/results/rule_frontier/rf-dev-0-15.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from diffgym.benchmarks.suite_outcomes import TARGETS, reached
from diffgym.envs.io import atomic_write_json

POLICY_ROWS = ("greedy", "mean")
"""Policy rows of the first rule's files that join the hindsight bound when present."""


def _tasks(files: list[Path]) -> list[dict[str, Any]]:
    """The tasks of ``files`` in order; a task met again in a later file replaces the earlier
    one in its place (a re-scoring of only the tasks whose choice changed)."""
    pooled: dict[str, dict[str, Any]] = {}
    for f in files:
        for t in json.loads(f.read_text())["tasks"]:
            pooled[t["task"]] = t
    return list(pooled.values())


def verdicts(task: dict[str, Any], row: str) -> dict[str, bool]:
    """``reached`` and ``masses_kept`` of one sampler row of a ``suite_large_n.py`` task."""
    paired = task["paired"]
    if row == "grid":
        reach = True  # the best grid point itself
    else:
        i = paired[f"{row}-grid:sw2"]
        reach = bool(reached(i["mean"], i["std"]))
    kept = row == "default" or paired[f"{row}-default:mode_tv"]["mean"] <= 0.0
    return {"reached": reach, "masses_kept": bool(kept), "both": reach and bool(kept)}


def frontier(rules: list[tuple[str, list[Path]]]) -> dict[str, Any]:
    """Per task the verdicts of every sampler, per sampler the counts, and the hindsight bound.

    Raises:
        SystemExit: an empty or repeated label, a label that names a reference row, or rules
            whose files hold other tasks or seeds than the first rule's.
    """
    labels = [label for label, _ in rules]
    if len(set(labels)) != len(labels) or not all(labels):
        raise SystemExit(f"rule labels must be distinct and non-empty, got {labels}")
    clash = set(labels) & {*POLICY_ROWS, "grid", "default"}
    if clash:
        raise SystemExit(f"rule labels {sorted(clash)} name rows of the files; choose others")
    by_rule = {label: _tasks(files) for label, files in rules}
    first = by_rule[labels[0]]
    keys = [(t["task"], t["seeds"]) for t in first]
    for label, tasks in by_rule.items():
        got = [(t["task"], t["seeds"]) for t in tasks]
        if got != keys:
            raise SystemExit(f"rule {label!r} holds tasks/seeds {got}, rule {labels[0]!r} "
                             f"{keys}: give the same tasks in the same order")
    extra = [r for r in POLICY_ROWS if all(f"{r}-grid:sw2" in t["paired"] for t in first)]
    policy = [*labels, *extra]
    per_task = []
    for i, task in enumerate(first):
        rows = {label: verdicts(by_rule[label][i], "learned") for label in labels}
        rows.update({r: verdicts(task, r) for r in (*extra, "grid", "default")})
        per_task.append({"task": task["task"], "rows": rows,
                         "any_policy_both": any(rows[r]["both"] for r in (*policy, "default"))})
    counts = {r: {k: sum(t["rows"][r][k] for t in per_task)
                  for k in ("reached", "masses_kept", "both")}
              for r in (*policy, "grid", "default")}
    n = len(per_task)
    need = (math.ceil(TARGETS["reached"] * n - 1e-9) + math.ceil(TARGETS["mode_tv"] * n - 1e-9)
            - n)
    return {"tasks": n, "policy_rows": policy, "counts": counts,
            "hindsight_both": sum(t["any_policy_both"] for t in per_task),
            "both_needed": max(need, 0), "per_task": per_task}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rule", nargs="+", action="append", required=True, metavar="LABEL FILE",
                   help="a label and the suite_large_n files of one inference rule (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="JSON output (atomic; optional)")
    args = p.parse_args(argv)
    rules = []
    for spec in args.rule:
        if len(spec) < 2:
            p.error(f"--rule needs a label and at least one file, got {spec}")
        rules.append((spec[0], [Path(f) for f in spec[1:]]))
    out = frontier(rules)
    if args.out is not None:  # written first: a closed stdout (``| head``) must not lose it
        atomic_write_json(args.out, {"argv": argv if argv is not None else sys.argv[1:], **out})
    n = out["tasks"]
    for row, c in out["counts"].items():
        print(f"{row:>10}: reached {c['reached']}/{n}, masses kept {c['masses_kept']}/{n}, "
              f"both {c['both']}/{n}")
    print(f"hindsight: one of {', '.join(out['policy_rows'])} or default meets both on "
          f"{out['hindsight_both']}/{n} tasks; a rule meeting both targets needs both on >= "
          f"{out['both_needed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
