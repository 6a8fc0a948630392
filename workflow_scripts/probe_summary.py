"""Rule probe_summary: first layer reaching the threshold, best layer and mean off-diagonal ILCA per model/task."""

from bkdattr.atomic import read_matrix_tsv, read_tsv, write_tsv
from bkdattr.gate import NOT_APPLICABLE, implanted_by_run
from bkdattr.probes import summarise
from bkdattr.workflow import start_rule

params, inp = snakemake.params, snakemake.input
log = start_rule(snakemake)
implanted = implanted_by_run(read_tsv(inp.gate))
rows = []
for run, acc_path, mlp_path, svm_path in zip(params.runs, inp.accuracy, inp.ilca_mlp, inp.ilca_svm):
    task, model = run["task"], run["model"]
    accuracy = [{**r, "layer": int(r["layer"]), "test_acc": float(r["test_acc"]), "n_test": int(r["n_test"])}
                for r in read_tsv(acc_path)]
    summary = summarise(accuracy, read_matrix_tsv(mlp_path), read_matrix_tsv(svm_path), params.probes["threshold"])
    rows.append({"task": task, "model": model, "backdoor_implanted": implanted.get((task, model), NOT_APPLICABLE),
                 **{k: ("none" if v is None else v) for k, v in summary.items()}})
write_tsv(snakemake.output.tsv, rows)
log.info("wrote %s", snakemake.output.tsv)
