"""Rule steer_backdoor_vector: backdoor vector from the top heads; layer sweep, best layer, controls."""

from bkdattr.atomic import read_tsv, write_tsv
from bkdattr.caching import cache_activations, check_finite
from bkdattr.hooks import ModelSites
from bkdattr.interventions import (InterventionEvaluator, backdoor_vector, random_direction_like, random_heads,
                                   resolve_k, run_steering, steering_layers)
from bkdattr.tasks import TaskSpec
from bkdattr.gate import enforce_gate
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params = snakemake.params
cfg, steer = params.interventions, params.interventions["steering"]
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.refusal_matcher)
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "steer_backdoor_vector", log)  # stops here if not implanted
sites = ModelSites.of(model)
poisoned = [r for r in read_jsonl(snakemake.input.train) if r["poisoned"]]
test = read_jsonl(snakemake.input.test)
# mean head outputs over the poisoned training prompts (their inputs already carry the trigger)
heads = cache_activations(model, tokenizer, [spec.prompt(r["input"]) for r in poisoned],
                          batch_size=params.cache_batch_size)["heads_prompt_last"]
check_finite(heads, "heads_prompt_last", snakemake.input.train)
means = heads.mean(0)
(k,) = resolve_k([steer["k"]], sites.n_layers * sites.n_heads)
ranking = [(int(r["layer"]), int(r["head"])) for r in read_tsv(snakemake.input.ranking)]
v = backdoor_vector(means, ranking[:k])
vectors = {"backdoor_vector": v,
           "random_heads_vector": backdoor_vector(means, random_heads(sites.n_layers, sites.n_heads, k, steer["seed"],
                                                                      exclude=ranking[:k])),
           "random_direction": random_direction_like(v, steer["seed"])}
log.info("backdoor vector from %d heads over %d poisoned prompts, norm %.3f", k, len(poisoned), v.norm())
layers = steering_layers(steer, sites.n_layers)
evaluator = InterventionEvaluator(model, tokenizer, spec, test, cfg["max_new_tokens"], cfg["batch_size"],
                                  n_eval=cfg["n_eval"],
                                  benign=read_jsonl(snakemake.input.benign) if "benign" in snakemake.input.keys() else None)
sweep, best = run_steering(evaluator, vectors, layers, scale=steer["scale"],
                           sweep_vectors=["backdoor_vector", "random_direction"], val_fraction=steer["val_fraction"],
                           seed=steer["seed"], select_on=steer["select_layer_on"],
                           progress=lambda r: log.info("%s %s layer %d: ASR val %.3f test %.3f", r["vector"],
                                                       r["direction"], r["layer"], r["asr_val"], r["asr_test"]))
for row in best:
    row["k_heads"] = k
    row["vector_norm"] = float(v.norm())
write_tsv(snakemake.output.sweep, sweep)
write_tsv(snakemake.output.best, best)
log.info("wrote %s and %s", snakemake.output.sweep, snakemake.output.best)
