"""Layer 3, the models: presets built as Hugging Face causal LMs, saved models loaded, and the
logit-averaged ensemble's model class.

Library only (``build``, ``ensemble``): every stage that trains, scores or distils a model
builds or loads it here. Imports the layers below (common, config).
"""
