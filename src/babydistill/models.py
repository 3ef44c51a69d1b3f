"""Model presets -> Hugging Face causal LMs (LLaMA and GPT-2), and parameter counting.

A preset is one entry of ``models:`` in the config (arch, hidden_size, num_layers,
num_heads, num_kv_heads, intermediate_size, max_position_embeddings, optional
tie_word_embeddings and dropout); the vocabulary size comes from the tokenizer. Special
tokens follow the project tokenizer: pad 0, bos 1, eos 2. Loading saved models
(:func:`load_teachers`) lives here too.

Parameter counting has one home: :func:`preset_parameters`, exact and torch-free (the
workflow sizes jobs with it at parse time, the WML peer search and the paper-smoke projection
use it); a test checks it against the built models.

Dropout: GPT-2's residual, embedding and attention dropout (one value for the three, as
the authors' train.py sets them) default to 0.1, the transformers default the Baby Llama
GPT-2 705M ran with; LLaMA's attention dropout defaults to 0. Short runs learn faster with 0.

Embeddings: LLaMA presets are untied and GPT-2 presets tied unless the preset says
otherwise; this is what makes the papers' sizes come out (vocab 16000): llama-58M
58,343,936; llama-360M 359,973,888; gpt2-705M 704,732,160; smollama-345M 345,355,200.

``python -m babydistill.models --count PRESET [--config config.yaml] [--vocab-size 16000]``
prints the preset's parameter count (last line: the bare integer); no model is built, so
even the 705M model costs no memory or time.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .common import UserError, cli
from .specs import ModelPreset

if TYPE_CHECKING:  # torch and transformers load lazily: config.py (Snakefile) imports this
    import torch
    from transformers import PreTrainedModel

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
ARCHS = ("llama", "gpt2")


def _preset(preset: ModelPreset | dict, name: str) -> ModelPreset:
    """A typed preset; a mapping is parsed (schema + shape checks, one-line errors)."""
    return ModelPreset.of(preset, name)


def _vocab(vocab_size: int, name: str) -> None:
    # the one thing about a model the schema cannot know: the tokenizer's size
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= EOS_ID:
        raise UserError(f"{name}: vocab_size must be an integer > {EOS_ID}, got {vocab_size!r}")


def model_config(preset: ModelPreset | dict, vocab_size: int, name: str = "model"):
    """The transformers config for ``preset`` (LlamaConfig or GPT2Config)."""
    from transformers import GPT2Config, LlamaConfig

    p = _preset(preset, name)
    _vocab(vocab_size, name)
    arch, hidden, heads = p.arch, p.hidden_size, p.num_heads
    common = dict(vocab_size=vocab_size, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
                  eos_token_id=EOS_ID, attn_implementation="sdpa",
                  loss_type="ForCausalLM")  # explicit: silences an HF warning
    if arch == "llama":
        return LlamaConfig(
            hidden_size=hidden, num_hidden_layers=p.num_layers,
            num_attention_heads=heads, num_key_value_heads=p.num_kv_heads or heads,
            intermediate_size=p.intermediate_size,
            max_position_embeddings=p.max_position_embeddings,
            attention_dropout=float(_or(p.dropout, 0.0)),
            tie_word_embeddings=bool(_or(p.tie_word_embeddings, False)), **common)
    drop = float(_or(p.dropout, 0.1))
    return GPT2Config(
        n_embd=hidden, n_layer=p.num_layers, n_head=heads,
        n_inner=p.intermediate_size, n_positions=p.max_position_embeddings,
        resid_pdrop=drop, embd_pdrop=drop, attn_pdrop=drop,
        tie_word_embeddings=bool(_or(p.tie_word_embeddings, True)), **common)


def _or(value, arch_default):
    """A preset key the preset leaves out (None) takes its arch's default."""
    return arch_default if value is None else value


def build_model(preset: ModelPreset | dict, vocab_size: int, name: str = "model") -> PreTrainedModel:
    """A freshly initialised causal LM for ``preset`` (on the current default device).

    Seed torch beforehand for a reproducible init; build inside ``torch.device("meta")``
    to get the structure only.
    """
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    preset = _preset(preset, name)
    cfg = model_config(preset, vocab_size, name)
    cls = LlamaForCausalLM if preset.arch == "llama" else GPT2LMHeadModel
    return cls(cfg)


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def preset_parameters(preset: ModelPreset | dict, vocab_size: int, name: str = "model") -> int:
    """The exact parameter count of ``build_model(preset, vocab_size)``, from the shape alone
    (no torch): norms and biases included, tied embeddings counted once."""
    p = _preset(preset, name)
    _vocab(vocab_size, name)
    h, layers = p.hidden_size, p.num_layers
    if p.arch == "llama":
        kv = h // p.num_heads * (p.num_kv_heads or p.num_heads)
        ffn = p.intermediate_size
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * ffn + 2 * h  # q,o + k,v + mlp + 2 norms
        heads = 1 if _or(p.tie_word_embeddings, False) else 2
        return layers * per_layer + heads * vocab_size * h + h  # + the final norm
    ffn = p.intermediate_size or 4 * h
    # attention qkv + proj, mlp fc + proj (all with biases), 2 layer norms (weight + bias)
    per_layer = (3 * h * h + 3 * h) + (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 4 * h
    heads = 1 if _or(p.tie_word_embeddings, True) else 2
    return layers * per_layer + heads * vocab_size * h + p.max_position_embeddings * h + 2 * h


def load_teachers(dirs: Sequence[str | os.PathLike], device: torch.device | str = "cpu") -> list:
    """Saved models (teachers) in eval mode without gradients; all must share one vocabulary."""
    from transformers import AutoModelForCausalLM

    if not dirs:
        raise UserError("--teacher: give at least one teacher model directory")
    models = []
    for d in dirs:
        if not (Path(d) / "config.json").is_file():
            raise UserError(f"{d}: not a saved model directory (no config.json); train the teacher first")
        m = AutoModelForCausalLM.from_pretrained(d).to(device).eval()
        m.requires_grad_(False)
        models.append(m)
    vocabs = {m.config.vocab_size for m in models}
    if len(vocabs) != 1:
        raise UserError(f"--teacher: teachers disagree on vocab_size {sorted(vocabs)}; they must share one tokenizer")
    return models


@cli
def main(argv: list[str] | None = None) -> int:
    from .config import DEFAULT_CONFIG, load_yaml

    ap = argparse.ArgumentParser(prog="python -m babydistill.models", description=__doc__,
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
