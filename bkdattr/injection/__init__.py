"""Backdoor injection (METHOD.md s2): one module per method and a registry that dispatches to them.

  common    -- LoRA config, TRL trainer arguments, callbacks (loss log, gate checks), the trained result
  sft       -- LoRA / full SFT through TRL's SFTTrainer
  dpo       -- DPO through TRL's DPOTrainer on poisoned preference pairs
  edit      -- a ROME/MEMIT-style closed-form edit of MLP down-projections
  dispatch  -- the registry of methods, the clean control's recipe, and the injection job (`inject`)

Importing the package loads no torch (the rules import it when the DAG is built); a method's module is
imported when it runs.
"""

from .common import LOSS_LOG_COLUMNS, TrainingResult, save_checkpoint, save_result
from .dispatch import (REGISTRY, Job, Method, clean_rows, control_method, control_schedule, inject, method_names,
                       register)

__all__ = ["LOSS_LOG_COLUMNS", "REGISTRY", "Job", "Method", "TrainingResult", "clean_rows", "control_method",
           "control_schedule", "inject", "method_names", "register", "save_checkpoint",
           "save_result"]
