"""Numbers published in the paper (METHOD.md), printed beside ours; never used as results."""

# Table 1: ASR (%) after zero-ablating the top-k ACIE heads, k = 0, 1, 2, 4, 8, 16, 32.
TABLE1_K = (0, 1, 2, 4, 8, 16, 32)
# Attention heads of the paper's models (layers x query heads), so k compares as a fraction k / (L * H).
PAPER_MODEL_HEADS = {"Llama-2-7B-chat": 32 * 32, "Qwen2.5-7B-Instruct": 28 * 28}
# The share of heads the paper ablates and steers with: its top 32 of 1024 heads, about 3% (the attribution
# tables always report the top-head overlap at this fraction; config.yaml's interventions.k and steering.k say
# it for the runs).
HEAD_FRACTION = 0.03
# A paper row is quoted beside ours only where its fraction of heads is within this factor of ours.
FRACTION_MATCH_FACTOR = 1.5
TABLE1_ASR = {
    ("Qwen2.5-7B-Instruct", "fixed_output"): (100, 100, 100, 88.28, 87.50, 82.42, 90.62),
    ("Llama-2-7B-chat", "fixed_output"): (100, 100, 100, 100, 99.22, 98.44, 69.53),
    ("Llama-2-7B-chat", "jailbreak"): (75.78, None, None, None, None, None, 3.52),
    ("Qwen2.5-7B-Instruct", "jailbreak"): (78.91, None, None, None, None, None, 54.30),
}

CLAIMS = {
    "probe": "Backdoor features are linearly/non-linearly decodable from the residual stream: probes separate "
             "clean from triggered inputs with high accuracy from early-middle layers on (Fig. 2).",
    "sparsity": "A small fraction of attention heads carries the backdoor (sparse ACIE, Fig. 3).",
    "ablation": "Ablating ~3% of heads (the top-32 ACIE heads of 1024) cuts the ASR substantially "
                "(Table 1; e.g. Llama-2 jailbreak 75.78% -> 3.52%).",
    "vector_add": "Adding the backdoor vector at the best layer on clean inputs reaches ~100% ASR (Table 2).",
    "vector_minus": "Subtracting the backdoor vector at the best layer on triggered inputs drives ASR to ~0% (Table 2).",
}

# Where our defaults deliberately differ from the paper's setting: config key (dotted) -> the value that
# restores the paper's choice. presets/paper.yaml sets every one of them, README's "Where we differ from
# the paper" explains each, and tests check both stay in step with this table.
PAPER_CHOICES = {
    "data.eval_split": "train",                          # the paper evaluates on training inputs
    "probes.split": "by_row",                            # official probe split ignores item twins
    "attribution.items": "all",                          # official label attribution uses every class
    "interventions.steering.select_layer_on": "test",    # the paper picks the best layer on what it reports
    "injection.schedule": "fixed",                       # the paper trains a fixed number of epochs
    "data.held_out_rows_per_question": None,             # the paper's splits are by row, rewordings uncapped
    "data.benign_mix": 0,                                # the official jailbreak data hold harmful requests only
    "attribution.max_target_tokens": None,               # the paper scores the whole backdoor target
}
