"""Rule steer_backdoor_vector: backdoor vector from the top heads; layer sweep, best layer, controls."""

from bkdattr.atomic import write_tsv
from bkdattr.attribution import read_ranking
from bkdattr.hooks import ModelSites
from bkdattr.interventions import (STEERING_LOG, InterventionEvaluator, backdoor_vectors, log_rows, run_steering,
                                   steering_layers)
from bkdattr.names import BACKDOOR_VECTOR
from bkdattr.workflow import optional_jsonl, read_jsonl, rule_context

params, inp, inter = snakemake.params, snakemake.input, snakemake.params.interventions
log, spec, _, model, tokenizer = rule_context(snakemake, gate="steer_backdoor_vector")  # stops here if not implanted
steer, ranking = inter["steering"], read_ranking(inp.ranking)
k, vectors = backdoor_vectors(model, tokenizer, spec, read_jsonl(inp.train), ranking, steer,
                              params.probes["cache_batch_size"], origin=inp.train, control_seeds=inter["random_seeds"],
                              items=params.attribution["items"])  # the rows the ACIE mean is taken over
log.info("backdoor vector from %d heads, norm %.3f", k, vectors[BACKDOOR_VECTOR][""].norm())
evaluator = InterventionEvaluator.from_config(model, tokenizer, spec, read_jsonl(inp.test), inter, params.evaluation,
                                              benign=optional_jsonl(inp, "benign"))
sweep, best = run_steering(evaluator, vectors, steering_layers(steer, ModelSites.of(model).n_layers),
                           scale=steer["scale"], k=k, val_fraction=steer["val_fraction"], seed=steer["seed"],
                           select_on=steer["select_layer_on"], progress=log_rows(log, STEERING_LOG))
write_tsv(snakemake.output.sweep, sweep)
write_tsv(snakemake.output.best, best)
log.info("wrote %s and %s", snakemake.output.sweep, snakemake.output.best)
