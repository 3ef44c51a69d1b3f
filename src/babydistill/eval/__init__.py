"""Layer 4, evaluation: BLiMP-style zero-shot scoring (lm-eval offline, or the fast scorer
that makes its decisions) and fine-tuning.

Stages: ``blimp`` (rule eval_blimp), ``finetune``, ``lm_eval_tasks``. Library: ``scorer``.
It sits below training because the trainer's per-epoch BLiMP curve scores with the scorer,
and nothing here needs a trainer: a stage here reads a saved model folder.
"""
