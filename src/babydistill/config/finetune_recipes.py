"""The fine-tuning recipes (``eval.finetune.recipe``): which tasks a config fine-tunes on and
each task's spec (what the finetune rule passes to ``babydistill.eval.finetune --spec``).

- ``babylm-2023`` (the default): the tasks and Baby Llama Table 3 values of
  ``eval.finetune.tasks``, as before.
- ``babylm-2025``: the official 2025 pipeline's set and values, read from
  babylm/evaluation-pipeline-2025 ``eval_finetuning.sh`` @ bf55c1131e53654c2a87418f5629c26959acd710:
  boolq and multirc at ``BIG_BSZ`` 16, rte, wsc, mrpc, qqp, mnli at ``BSZ`` 32; lr 3e-5;
  ``MAX_EPOCHS`` 10, wsc ``WSC_EPOCHS`` 30; seed 42. MNLI and QQP trained on 10k examples:
  the pipeline's README says its data release subsampled them to 10k at random (the indices
  are not published), so a larger training file is subsampled here to 10,000 with seed 42
  (a smaller one, the 2025 release itself, is used whole).

Torch-free, so the Snakefile reads it at parse time; the training itself is
``babydistill.eval.finetune``.
"""

from __future__ import annotations

RECIPES = ("babylm-2023", "babylm-2025")
DEFAULT_RECIPE = "babylm-2023"

BABYLM_2025 = "babylm-2025"
BABYLM_2025_SUBSAMPLE = 10_000  # README: "randomly subsampled MNLI and QQP to 10k training samples"
# task -> (batch size, epochs), in eval_finetuning.sh's order
BABYLM_2025_TASKS = {
    "boolq": (16, 10),
    "multirc": (16, 10),
    "rte": (32, 10),
    "wsc": (32, 30),
    "mrpc": (32, 10),
    "qqp": (32, 10),
    "mnli": (32, 10),
}


def babylm_2025_spec(task: str) -> dict:
    """One task's --spec under recipe babylm-2025."""
    batch_size, epochs = BABYLM_2025_TASKS[task]
    return {"recipe": BABYLM_2025, "lr": 3e-5, "batch_size": batch_size, "epochs": epochs,
            "seed": 42,
            "max_train": BABYLM_2025_SUBSAMPLE if task in ("mnli", "qqp") else None}


def recipe_of(finetune: dict) -> str:
    """The recipe of an ``eval.finetune`` section (absent: babylm-2023, today's behaviour)."""
    return (finetune or {}).get("recipe") or DEFAULT_RECIPE


def task_specs(finetune: dict) -> dict[str, dict]:
    """task -> spec of an ``eval.finetune`` section: its ``tasks`` under babylm-2023 (the
    objects as written, so those jobs' commands do not change); the recipe's own set under
    babylm-2025, which replaces ``tasks``."""
    if recipe_of(finetune) == BABYLM_2025:
        return {t: babylm_2025_spec(t) for t in BABYLM_2025_TASKS}
    return dict((finetune or {}).get("tasks") or {})


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "config.finetune_recipes", "the Snakefile and python -m babydistill.eval.finetune")
