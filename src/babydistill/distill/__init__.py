"""Layer 6, distillation: objectives for the trainer (KD from live or cached teachers, WML),
their losses, the teacher cache and the teacher ensemble stage.

Stages: ``student`` (rule distill: one KD or WML student), ``teacher_cache``, ``ensemble``,
``wml`` (rule wml_peer: one WML peer as a model folder). Library: ``losses``.
"""
