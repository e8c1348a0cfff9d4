"""``python -m bench [--quick] [--only SECTION] [--results]``: the benchmarks, as one table (`make bench`).

Each figure is set against a baseline measured in the same run (the same work by atlassian-jwt on Node,
``import boto3, jwt``, the same authorization with a small table...), so the ratio holds on a loaded machine.
Budgets are printed, never asserted: the command fails only when a measurement itself fails.

  --quick            small sizes and few iterations (well under a minute): proves the benchmarks work
  --only SECTION     one section: 1-7 or warm, cold, aws, tokens, scale, size, forge
  --results          also rewrite bench/RESULTS.md with the table, the date, the machine and the method
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from types import ModuleType

from bench import awscalls, cold, footprint, forge, scale, single_flight, warm
from bench.common import BENCH, FAILED, NEAR, OVER, Options, Row, SectionResult, load_average, machine

SECTIONS: list[ModuleType] = [warm, cold, awscalls, single_flight, scale, footprint, forge]
COLUMNS = ("section", "measure", "figure", "baseline", "ratio", "budget", "verdict")
RESULTS = BENCH / "RESULTS.md"


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def select(only: str | None) -> list[ModuleType]:
    if only is None:
        return SECTIONS
    for number, section in enumerate(SECTIONS, start=1):
        if only in (str(number), section.KEY):
            return [section]
    keys = ", ".join(f"{n} or {s.KEY}" for n, s in enumerate(SECTIONS, start=1))
    raise SystemExit(f"unknown section {only!r}: choose {keys}")


def run_sections(sections: list[ModuleType], options: Options) -> list[tuple[ModuleType, SectionResult, float]]:
    done = []
    for section in sections:
        say(f"{section.TITLE} ...")
        started = time.monotonic()
        try:
            result = section.run(options)
        except Exception as exc:
            traceback.print_exc()
            number = str(SECTIONS.index(section) + 1)
            result = SectionResult([Row(number, f"{section.TITLE}: the measurement failed", type(exc).__name__)])
            result.rows[0].verdict = FAILED
            result.details.append(f"{type(exc).__name__}: {exc}")
        seconds = time.monotonic() - started
        say(f"{section.TITLE}: done in {seconds:.0f} s")
        done.append((section, result, seconds))
    return done


def cells(row: Row) -> list[str]:
    return [getattr(row, column) for column in COLUMNS]


def text_table(rows: list[Row]) -> str:
    table = [list(COLUMNS), *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [" | ".join(value.ljust(widths[i]) for i, value in enumerate(line)).rstrip() for line in table]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    def escape(value: str) -> str:
        return value.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(escape(value) for value in cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def code_state() -> tuple[str, str]:
    """The commit measured, and what is uncommitted under layers/ and functions/ (the code under measurement)."""

    def git(*args: str) -> str:
        try:
            completed = subprocess.run(
                ["git", *args], cwd=BENCH.parent, capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return "?"
        return completed.stdout

    changed = git("status", "--porcelain", "--", "layers", "functions")
    return git("rev-parse", "--short", "HEAD").strip(), " ".join(line[3:] for line in changed.splitlines() if line)


def code_line(before: tuple[str, str], after: tuple[str, str]) -> str:
    line = f"- code measured: commit {before[0]}"
    line += f", with uncommitted changes in {before[1]}" if before[1] else " (layers/ and functions/ as committed)"
    if after != before:
        line += f"; changed while the benchmark ran (commit {after[0]}, uncommitted: {after[1] or 'none'})"
    return line


def write_results(
    done: list[tuple[ModuleType, SectionResult, float]],
    options: Options,
    load: tuple[str, str],
    code: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    rows = [row for _, result, _ in done for row in result.rows]
    info = machine()
    over = [row for row in rows if row.verdict in (OVER, FAILED)]
    near = [row for row in rows if row.verdict == NEAR]
    lines = [
        "# Benchmark results",
        "",
        f"`.venv/bin/python -m bench{' --quick' if options.quick else ''} --results` (`make bench` prints the same "
        "table without writing this file). Every ratio is against a baseline measured in the same run; budgets are "
        "from issues 6 and 13.",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['architecture']}, {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}",
        f"- Python {info['python']}, Node {info['node']} with atlassian-jwt {info['atlassian-jwt']} "
        f"and jose {info['jose']}",
        code_line(*code),
        f"- load average (1, 5, 15 min) at the start: {load[0]}; at the end: {load[1]}. The machine is shared with "
        "other work: absolute figures move with it, which is why every figure is set against a baseline measured "
        "in turns with it.",
        f"- run time: {sum(seconds for _, _, seconds in done):.0f} s "
        + "("
        + ", ".join(f"section {SECTIONS.index(s) + 1} {seconds:.0f} s" for s, _, seconds in done)
        + ")",
        "",
        markdown_table(rows),
        "",
        "Budgets missed: "
        + ("none." if not over else "; ".join(f"section {row.section}, {row.measure} ({row.ratio})" for row in over)),
        "",
        "Near the limit (within, by less than the 5 % a timed ratio moves between runs here): "
        + ("none." if not near else "; ".join(f"section {row.section}, {row.measure} ({row.ratio})" for row in near)),
        "",
    ]
    for section, result, _ in done:
        lines += [f"## {section.TITLE}", "", section.METHOD, ""]
        if result.details:
            lines += ["```", *result.details, "```", ""]
    RESULTS.write_text("\n".join(lines))
    say(f"wrote {RESULTS.relative_to(BENCH.parent)}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few iterations (the test suite uses it)")
    parser.add_argument("--only", metavar="SECTION", help="1-7 or " + ", ".join(s.KEY for s in SECTIONS))
    parser.add_argument("--results", action="store_true", help="rewrite bench/RESULTS.md")
    args = parser.parse_args()
    options = Options(quick=args.quick)
    sections = select(args.only)
    load_before, code_before = load_average(), code_state()
    done = run_sections(sections, options)
    load_after, code_after = load_average(), code_state()
    rows = [row for _, result, _ in done for row in result.rows]
    print(text_table(rows))
    for section, result, _ in done:
        if result.details:
            print(f"\n{section.TITLE}")
            print("\n".join(f"  {line}" for line in result.details))
    print(f"\nload average before {load_before}, after {load_after}")
    if args.results:
        write_results(done, options, (load_before, load_after), (code_before, code_after))
    return 1 if any(row.verdict == FAILED for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
