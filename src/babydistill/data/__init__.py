"""Layer 2, the data stages: corpus download and cleaning, the BPE tokenizer, token arrays
and the chunks the trainers read.

Stages (``python -m babydistill.data.<stage> --help``): ``demo_world``, ``download``,
``clean``, ``clean_stats``, ``select_split``, ``tokenizer``, ``tokenize_split``.
Library: ``chunks`` (a tokenized split as train and eval chunks). Imports only
``babydistill.common`` and ``babydistill.config``.
"""
