"""Numbers published in the paper (METHOD.md), printed beside ours; never used as results."""

# Table 1: ASR (%) after zero-ablating the top-k ACIE heads, k = 0, 1, 2, 4, 8, 16, 32.
TABLE1_K = (0, 1, 2, 4, 8, 16, 32)
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
