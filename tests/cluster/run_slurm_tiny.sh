#!/usr/bin/env bash
# The tiny preset through a real Slurm (one node, this machine) with the Snakemake Slurm executor, and a
# byte-for-byte comparison of its tables with a local run. Needs root (it starts munge and Slurm), so it is
# not part of the default test command. Run from the repository root after the README's install command:
#   tests/cluster/run_slurm_tiny.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/bkdattr-slurm-test}
PY=.venv/bin/python
command -v sbatch > /dev/null || apt-get install -y -qq slurm-wlm munge
$PY -m pip install -q snakemake-executor-plugin-slurm==2.8.0
tests/cluster/start_one_node_slurm.sh
rm -rf "$WORK" && mkdir -p "$WORK/local" "$WORK/slurm"
SNAKE=($PY -m snakemake -s "$PWD/Snakefile" --configfile "$PWD/tests/configs/tiny.yaml")
# the rules' own two threads, as the Slurm jobs get them (profiles/default would cap local jobs at one)
echo "== local run"; time "${SNAKE[@]}" --directory "$WORK/local" --cores 2 --workflow-profile none --quiet rules
echo "== slurm run"; time "${SNAKE[@]}" --directory "$WORK/slurm" --workflow-profile "$PWD/profiles/slurm-local" --quiet rules
echo "== jobs Slurm ran:"; squeue --states=all -h -o "%i %j %T" | sort -n | tail -n 80
$PY - "$WORK" <<'PY'
import sys
from pathlib import Path
work = Path(sys.argv[1])
globs = ["results/tables/*.tsv", "results/eval/*/*/metrics.tsv", "results/probes/*/*/*.tsv",
         "results/attribution/*/*/*.tsv", "results/interventions/*/*/*.tsv", "results/data/*/*.jsonl"]
# wall-clock and memory columns differ between any two runs (README, "Determinism"); everything else must not
MEASURED_ON_THE_MACHINE = {"injection_s", "injection_peak_rss_gb"}


def content(path):
    if path.name != "injection_methods.tsv":
        return path.read_bytes()
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name not in MEASURED_ON_THE_MACHINE]
    return "\n".join("\t".join(row[i] for i in keep) for row in rows).encode()


tables = {run: {str(p.relative_to(work / run)): content(p) for g in globs for p in sorted((work / run).glob(g))}
          for run in ("local", "slurm")}
assert tables["local"].keys() == tables["slurm"].keys(), "different sets of tables"
differ = [name for name in tables["local"] if tables["local"][name] != tables["slurm"][name]]
print(f"{len(tables['local'])} tables compared (injection_methods.tsv without its time and memory columns); "
      f"byte-identical: {not differ}" + (f"; differ: {differ}" if differ else ""))
sys.exit(1 if differ else 0)
PY
