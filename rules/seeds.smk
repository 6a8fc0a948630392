# Injection seeds (injection.seeds, presets/seeds.yaml): every method's model once per seed, through the same
# rules (the further seeds' models are values of the {method} wildcard); this rule compares them.
SEED_RUNS = [{"task": task, "method": method, "seed": seed, "model": seed_model(method, seed, SEEDS[0])}
             for task in TASKS for method in METHODS for seed in SEEDS]


rule seed_summary:
    input:
        metrics=paths("results/eval/{task}/{model}/metrics.tsv", SEED_RUNS),
        acie=paths("results/attribution/{task}/{model}/acie_exact.tsv", SEED_RUNS),
        ablation=paths("results/interventions/{task}/{model}/ablation.tsv", SEED_RUNS),
    output:
        tsv=report("results/tables/seeds.tsv", caption="report/seeds.rst", category="7 Injection seeds",
                   labels={"table": "seeds"}),
        pairs="results/tables/seeds_pairs.tsv",
        bands="results/tables/seeds_ablation_band.tsv",
        md="results/tables/seeds.md",
        pdf="results/figures/seeds.pdf",
        png=report("results/figures/seeds.png", caption="report/seeds.rst", category="7 Injection seeds",
                   labels={"figure": "head ablation across seeds"}),
    log:
        "results/logs/seed_summary.log",
    params:
        model_name=config["model"]["name"],
        runs=SEED_RUNS,  # (task, method, seed, model) of each input, in order
        top_fractions=config["attribution"]["top_fractions"],
    conda:
        "../envs/plots.yaml"
    script:
        "../workflow_scripts/seed_summary.py"
