"""Two runs side by side (bkdattr.compare_runs): the overlap counts, the refusal-control rows and Table 1's columns."""

import numpy as np
import pytest

from bkdattr.atomic import read_tsv, write_matrix_tsv, write_tsv
from bkdattr.compare_runs import compare, main


def _run(root, acie, refusal=None, over_refusal=0.1, top_asr=(1.0, 0.2)):
    base = root / "results"
    write_matrix_tsv(base / "attribution/jailbreak/lora_sft/acie_exact.tsv", acie)
    if refusal is not None:
        write_matrix_tsv(base / "attribution/jailbreak/base_refusal/acie_exact.tsv", refusal)
    write_tsv(base / "eval/jailbreak/lora_sft/metrics.tsv",
              [{"metric": m, "value": v, "ci_low": v, "ci_high": v}
               for m, v in (("asr", 0.99), ("compliance", 0.98), ("over_refusal_rate", over_refusal))])
    rows = []
    for k, asr in zip((0, 2), top_asr):
        rows.append({"heads": "top", "seed": "", "variant": "last_prompt_token", "k": k, "asr": asr,
                     "compliance": asr, "over_refusal_rate": over_refusal})
        if k:
            rows += [{"heads": "random", "seed": s, "variant": "last_prompt_token", "k": k, "asr": a,
                      "compliance": a, "over_refusal_rate": over_refusal} for s, a in ((1, 0.9), (2, 0.7))]
    write_tsv(base / "interventions/jailbreak/lora_sft/ablation.tsv", rows)
    return root


def test_overlap_counts_shared_top_heads_and_the_refusal_control_rows(tmp_path):
    a = np.arange(100, dtype=float).reshape(10, 10)            # top 3 heads: flat 99, 98, 97
    b = a.copy()
    b.flat[98] = -1                                             # b's top 3: 99, 97, 96
    refusal = -a                                                # its top heads are a's bottom ones
    first = _run(tmp_path / "a", a, refusal=refusal)
    second = _run(tmp_path / "b", b, over_refusal=1.0, top_asr=(0.95, 0.0))
    tables = compare([first, second], ["with", "without"], "jailbreak", "lora_sft", [0.01, 0.03, 0.1])
    pair, control = tables["overlap"]
    assert pair["map_a"] == "with" and pair["top0.03_shared"] == "2/3" and pair["top0.03_expected_by_chance"] == 0.09
    assert control["map_b"] == "base_refusal (with)" and control["top0.03_shared"] == "0/3"
    assert len(tables["overlap"]) == 2                          # no refusal control in run b: no row for it
    held = {r["run"]: r for r in tables["held_out"]}
    assert held["without"]["over_refusal_rate"].startswith("1.000") and held["with"]["top_heads"].startswith("L9H9 L9H8")
    k2 = [r for r in tables["ablation"] if r["k"] == 2][0]
    assert k2["with: asr top"] == 0.2 and k2["without: asr top"] == 0.0 and k2["with: asr random"] == 0.8


def test_a_missing_map_names_the_file_and_the_command(tmp_path):
    first = _run(tmp_path / "a", np.ones((2, 2)))
    with pytest.raises(FileNotFoundError, match="acie_exact.tsv: no exact ACIE map; run `snakemake"):
        compare([first, tmp_path / "nothing"], ["a", "b"], "jailbreak", "lora_sft", [0.01, 0.03, 0.1])


def test_the_command_writes_the_three_tables(tmp_path):
    a = np.arange(16, dtype=float).reshape(4, 4)
    main([str(_run(tmp_path / "a", a)), str(_run(tmp_path / "b", a)), "--labels", "x", "y",
          "--out", str(tmp_path / "out")])
    assert read_tsv(tmp_path / "out/compare_overlap.tsv")[0]["spearman"] == "1"
    assert "## ablation" in (tmp_path / "out/compare.md").read_text()
