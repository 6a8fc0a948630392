"""Rule fig2: probe accuracy per layer (backdoored vs base control) and ILCA heatmaps."""

from bkdattr.figures import plot_fig2
from bkdattr.workflow import start_rule

params, inp = snakemake.params, snakemake.input
log = start_rule(snakemake)
runs = {(r["task"], r["model"]): {"accuracy": acc, "ilca_mlp": mlp, "ilca_svm": svm}  # params.runs: aligned with the inputs
        for r, acc, mlp, svm in zip(params.runs, inp.accuracy, inp.ilca_mlp, inp.ilca_svm)}
plot_fig2(runs, params.tasks, params.models, snakemake.output.pdf, snakemake.output.png, model_name=params.model_name)
log.info("wrote %s and %s", snakemake.output.pdf, snakemake.output.png)
