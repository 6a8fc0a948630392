"""Rule fig3: layer x head ACIE heatmaps, one panel per task and model (backdoored, then clean controls)."""

from bkdattr.figures import plot_fig3
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
panels = {(r["task"], r["model"]): p for r, p in zip(snakemake.params.runs, snakemake.input.acie)}
plot_fig3(panels, snakemake.output.pdf, snakemake.output.png, model_name=snakemake.params.model_name)
log.info("wrote %s and %s", snakemake.output.pdf, snakemake.output.png)
