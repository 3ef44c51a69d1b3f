"""Layer 7, reporting: result tables (with seed-aware verdicts), figures and model cards.

Stages: ``tables`` (rule tables), ``model_card``. Library: ``figures``. The top layer: it reads
every other stage's outputs and nothing imports it.
"""
