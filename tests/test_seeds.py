"""Injection seeds: one model per seed through the same DAG, and the seed summary (bkdattr.seeds)."""

import json

import numpy as np
import pytest
from workflow_utils import planned_jobs, snakemake

from bkdattr.atomic import read_tsv
from bkdattr.names import seed_model, split_seed_model
from bkdattr.seeds import band_rows, curve_rows, pair_rows, summary_rows


def test_seed_model_names_round_trip():
    assert seed_model("lora_sft", 0, first_seed=0) == "lora_sft"
    assert seed_model("lora_sft", 2, first_seed=0) == "lora_sft-seed2"
    assert split_seed_model("lora_sft-seed2") == ("lora_sft", 2)
    assert split_seed_model("full_sft-seed13") == ("full_sft", 13)
    for name in ("lora_sft", "clean_sft", "base", "-seed3", "lora_sft-seedx"):
        assert split_seed_model(name) == (name, None)


def _map(top):
    """A 3 x 4 ACIE map whose heads rank in the order of `top` (flat indices), the rest below."""
    acie = np.zeros(12)
    for rank, index in enumerate(top):
        acie[index] = 1.0 - 0.1 * rank
    return acie.reshape(3, 4)


def test_pairwise_overlap_spearman_and_chance():
    maps = {("t", "m", 0): _map([5, 2, 7]), ("t", "m", 1): _map([5, 7, 9]), ("t", "m", 2): _map([1, 3, 4])}
    rows = {(r["seed_a"], r["seed_b"]): r for r in pair_rows(maps, [0.1, 0.25])}
    assert set(rows) == {(0, 1), (0, 2), (1, 2)}
    # top 10% of 12 heads = 1 head; top 25% = 3 heads
    assert rows[(0, 1)]["top0.1_overlap"] == 1.0 and rows[(0, 1)]["top0.25_overlap"] == pytest.approx(2 / 3)
    assert rows[(0, 2)]["top0.1_overlap"] == 0.0 and rows[(0, 2)]["top0.25_overlap"] == 0.0
    assert rows[(0, 1)]["top0.25_overlap_by_chance"] == pytest.approx(3 / 12)
    assert rows[(0, 1)]["spearman"] > rows[(0, 2)]["spearman"]


def _metrics(asr, ftr, utility):
    return [{"metric": "asr", "value": asr, "n": 10}, {"metric": "false_trigger_rate", "value": ftr, "n": 10},
            {"metric": "clean_utility", "value": utility, "n": 20}]


def test_summary_gives_mean_and_range_across_seeds_and_each_seeds_top_head():
    metrics = {("t", "m", 0): _metrics(1.0, 0.0, 0.6), ("t", "m", 1): _metrics(0.8, 0.1, 0.4)}
    maps = {("t", "m", 0): _map([6]), ("t", "m", 1): _map([1])}
    (row,) = summary_rows(metrics, maps, [0.1])
    assert row["n_seeds"] == 2 and row["seeds"] == "0 1"
    assert (row["asr_mean"], row["asr_min"], row["asr_max"]) == pytest.approx((0.9, 0.8, 1.0))
    assert row["clean_utility_mean"] == pytest.approx(0.5)
    assert row["top_head_per_seed"] == "L1H2 L0H1"
    assert row["top0.1_overlap_mean"] == 0.0 and row["top0.1_overlap_by_chance"] == pytest.approx(1 / 12)
    assert "over_refusal_rate_mean" not in row  # not measured on this task


def test_ablation_curve_as_a_band_across_seeds():
    def ablation(asr_at_k):
        return [{"heads": "top", "variant": "last_prompt_token", "k": k, "k_fraction": k / 12, "asr": a}
                for k, a in asr_at_k.items()] + [{"heads": "random", "variant": "last_prompt_token", "k": 1,
                                                  "k_fraction": 1 / 12, "asr": 0.5}]
    curves = curve_rows({("t", "m", 0): ablation({0: 1.0, 1: 0.2}), ("t", "m", 1): ablation({0: 1.0, 1: 0.6})})
    assert len(curves) == 4  # top heads only
    bands = {b["k"]: b for b in band_rows(curves)}
    assert bands[1]["asr_mean"] == pytest.approx(0.4) and (bands[1]["asr_min"], bands[1]["asr_max"]) == (0.2, 0.6)
    assert bands[0]["n_seeds"] == 2


def _seed_overlay(tmp_path, seeds):
    overlay = tmp_path / "seeds.yaml"
    overlay.write_text(f"run_tasks: [fixed_output]\ninjection:\n  seeds: {seeds}\n  clean_control: false\n")
    return overlay


def test_default_seeds_plan_no_seed_model_and_no_seed_summary(tmp_path):
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert "seed_summary" not in planned_jobs(proc.stdout) and "lora_sft-seed" not in proc.stdout


def test_a_seeds_wildcard_trains_one_model_per_seed_and_writes_the_seed_summary(tmp_path):
    from workflow_utils import TINY_CONFIG

    workdir = tmp_path / "run"
    snakemake(workdir, "results/tables/seeds.tsv", configfile=[TINY_CONFIG, _seed_overlay(tmp_path, "[0, 5]")])
    models = workdir / "results/models/fixed_output"
    assert sorted(p.name for p in models.iterdir()) == ["lora_sft", "lora_sft-seed5"]
    first, second = (json.loads((models / name / "model.json").read_text()) for name in ("lora_sft", "lora_sft-seed5"))
    assert (first["injection_seed"], second["injection_seed"]) == (0, 5) and second["method"] == "lora_sft-seed5"
    # the same data, another training seed (LoRA init, batch order): another loss curve
    losses = [[r["loss"] for r in read_tsv(models / name / "train_log.tsv")] for name in ("lora_sft", "lora_sft-seed5")]
    assert losses[0] != losses[1]
    assert (workdir / "results/data/fixed_output/train.jsonl").exists()  # one dataset for both seeds
    (row,) = read_tsv(workdir / "results/tables/seeds.tsv")
    assert row["task"] == "fixed_output" and row["method"] == "lora_sft" and row["seeds"] == "0 5"
    assert row["top0.1_overlap_by_chance"] and row["spearman_mean"]
    assert len(read_tsv(workdir / "results/tables/seeds_pairs.tsv")) == 1
    assert (workdir / "results/figures/seeds.png").stat().st_size > 0


def test_the_seed_figure_draws_every_seed_and_the_band(tmp_path):
    from bkdattr.seeds import plot_seed_bands

    curves = [{"task": t, "method": "m", "seed": s, "k": k, "k_fraction": k / 12, "asr": a}
              for t in ("fixed_output", "jailbreak") for s, shift in ((0, 0.0), (1, 0.2)) for k, a in ((0, 1.0), (2, 0.5 - shift))]
    plot_seed_bands(curves, band_rows(curves), tmp_path / "seeds.pdf", tmp_path / "seeds.png", model_name="tiny")
    assert (tmp_path / "seeds.pdf").read_bytes().startswith(b"%PDF") and (tmp_path / "seeds.png").stat().st_size > 1000
