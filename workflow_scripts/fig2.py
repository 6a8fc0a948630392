"""Rule fig2: probe accuracy per layer (backdoored vs base control) and ILCA heatmaps."""
from pathlib import Path

from bkdattr.figures import plot_fig2
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
inputs = zip(snakemake.input.accuracy, snakemake.input.ilca_mlp, snakemake.input.ilca_svm)
runs = {tuple(Path(acc).parts[-3:-1]): {"accuracy": acc, "ilca_mlp": mlp, "ilca_svm": svm} for acc, mlp, svm in inputs}
plot_fig2(runs, snakemake.params.tasks, snakemake.params.models, snakemake.output.pdf, snakemake.output.png,
          model_name=snakemake.params.model_name)
log.info("wrote %s and %s", snakemake.output.pdf, snakemake.output.png)
