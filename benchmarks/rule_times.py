"""Wall time and peak memory of every rule from the workflow's `benchmark:` files, per job and per stage.

    python benchmarks/rule_times.py [--results results] [--out benchmarks/results/rule_times.tsv]

The per-stage lines (minutes summed over the stage's jobs, the largest `max_rss` of any of them) are also
printed as a Markdown table for the README.
"""

import argparse
from collections import defaultdict
from pathlib import Path

from common import REPO

from bkdattr.atomic import read_tsv, write_tsv

STAGES = {"fetch_base_model": "model", "prepare_base_model": "model", "inject_backdoor": "injection",
          "evaluate_model": "evaluation", "cache_activations": "probes", "train_probes": "probes",
          "attribute_heads": "attribution", "attribute_refusal_heads": "attribution", "evaluate_confirm": "evaluation",
          "ablate_heads": "interventions", "steer_backdoor_vector": "interventions"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", default=str(REPO / "results"))
    p.add_argument("--out", default=str(REPO / "benchmarks/results/rule_times.tsv"))
    args = p.parse_args()
    root = Path(args.results) / "benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        parts = path.relative_to(root).with_suffix("").parts
        bench = read_tsv(path)[0]
        rows.append({"rule": parts[0], "job": "/".join(parts[1:]) or "-", "seconds": float(bench["s"]),
                     "max_rss_mb": float(bench["max_rss"]) if bench.get("max_rss", "-") not in ("-", "NA") else ""})
    per_stage, peak_mb, jobs = defaultdict(float), defaultdict(float), defaultdict(int)
    for r in rows:
        r["stage"] = STAGES.get(r["rule"], "other")
        per_stage[r["stage"]] += r["seconds"]
        jobs[r["stage"]] += 1
        if r["max_rss_mb"] != "":
            peak_mb[r["stage"]] = max(peak_mb[r["stage"]], r["max_rss_mb"])
    write_tsv(args.out, rows, ["stage", "rule", "job", "seconds", "max_rss_mb"])
    for r in rows:
        print(f"{r['stage']:14s} {r['rule']:24s} {r['job']:36s} {r['seconds']:8.1f} s  max_rss {r['max_rss_mb']} MB")
    print("\n| stage | jobs | minutes | peak GB (largest job) |\n|---|---|---|---|")
    for stage, seconds in per_stage.items():
        print(f"| {stage} | {jobs[stage]} | {seconds / 60:.1f} | {peak_mb[stage] / 1000:.2f} |")
    print(f"| **total** (sum of benchmarked jobs) | {sum(jobs.values())} | {sum(per_stage.values()) / 60:.1f} | "
          f"{max(peak_mb.values(), default=0) / 1000:.2f} |")


if __name__ == "__main__":
    main()
