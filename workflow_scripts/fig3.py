"""Rule fig3: layer x head ACIE heatmaps, one panel per task and model (backdoored, then clean controls)."""

from bkdattr.atomic import read_tsv
from bkdattr.figures import plot_fig3, top_heads_shared
from bkdattr.gate import IMPLANTED, implanted_by_run
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
panels = {(r["task"], r["model"]): p for r, p in zip(snakemake.params.runs, snakemake.input.acie)}
implanted = {run: status == IMPLANTED for run, status in implanted_by_run(read_tsv(snakemake.input.gate)).items()}
# the top-3% overlaps of attribution.tsv (another method against the first, a control against the backdoored model)
shared = {(r["task"], r["method"]): top_heads_shared(r) for r in read_tsv(snakemake.input.summary) if r["mode"] == "exact"}
plot_fig3(panels, snakemake.output.pdf, snakemake.output.png, model_name=snakemake.params.model_name,
          implanted=implanted, shared=shared)
log.info("wrote %s and %s", snakemake.output.pdf, snakemake.output.png)
