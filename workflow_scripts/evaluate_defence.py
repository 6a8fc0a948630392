"""Rule evaluate_defence: a defended model (or the undefended one) on the test split's questions and on every
trigger variant: ASR, compliance, false triggers, utility, over-refusal."""

from bkdattr.defences import run_evaluate_defence
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, start_rule

params, inputs, out = snakemake.params, snakemake.input, snakemake.output
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.evaluation["refusal_matcher"])
pointer, model, tokenizer = load_rule_model(inputs.model, params.model)
run_evaluate_defence(model, tokenizer, spec, snakemake.wildcards.defence, pointer, inputs, out, params, log)
