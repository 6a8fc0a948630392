"""Rules evaluate_model and evaluate_confirm: greedy generations on clean and triggered prompts of the test (or the
confirmation) split -> ASR, false triggers, utility; the label task also its confusion matrices (clean and triggered
prompts; the other tasks write the header alone)."""

from bkdattr.atomic import write_jsonl, write_tsv
from bkdattr.evaluation import CONFUSION_COLUMNS, evaluate_generations
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params = snakemake.params
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.evaluation["refusal_matcher"])
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
records = read_jsonl(snakemake.input.confirm if "confirm" in snakemake.input.keys() else snakemake.input.test)
benign = read_jsonl(snakemake.input.benign) if "benign" in snakemake.input.keys() else None  # jailbreak only
result = evaluate_generations(model, tokenizer, spec, records, max_new_tokens=params.evaluation["max_new_tokens"],
                              batch_size=params.evaluation["batch_size"], benign=benign, progress=True,
                              compliance=params.evaluation.get("compliance"))
rows = [{"task": spec.task_id, "model": snakemake.wildcards.model, "metric": name, **values,
         "n_questions": values.get("n_clusters", values["n"])}  # benign requests: one row each
        for name, values in result.metrics.items()]
write_jsonl(snakemake.output.generations, [
    {"id": r["id"], "clean_prompt": spec.prompt(r["input"]), "clean_output": c,
     "triggered_prompt": spec.prompt(r["input"], triggered=True), "triggered_output": t,
     "eligible": spec.is_eligible(r)} for r, c, t in zip(records, result.clean, result.triggered)]
    + [{"id": r["id"], "benign_prompt": r["input"], "benign_output": o} for r, o in zip(benign or [], result.benign or [])])
write_tsv(snakemake.output.metrics, rows, ["task", "model", "metric", "value", "successes", "n", "n_questions", "ci_low",
                                       "ci_high"])
write_tsv(snakemake.output.confusion, [{"task": spec.task_id, "model": snakemake.wildcards.model, **r} for r in result.confusion],
          CONFUSION_COLUMNS)
for row in rows:
    log.info("%s %s %s = %.3f (n=%d rows, %d questions)", row["task"], row["model"], row["metric"], row["value"], row["n"],
             row["n_questions"])
