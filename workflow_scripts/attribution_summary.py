"""Rule attribution_summary: sparsity of ACIE, the clean controls against the backdoored map, and AtP agreement
with exact ACIE (Spearman, top-k overlap)."""

import torch

from bkdattr.atomic import read_matrix_tsv, read_tsv, write_tsv_union
from bkdattr.attribution import summary_rows
from bkdattr.gate import implanted_by_run
from bkdattr.workflow import start_rule

params, inp = snakemake.params, snakemake.input
log = start_rule(snakemake)
runs = [(r["task"], r["model"], r["mode"]) for r in params.runs]  # aligned with the acie and ranking inputs
rows = summary_rows({run: torch.tensor(read_matrix_tsv(p)) for run, p in zip(runs, inp.acie)},
                    {run: read_tsv(p) for run, p in zip(runs, inp.ranking)}, implanted_by_run(read_tsv(inp.gate)),
                    methods=params.methods, controls=params.controls, top_fractions=params.attribution["top_fractions"])
write_tsv_union(snakemake.output.tsv, rows)
log.info("wrote %s", snakemake.output.tsv)
