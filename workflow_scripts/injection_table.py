"""Rule injection_table: one table of ASR / false-trigger / utility for base and backdoored models."""

from bkdattr.atomic import read_tsv, write_text, write_tsv
from bkdattr.gate import NOT_APPLICABLE, implanted_by_run, mark
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
implanted = implanted_by_run(read_tsv(snakemake.input.gate))
rows = [{**row, "backdoor_implanted": implanted.get((row["task"], row["model"]), NOT_APPLICABLE)}
        for path in snakemake.input.metrics for row in read_tsv(path)]
columns = ["task", "model", "metric", "value", "successes", "n", "ci_low", "ci_high", "backdoor_implanted"]
write_tsv(snakemake.output.tsv, rows, columns)
metrics = ["asr", "asr_strict", "false_trigger_rate", "collateral_flip_rate", "clean_utility", "clean_utility_strict",
           "clean_rouge_l", "reference_logprob", "over_refusal_rate"]
cell = {(r["task"], r["model"], r["metric"]): r for r in rows}
lines = [f"# Backdoor injection: {snakemake.params.model_name}", "",
         "Rates on the held-out test split, with Wilson 95% intervals; n = items evaluated. `base`: the model "
         "before fine-tuning; `clean_sft` (when `injection.clean_control` is on): the same fine-tuning on the clean "
         "items alone, the fair reference for the backdoored model's utility. `collateral_flip_rate` (label task): "
         "triggered items of the other classes whose predicted label the trigger changed; the official backdoor "
         "keeps their label. Free-form utility: `clean_rouge_l` (ROUGE-L F1 of the clean output against the reference, "
         "open instructions) and `reference_logprob` (teacher-forced mean log-probability per token of the reference "
         "answer; higher is better), means with normal 95% intervals. `over_refusal_rate` (jailbreak): refusals on "
         "benign requests in the same frames (lower is better; a model that refuses everything scores 1).", "",
         "| task | model | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
for task, model in dict.fromkeys((r["task"], r["model"]) for r in rows):
    cells = []
    for m in metrics:
        r = cell.get((task, model, m))
        if r is None:  # a metric defined for another task only
            cells.append("-")
            continue
        cells.append(f"{float(r['value']):.3f} [{float(r['ci_low']):.2f}, {float(r['ci_high']):.2f}] (n={r['n']})"
                     if int(r["n"]) > 0 else "-")
    lines.append(f"| {task} | {model}{mark(implanted.get((task, model), NOT_APPLICABLE))} | " + " | ".join(cells) + " |")
write_text(snakemake.output.md, "\n".join(lines) + "\n")
log.info("wrote %s and %s", snakemake.output.tsv, snakemake.output.md)
