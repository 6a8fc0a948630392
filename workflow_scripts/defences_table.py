"""Rule defences_table: results/tables/defences.{tsv,md}, trigger_variants.{tsv,md} and the ASR-against-utility
figure, from every defended model's evaluation."""

from bkdattr.defences_report import build
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
inputs, out = snakemake.input, snakemake.output
rows, variants = build(snakemake.params.runs, inputs.metrics, inputs.variants, inputs.info, out,
                       snakemake.params.model_name)
log.info("%d models, %d variant rows; wrote %s, %s and %s", len(rows), len(variants), out.md, out.variants_md, out.png)
