"""Rule injection_methods_table: every injection method beside the others, per task (ASR, false triggers,
utility, injection time and memory), after the task's base model."""

from bkdattr.atomic import read_tsv, write_text, write_tsv
from bkdattr.reports import METHOD_COLUMNS, injection_method_rows, injection_methods_markdown
from bkdattr.workflow import start_rule

params, inp = snakemake.params, snakemake.input
log = start_rule(snakemake)
runs = [(r["task"], r["method"]) for r in params.runs]  # aligned with the metrics and benchmark inputs
rows = injection_method_rows({run: read_tsv(p) for run, p in zip(runs, inp.metrics)},
                             {run: read_tsv(p)[-1] for run, p in zip(runs, inp.benchmarks)}, read_tsv(inp.gate),
                             {task: read_tsv(p) for task, p in zip(params.tasks, inp.base)})
write_tsv(snakemake.output.tsv, rows, METHOD_COLUMNS)
write_text(snakemake.output.md, injection_methods_markdown(rows, params.model_name))
log.info("wrote %s and %s", snakemake.output.tsv, snakemake.output.md)
