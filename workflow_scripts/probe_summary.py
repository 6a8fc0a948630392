"""Rule probe_summary: first layer reaching the threshold, best layer and mean off-diagonal ILCA per model/task."""

from bkdattr.atomic import read_matrix_tsv, read_tsv, write_tsv
from bkdattr.gate import implanted_by_run
from bkdattr.probes import summary_rows
from bkdattr.workflow import start_rule

params, inp = snakemake.params, snakemake.input
log = start_rule(snakemake)
runs = {(r["task"], r["model"]): (read_tsv(acc), read_matrix_tsv(mlp), read_matrix_tsv(svm))  # aligned with the inputs
        for r, acc, mlp, svm in zip(params.runs, inp.accuracy, inp.ilca_mlp, inp.ilca_svm)}
rows = summary_rows(runs, implanted_by_run(read_tsv(inp.gate)), params.probes["threshold"])
write_tsv(snakemake.output.tsv, rows)
log.info("wrote %s (%d runs)", snakemake.output.tsv, len(rows))
