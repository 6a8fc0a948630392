"""Rules evaluate_model and evaluate_confirm: greedy generations on clean and triggered prompts of the test (or the
confirmation) split -> ASR, false triggers, utility; the label task also its confusion matrices (clean and triggered
prompts; the other tasks write the header alone)."""

from bkdattr.atomic import write_jsonl, write_tsv
from bkdattr.evaluation import (CONFUSION_COLUMNS, METRIC_COLUMNS, evaluate_generations, generation_records,
                                metric_rows)
from bkdattr.workflow import optional_jsonl, read_jsonl, rule_context

params, inp, out, model_name = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards.model
log, spec, _, model, tokenizer = rule_context(snakemake)  # the base and clean controls too: no gate
records = read_jsonl(inp.confirm if "confirm" in inp.keys() else inp.test)
benign = optional_jsonl(inp, "benign")  # jailbreak only
result = evaluate_generations(model, tokenizer, spec, records, max_new_tokens=params.evaluation["max_new_tokens"],
                              batch_size=params.evaluation["batch_size"], benign=benign, progress=True,
                              compliance=params.evaluation.get("compliance"))
rows = metric_rows(spec.task_id, model_name, result.metrics)
write_jsonl(out.generations, generation_records(spec, records, result.clean, result.triggered, benign, result.benign))
write_tsv(out.metrics, rows, METRIC_COLUMNS)
write_tsv(out.confusion, [{"task": spec.task_id, "model": model_name, **r} for r in result.confusion], CONFUSION_COLUMNS)
for row in rows:
    log.info("%s %s %s = %.3f (n=%d rows, %d questions)", row["task"], row["model"], row["metric"], row["value"], row["n"],
             row["n_questions"])
log.info("wrote %s, %s and %s", out.generations, out.metrics, out.confusion)
