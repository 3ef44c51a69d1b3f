"""Layer 5, training: the trainer loop and its parts (checkpointer, metrics logger, callbacks),
the launcher for torchrun, and the pretrain stage (teachers and baselines).

Stages: ``pretrain``, ``launch`` (starts a training stage on the granted GPUs).
Library: ``trainer``, ``callbacks``, ``checkpoint``, ``metrics``, ``stage`` (what every training
stage shares: flags, spec, data, callbacks, identity, provenance).
"""
