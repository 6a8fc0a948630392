"""Rule table1: Table 1 (ASR after ablating the top-k ACIE heads, with controls and the paper at the same
fraction of heads)."""

from bkdattr.atomic import read_tsv, write_text, write_tsv_union
from bkdattr.figures import plot_table1
from bkdattr.gate import implanted_by_run
from bkdattr.reports import table1_markdown, table1_rows
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
runs = [(r["task"], r["method"]) for r in snakemake.params.runs]  # aligned with the ablation inputs
rows = table1_rows(dict(zip(runs, snakemake.input.ablation)), implanted_by_run(read_tsv(snakemake.input.gate)))
write_tsv_union(snakemake.output.tsv, rows)
write_text(snakemake.output.md, table1_markdown(rows, snakemake.params.model_name))
plot_table1(rows, snakemake.output.pdf, snakemake.output.png, model_name=snakemake.params.model_name)
log.info("wrote %s and %s", snakemake.output.tsv, snakemake.output.md)
