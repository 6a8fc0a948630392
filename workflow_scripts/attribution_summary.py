"""Rule attribution_summary: sparsity of ACIE, and AtP agreement with exact ACIE (Spearman, top-k overlap)."""
from pathlib import Path

import torch

from bkdattr.atomic import read_matrix_tsv, read_tsv, write_tsv_union
from bkdattr.attribution import control_comparison, sparsity, spearman, top_k_overlap
from bkdattr.gate import NOT_APPLICABLE, implanted_by_run
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
maps = {tuple(Path(p).parts[-3:-1]) + (Path(p).stem.removeprefix("acie_"),): torch.tensor(read_matrix_tsv(p))
        for p in snakemake.input.acie}
implanted = implanted_by_run(read_tsv(snakemake.input.gate))
rows = []
for (task, method, mode), acie in sorted(maps.items()):
    ranking = read_tsv(Path(snakemake.input.acie[0]).parents[2] / task / method / f"ranking_{mode}.tsv")
    row = {"task": task, "method": method, "mode": mode, "n_heads": acie.numel(),
           "n_prompts": ranking[0]["n_prompts"], "n_prompts_asked": ranking[0]["n_prompts_asked"],
           "backdoor_implanted": implanted.get((task, method), NOT_APPLICABLE),
           "max_acie": acie.max().item(), "sum_positive_acie": acie.clamp(min=0).sum().item(),
           "fraction_of_heads_for_half_positive_acie": sparsity(acie, 0.5)}
    exact = maps.get((task, method, "exact"))
    if method in snakemake.params.controls:  # a clean model: compare with the backdoored model's exact map
        row["role"] = "control"
        backdoored = maps[(task, snakemake.params.methods[0], "exact")]
        row["compared_with"] = snakemake.params.methods[0]
        for fraction in sorted({*snakemake.params.top_fractions, 0.03}):  # 0.03: the paper's 32 of 1024 heads
            row.update(control_comparison(backdoored, acie, fraction))
    else:
        row["role"] = "backdoored"
    if exact is not None and mode != "exact":
        row["max_abs_diff_vs_exact"] = (acie - exact).abs().max().item()
        row["spearman_vs_exact"] = spearman(acie, exact)
        for fraction in snakemake.params.top_fractions:
            row[f"top{fraction:g}_overlap_vs_exact"] = top_k_overlap(acie, exact, fraction)
    rows.append(row)
write_tsv_union(snakemake.output.tsv, rows)
log.info("wrote %s", snakemake.output.tsv)
