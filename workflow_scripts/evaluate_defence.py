"""Rule evaluate_defence: a defended model (or the undefended one) on the test split's questions and on every
trigger variant: ASR, compliance, false triggers, utility, over-refusal."""

from bkdattr.defences import run_evaluate_defence
from bkdattr.workflow import rule_context

log, spec, pointer, model, tokenizer = rule_context(snakemake)
run_evaluate_defence(model, tokenizer, spec, snakemake.wildcards.defence, pointer, snakemake.input, snakemake.output,
                     snakemake.params, log)
