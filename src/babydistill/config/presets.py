"""Model presets as numbers, torch-free: their special ids and exact parameter counts.

A preset is one entry of ``models:`` in the config (typed as
:class:`babydistill.config.specs.ModelPreset`). :func:`preset_parameters` is the exact count
of the model :func:`babydistill.models.build.build_model` builds, from the shape alone (norms
and biases included, tied embeddings counted once): the workflow sizes jobs with it at
Snakefile parse time, the WML peer search and the paper-smoke projection use it, and a test
checks it against built models.

``python -m babydistill.config.presets --count PRESET [--config config.yaml] [--vocab-size 16000]``
prints the preset's parameter count (last line: the bare integer); no model is built, so
even the 705M model costs no memory or time.
"""

from __future__ import annotations

import argparse

from babydistill.common import UserError, cli
from babydistill.config.specs import ModelPreset

# Special tokens follow the project tokenizer: pad 0, bos 1, eos 2.
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
ARCHS = ("llama", "gpt2", "roberta")
# Masked LMs (RobertaForMaskedLM). Their embedding has one row more than the tokenizer: the
# mask token, appended at id vocab_size (the tokenizer's own size), so that every id a causal
# model knows stays what it is and the tokenizer stage's files stay as they are
# (babydistill.data.tokenizer.add_mask_token writes it into a masked model's folder).
MASKED_ARCHS = ("roberta",)


def is_masked(preset: ModelPreset | dict) -> bool:
    """Whether ``preset`` is a masked LM (trained with the MLM objective)."""
    arch = preset.arch if isinstance(preset, ModelPreset) else preset.get("arch")
    return arch in MASKED_ARCHS


def embedding_rows(preset: ModelPreset | dict, vocab_size: int) -> int:
    """The model's vocabulary for a tokenizer of ``vocab_size`` tokens: a masked LM's has
    the mask token too (id ``vocab_size``, :func:`mask_token_id`)."""
    return vocab_size + 1 if is_masked(preset) else vocab_size


def mask_token_id(vocab_size: int) -> int:
    """The mask token's id for a tokenizer of ``vocab_size`` tokens: the first free one."""
    return vocab_size


def typed_preset(preset: ModelPreset | dict, name: str) -> ModelPreset:
    """A typed preset; a mapping is parsed (schema + shape checks, one-line errors)."""
    return ModelPreset.of(preset, name)


def check_vocab(vocab_size: int, name: str) -> None:
    # the one thing about a model the schema cannot know: the tokenizer's size
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= EOS_ID:
        raise UserError(f"{name}: vocab_size must be an integer > {EOS_ID}, got {vocab_size!r}")


def arch_default(value, arch_default):
    """A preset key the preset leaves out (None) takes its arch's default."""
    return arch_default if value is None else value


def preset_parameters(preset: ModelPreset | dict, vocab_size: int, name: str = "model") -> int:
    """The exact parameter count of ``build_model(preset, vocab_size)``, from the shape alone
    (no torch): norms and biases included, tied embeddings counted once."""
    p = typed_preset(preset, name)
    check_vocab(vocab_size, name)
    h, layers = p.hidden_size, p.num_layers
    if p.arch == "llama":
        kv = h // p.num_heads * (p.num_kv_heads or p.num_heads)
        ffn = p.intermediate_size
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * ffn + 2 * h  # q,o + k,v + mlp + 2 norms
        heads = 1 if arch_default(p.tie_word_embeddings, False) else 2
        return layers * per_layer + heads * vocab_size * h + h  # + the final norm
    if p.arch == "roberta":
        return _roberta_parameters(p, embedding_rows(p, vocab_size))
    ffn = p.intermediate_size or 4 * h
    # attention qkv + proj, mlp fc + proj (all with biases), 2 layer norms (weight + bias)
    per_layer = (3 * h * h + 3 * h) + (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 4 * h
    heads = 1 if arch_default(p.tie_word_embeddings, True) else 2
    return layers * per_layer + heads * vocab_size * h + p.max_position_embeddings * h + 2 * h


def _roberta_parameters(p: ModelPreset, rows: int) -> int:
    """RobertaForMaskedLM's count: ``rows`` includes the mask token; no pooler (the MLM head
    needs none), one token type (roberta-base's ``type_vocab_size``)."""
    h, ffn = p.hidden_size, p.intermediate_size
    # q, k, v, o with biases, 2 layer norms, mlp in + out with biases
    per_layer = 4 * (h * h + h) + 2 * (2 * h) + (h * ffn + ffn) + (ffn * h + h)
    embeddings = rows * h + p.max_position_embeddings * h + 1 * h + 2 * h  # + type, norm
    # the head: dense + layer norm + output bias; its decoder is the embedding, unless
    # untied: then (transformers 5) a decoder of its own with its own bias as well
    untied = not arch_default(p.tie_word_embeddings, True)
    head = (h * h + h) + 2 * h + rows + (rows * h + rows if untied else 0)
    return p.num_layers * per_layer + embeddings + head


@cli
def main(argv: list[str] | None = None) -> int:
    from babydistill.config import DEFAULT_CONFIG, load_yaml  # the package above: its CLI only

    ap = argparse.ArgumentParser(prog="python -m babydistill.config.presets", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", required=True, metavar="PRESET", help="preset name under models:")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--vocab-size", type=int, default=None,
                    help="default: the config's tokenizer.vocab_size")
    args = ap.parse_args(argv)
    cfg = load_yaml(args.config)
    models = cfg.get("models") or {}
    if args.count not in models:
        raise UserError(f"{args.config}: models.{args.count}: no such preset "
                        f"(have: {', '.join(models) or 'none'})")
    vocab = args.vocab_size or (cfg.get("tokenizer") or {}).get("vocab_size", 16000)
    n = preset_parameters(models[args.count], vocab, name=f"models.{args.count}")
    print(f"{args.count}: {n:,} parameters ({n / 1e6:.1f}M, vocab {vocab})")
    print(n)
    return n


if __name__ == "__main__":
    main()
