"""Rule defend_model: a standard defence written as a checkpoint (clean fine-tuning, magnitude pruning, random heads
pruned), matched to the head cleaning where it needs a size."""

from bkdattr.defences import run_defend_model
from bkdattr.workflow import rule_context

log, spec, pointer, model, tokenizer = rule_context(snakemake, gate="defend_model", seed=snakemake.params.seed)
run_defend_model(model, tokenizer, spec, snakemake.wildcards.defence, pointer, snakemake.input, snakemake.output,
                 snakemake.params, log)
