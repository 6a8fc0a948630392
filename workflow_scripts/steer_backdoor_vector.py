"""Rule steer_backdoor_vector: backdoor vector from the top heads; layer sweep, best layer, controls."""

from bkdattr.atomic import write_tsv
from bkdattr.attribution import read_ranking
from bkdattr.gate import enforce_gate
from bkdattr.hooks import ModelSites
from bkdattr.interventions import InterventionEvaluator, backdoor_vectors, run_steering, steering_layers
from bkdattr.names import BACKDOOR_VECTOR
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params, steer, inter = snakemake.params, snakemake.params.interventions["steering"], snakemake.params.interventions
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.evaluation["refusal_matcher"])
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "steer_backdoor_vector", log)  # stops here if not implanted
ranking = read_ranking(snakemake.input.ranking)
k, vectors = backdoor_vectors(model, tokenizer, spec, read_jsonl(snakemake.input.train), ranking, steer,
                              params.probes["cache_batch_size"], origin=snakemake.input.train,
                              control_seeds=inter["random_seeds"],
                              items=params.attribution["items"])  # the rows the ACIE mean is taken over
log.info("backdoor vector from %d heads, norm %.3f", k, vectors[BACKDOOR_VECTOR][""].norm())
evaluator = InterventionEvaluator(model, tokenizer, spec, read_jsonl(snakemake.input.test), inter["max_new_tokens"],
                                  inter["batch_size"], n_eval=inter["n_eval"], seed=inter["sample_seed"],
                                  benign=read_jsonl(snakemake.input.benign) if "benign" in snakemake.input.keys() else None,
                                  compliance=params.evaluation.get("compliance"))
sweep, best = run_steering(evaluator, vectors, steering_layers(steer, ModelSites.of(model).n_layers), scale=steer["scale"],
                           k=k, val_fraction=steer["val_fraction"], seed=steer["seed"], select_on=steer["select_layer_on"],
                           progress=lambda r: log.info("%s %s %s layer %d: ASR val %s test %s", r["vector"], r["seed"],
                                                       r["direction"], r["layer"], r["asr_val"], r["asr_test"]))
write_tsv(snakemake.output.sweep, sweep)
write_tsv(snakemake.output.best, best)
log.info("wrote %s and %s", snakemake.output.sweep, snakemake.output.best)
