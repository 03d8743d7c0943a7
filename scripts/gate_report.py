"""A Markdown summary of a build's gate log (``gates.<bank>.jsonl``), for write-ups.

    python scripts/gate_report.py outputs/build/memcollab_large/gates.memcollab_large.jsonl [--lessons N]

It prints how many candidates each gate stopped, re-solve against its placebo (a 2 x 2 table of
lessons), the held-out flips of every lesson that reached held-out validation, and the text of the
admitted lessons (and of up to N lessons stopped at each evidence gate), so the question "what did
the gates reject, and what do the admitted lessons say" is answered from the records alone.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from memcollab_eval.construct.evidence import sign_test_p
from memcollab_eval.construct.gate_log import Candidate, read_gate_log


def lesson_text(c: Candidate, width: int = 160) -> str:
    text = f"enforce {c.enforce}; avoid {c.avoid}".replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def counts_table(log: list[Candidate]) -> list[str]:
    counts = Counter(c.gate for c in log)
    lines = ["| gate | candidates |", "| --- | --- |"]
    lines += [f"| {gate} | {n} |" for gate, n in counts.most_common()]
    lines.append(f"| all | {len(log)} |")
    return lines


def placebo_table(log: list[Candidate]) -> list[str]:
    paired = [(c.evidence["resolve"]["passed"] > 0, c.evidence["resolve"]["placebo_passed"] > 0)
              for c in log if "placebo_passed" in c.evidence.get("resolve", {})]
    if not paired:
        return ["No re-solve placebo was recorded."]
    cell = Counter(paired)
    own_only, placebo_only = cell[(True, False)], cell[(False, True)]
    return ["| own lesson \\ placebo | passed | failed |", "| --- | --- | --- |",
            f"| passed | {cell[(True, True)]} | {own_only} |",
            f"| failed | {placebo_only} | {cell[(False, False)]} |",
            "", f"{len(paired)} lessons; own text passed {own_only + cell[(True, True)]}, the placebo "
            f"{placebo_only + cell[(True, True)]}; one-sided sign test on the discordant lessons: "
            f"p = {sign_test_p(own_only, placebo_only):.3f}."]


def heldout_table(log: list[Candidate]) -> list[str]:
    tried = [c for c in log if "heldout" in c.evidence]
    if not tried:
        return ["No lesson reached held-out validation."]
    lines = ["| lesson | category | tried (failing without memory) | fixed | broken | p | gate |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in sorted(tried, key=lambda c: (c.category, -len(c.evidence["heldout"]["fixed"]))):
        h = c.evidence["heldout"]
        lines.append(f"| {c.bank_id or c.key} | {c.category} | {h['tried']} ({h['failing_tried']}) | "
                     f"{len(h['fixed'])} | {len(h['broken'])} | {h['p_value']:.3f} | {c.gate} |")
    fixed = sum(len(c.evidence["heldout"]["fixed"]) for c in tried)
    broken = sum(len(c.evidence["heldout"]["broken"]) for c in tried)
    failing = sum(c.evidence["heldout"]["failing_tried"] for c in tried)
    passing = sum(c.evidence["heldout"]["tried"] - c.evidence["heldout"]["failing_tried"] for c in tried)
    lines += ["", f"Over the {len(tried)} lessons: {fixed} fixed of {failing} answers on problems the target fails "
              f"without memory; {broken} broken of {passing} on problems it passes."]
    return lines


def lesson_lists(log: list[Candidate], per_gate: int) -> list[str]:
    lines = []
    admitted = [c for c in log if c.gate == "admitted"]
    lines += [f"Admitted ({len(admitted)}):", ""]
    lines += [f"- `{c.bank_id or c.key}` ({c.category}, from {c.source_problem_id}): {lesson_text(c)}"
              for c in admitted] or ["- none"]
    for gate in ("failed_heldout", "failed_resolve"):
        stopped = [c for c in log if c.gate == gate]
        if stopped:
            lines += ["", f"Stopped at {gate} ({len(stopped)}; the first {min(per_gate, len(stopped))}):", ""]
            lines += [f"- {c.category}, from {c.source_problem_id}: {lesson_text(c)}" for c in stopped[:per_gate]]
    return lines


def report(path: Path, per_gate: int = 5) -> str:
    log = read_gate_log(path)
    parts = [f"# Gates of {path.name}", "", "## What each gate stopped", "", *counts_table(log),
             "", "## Re-solve against its placebo", "", *placebo_table(log),
             "", "## Held-out validation", "", *heldout_table(log),
             "", "## The lessons", "", *lesson_lists(log, per_gate)]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="a gates.<bank>.jsonl file from a build's work directory")
    parser.add_argument("--lessons", type=int, default=5, help="lessons listed per evidence gate that stopped them")
    args = parser.parse_args()
    if not args.log.exists():
        parser.error(f"{args.log} does not exist (a build writes gates.<bank.name>.jsonl in its work_dir)")
    print(report(args.log, args.lessons), end="")


if __name__ == "__main__":
    main()
