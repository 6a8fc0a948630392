"""Compare the tables of two workflow runs: which are byte-identical, which differ only in float rounding, and
which differ in a value that was measured (a count, a label, a rate, a chosen layer).

Every .tsv, .md, .jsonl and .json under results/ (tables, metrics, generations, rankings, sweeps, data
splits) present in both runs is compared, and every .safetensors (checkpoints, caches, probes) byte for byte; wall-clock and memory columns (`*seconds*`, `*_s`, `max_rss*`,
`*minutes*`, `*gb*`) are left out, as are the run record and the logs. Two numbers agree when they are
within `--rtol` of each other (relative) or both under `--atol`.

    python benchmarks/compare_results.py RUN_A/results RUN_B/results [--rtol 1e-4]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from pathlib import Path

SUFFIXES = (".tsv", ".md", ".jsonl", ".json")
BINARY_SUFFIXES = (".safetensors",)  # weights and tensors: equal bytes or different, no tolerance
SKIP_PARTS = {"logs", "benchmarks", "run_record.json", "run_record.md"}
TIMING = re.compile(r"(seconds|_s$|^s$|max_rss|minutes|_gb|peak|wall|elapsed|time)", re.IGNORECASE)
NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def _close(a: str, b: str, rtol: float, atol: float) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= atol or abs(x - y) <= rtol * max(abs(x), abs(y))


def _tsv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def _compare_text(a: str, b: str, rtol: float, atol: float) -> bool:
    """Markdown / JSON / JSON lines: the same text once every number is compared with tolerance."""
    numbers_a, numbers_b = [m.group(0) for m in NUMBER.finditer(a)], [m.group(0) for m in NUMBER.finditer(b)]
    if NUMBER.sub("#", a) != NUMBER.sub("#", b) or len(numbers_a) != len(numbers_b):
        return False
    return all(_close(x, y, rtol, atol) for x, y in zip(numbers_a, numbers_b))


def compare(path_a: Path, path_b: Path, rtol: float, atol: float) -> str:
    """'identical', 'rounding' (numbers within tolerance) or 'different: <where>'."""
    a, b = path_a.read_bytes(), path_b.read_bytes()
    if a == b:
        return "identical"
    if path_a.suffix in BINARY_SUFFIXES:
        return "different: bytes"
    text_a, text_b = a.decode("utf-8"), b.decode("utf-8")
    if path_a.suffix == ".tsv":
        rows_a, rows_b = _tsv_rows(text_a), _tsv_rows(text_b)
        if len(rows_a) != len(rows_b) or (rows_a and list(rows_a[0]) != list(rows_b[0])):
            return "different: rows or columns"
        timing_only = True
        for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
            for column in ra:
                if ra[column] == rb[column]:
                    continue
                if TIMING.search(column or ""):
                    continue
                timing_only = False
                if not _close(ra[column], rb[column], rtol, atol):
                    return f"different: row {i + 1} column {column}: {ra[column]!r} vs {rb[column]!r}"
        return "timing columns only" if timing_only else "rounding"
    if path_a.suffix == ".json":
        try:
            ja, jb = json.loads(text_a), json.loads(text_b)
            ja, jb = ({k: v for k, v in j.items() if not TIMING.search(k)} if isinstance(j, dict) else j for j in (ja, jb))
            text_a, text_b = json.dumps(ja, sort_keys=True), json.dumps(jb, sort_keys=True)
            if text_a == text_b:
                return "timing columns only"
        except json.JSONDecodeError:
            pass
    return "rounding" if _compare_text(text_a, text_b, rtol, atol) else "different: text"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance (the speed issue's bound for ACIE)")
    args = parser.parse_args()
    files = sorted(p.relative_to(args.run_a) for p in args.run_a.rglob("*")
                   if p.is_file() and p.suffix in SUFFIXES + BINARY_SUFFIXES and not SKIP_PARTS & set(p.relative_to(args.run_a).parts))
    counts: dict[str, int] = {}
    for rel in files:
        other = args.run_b / rel
        verdict = compare(args.run_a / rel, other, args.rtol, args.atol) if other.is_file() else "missing in run B"
        kind = verdict.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
        if kind != "identical":
            print(f"{rel}\t{verdict}")
    print("\t".join(f"{k}: {v}" for k, v in sorted(counts.items())), f"(of {len(files)} files)")
    return 1 if any(k.startswith("different") or k.startswith("missing") for k in counts) else 0


if __name__ == "__main__":
    sys.exit(main())
