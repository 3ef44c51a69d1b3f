"""Layer 8, hyperparameter sweeps on Optuna (config ``sweeps:``; docs/sweeps.md).

* ``study``: the study's storage under ``results/<run>/sweeps/<name>/`` (Optuna's journal
  file, safe for several processes and on a shared filesystem), the claim of a trial, the
  heartbeats that tell a killed worker's trial, TPE and Hyperband;
* ``worker`` (stage, rule ``sweep_worker``): run trials through the training stages
  (``train.pretrain``, ``distill.student``) until the study has its trials;
* ``results`` (stage, rule ``sweep_results``): the trials table and the best trial's run keys.

It sits above ``report`` (its tables are written by ``report.tables.write_table``); nothing
below imports it.
"""
