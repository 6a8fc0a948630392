"""Rule train_probes: MLP and RBF-SVM probes per layer, and the inter-layer matrices (ILCA)."""

from bkdattr.atomic import write_matrix_tsv, write_safetensors, write_tsv
from bkdattr.caching import load_cache
from bkdattr.models import read_pointer
import numpy as np

from bkdattr.probes import ilca_long, layer_probe_results
from bkdattr.workflow import start_rule

log = start_rule(snakemake, uses_torch=True, seed=snakemake.params.seed)
pointer = read_pointer(snakemake.input.model)
cache = load_cache(snakemake.input.tensors, snakemake.input.sidecar, model_name=pointer["name"],
                   task=snakemake.wildcards.task)
# by_item: an item's clean and triggered rows stay together; by_row (the official code): every row on its own
groups = cache["groups"].numpy() if snakemake.params.probes["split"] == "by_item" else np.arange(len(cache["labels"]))
results = layer_probe_results(cache["resid_probe"].numpy(), cache["labels"].numpy(), groups,
                              seed=snakemake.params.seed, epochs=snakemake.params.probes["epochs"])
write_tsv(snakemake.output.accuracy, results["accuracy"],
          ["layer", "probe", "train_acc", "val_acc", "test_acc", "test_acc_ci_low", "test_acc_ci_high",
           "n_train", "n_val", "n_test"])
n_test = len(results["split"]["test"])
write_tsv(snakemake.output.ilca_intervals,
          ilca_long(results["ilca_mlp"], n_test, "mlp") + ilca_long(results["ilca_svm"], n_test, "svm"))
write_matrix_tsv(snakemake.output.ilca_mlp, results["ilca_mlp"], corner="train_layer/test_layer")
write_matrix_tsv(snakemake.output.ilca_svm, results["ilca_svm"], corner="train_layer/test_layer")
write_safetensors(snakemake.output.mlp_probes,
                  {f"layer{layer}.{name}": t for layer, state in results["mlp_states"].items() for name, t in state.items()})
best = max((r for r in results["accuracy"] if r["probe"] == "mlp"), key=lambda r: r["test_acc"])
log.info("best MLP probe: layer %d, test accuracy %.3f", best["layer"], best["test_acc"])
