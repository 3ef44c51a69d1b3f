"""Model presets -> Hugging Face causal LMs (LLaMA and GPT-2) and masked LMs (RoBERTa), and
loading saved models.

A preset is one entry of ``models:`` in the config (arch, hidden_size, num_layers,
num_heads, num_kv_heads, intermediate_size, max_position_embeddings, optional
tie_word_embeddings and dropout); the vocabulary size comes from the tokenizer. Special
tokens follow the project tokenizer: pad 0, bos 1, eos 2. Loading saved models
(:func:`load_teachers`) lives here too.

Parameter counting from the shape alone lives below, in :mod:`babydistill.config.presets`
(torch-free: the workflow sizes jobs with it at parse time); a test checks it against the
models built here.

Dropout: GPT-2's residual, embedding and attention dropout (one value for the three, as
the authors' train.py sets them) default to 0.1, the transformers default the Baby Llama
GPT-2 705M ran with; LLaMA's attention dropout defaults to 0. Short runs learn faster with 0.

RoBERTa (``arch: roberta``, ``RobertaForMaskedLM``): roberta-base's config apart from the
preset's shape (GELU, dropout 0.1, layer norm eps 1e-5, one token type, no pooler), the
project's special ids (pad 0, bos 1, eos 2: RoBERTa's positions start at pad + 1) and one
embedding row more than the tokenizer for the mask token (id = the tokenizer's size, see
:func:`babydistill.config.presets.embedding_rows`); embeddings tied, as roberta-base's. The
WML authors (AI-DA-STC/generative-ai-research-babylm@701a0c8, src/WML_distill/
peer_generator.py) build their peers from ``AutoConfig.from_pretrained("roberta-base")`` with
``max_position_embeddings = block_size + 2``; config.yaml's roberta-98M is roberta-base's
shapes for our seq_length (vocab 16000: 98,053,505 parameters).

Embeddings: LLaMA presets are untied and GPT-2 presets tied unless the preset says
otherwise; this is what makes the papers' sizes come out (vocab 16000): llama-58M
58,343,936; llama-360M 359,973,888; gpt2-705M 704,732,160; smollama-345M 345,355,200.

Saved folders are checked before a model is built from them (:func:`check_weights`): a
``pytorch_model.bin`` only unpickling code could read, an embedding whose rows are not
``config.json``'s ``vocab_size``, or a tokenizer with more tokens than the embedding has
rows is one line, not a traceback from transformers (or scores from wrong rows).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from babydistill.common import UserError
from babydistill.config.presets import (  # noqa: F401 (ids and ARCHS: the model layer's names)
    ARCHS, BOS_ID, EOS_ID, MASKED_ARCHS, PAD_ID, arch_default as _or, check_vocab as _vocab,
    embedding_rows, is_masked, mask_token_id, typed_preset as _preset)
from babydistill.config.specs import ModelPreset

if TYPE_CHECKING:  # torch and transformers load lazily
    import torch
    from transformers import PreTrainedModel


def model_config(preset: ModelPreset | dict, vocab_size: int, name: str = "model"):
    """The transformers config for ``preset`` (LlamaConfig, GPT2Config or RobertaConfig);
    ``vocab_size`` is the tokenizer's (a masked LM adds its mask token's row)."""
    from transformers import GPT2Config, LlamaConfig

    p = _preset(preset, name)
    _vocab(vocab_size, name)
    arch, hidden, heads = p.arch, p.hidden_size, p.num_heads
    if arch == "roberta":
        return _roberta_config(p, vocab_size)
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


def _roberta_config(p: ModelPreset, vocab_size: int):
    """roberta-base's config.json values but the shape, ids and vocabulary (module docstring)."""
    from transformers import RobertaConfig

    drop = float(_or(p.dropout, 0.1))
    return RobertaConfig(
        vocab_size=embedding_rows(p, vocab_size), hidden_size=p.hidden_size,
        num_hidden_layers=p.num_layers, num_attention_heads=p.num_heads,
        intermediate_size=p.intermediate_size, hidden_act="gelu",
        hidden_dropout_prob=drop, attention_probs_dropout_prob=drop,
        max_position_embeddings=p.max_position_embeddings, type_vocab_size=1,
        layer_norm_eps=1e-5, initializer_range=0.02,
        pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
        tie_word_embeddings=bool(_or(p.tie_word_embeddings, True)),
        attn_implementation="sdpa", loss_type="ForMaskedLM")


def build_model(preset: ModelPreset | dict, vocab_size: int, name: str = "model") -> PreTrainedModel:
    """A freshly initialised model for ``preset`` (on the current default device): a causal
    LM, or for a masked arch a ``RobertaForMaskedLM`` with ``vocab_size + 1`` rows.

    Seed torch beforehand for a reproducible init; build inside ``torch.device("meta")``
    to get the structure only.
    """
    from transformers import GPT2LMHeadModel, LlamaForCausalLM, RobertaForMaskedLM

    preset = _preset(preset, name)
    cfg = model_config(preset, vocab_size, name)
    cls = {"llama": LlamaForCausalLM, "gpt2": GPT2LMHeadModel,
           "roberta": RobertaForMaskedLM}[preset.arch]
    return cls(cfg)


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


# LLaMA's, GPT-2's, RoBERTa's input embedding
_EMBEDDINGS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight")


def _weight_shapes(d: Path) -> dict[str, tuple] | None:
    """Tensor name -> shape of a saved folder's weights, read without building the model
    (safetensors headers, or ``pytorch_model.bin`` through ``weights_only``); None when the
    folder has no top-level weights (the ensemble keeps its members' in sub-folders)."""
    for index, single in (("model.safetensors.index.json", "model.safetensors"),
                          ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        if (d / index).is_file():
            files = sorted(set(json.loads((d / index).read_text())["weight_map"].values()))
        elif (d / single).is_file():
            files = [single]
        else:
            continue
        shapes: dict[str, tuple] = {}
        for f in files:
            shapes.update(_file_shapes(d / f))
        return shapes
    return None


def _file_shapes(path: Path) -> dict[str, tuple]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 -- a damaged file, whatever the library says
            raise UserError(f"{path}: not readable as safetensors ({type(e).__name__}); "
                            "save the model again") from None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 -- an UnpicklingError, or not a torch file at all
        why = ("it holds objects that only unpickling code could build; refused, nothing was run"
               if "weights_only" in str(e) or "weights only" in str(e).lower()
               else f"unreadable ({type(e).__name__})")
        raise UserError(f"{path}: {why}; use a folder saved with save_pretrained "
                        "(model.safetensors)") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a state dict of tensors; save the model again")
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def check_weights(model_dir: str | os.PathLike, vocab_size: int | None = None,
                  tokenizer_size: int | None = None) -> None:
    """One line when a saved folder's weights cannot serve its ``config.json``
    (``vocab_size``) or its tokenizer (``tokenizer_size`` = ``len(tokenizer)``): see the
    module docstring."""
    d = Path(model_dir)
    shapes = _weight_shapes(d)
    rows = next((shape[0] for k, shape in (shapes or {}).items() if k.endswith(_EMBEDDINGS)),
                None)
    if rows is None:
        return
    if vocab_size is not None and rows != vocab_size:
        raise UserError(f"{d}/config.json: vocab_size {vocab_size}, but the weights' embedding "
                        f"has {rows} rows; use the config.json saved with these weights")
    if tokenizer_size is not None and tokenizer_size > rows:
        raise UserError(f"{d}: the tokenizer has {tokenizer_size} tokens but the model's "
                        f"embedding only {rows} rows (ids from {rows} on have none); use the "
                        "tokenizer the model was trained with")


def _names_masked_lm(config: dict) -> bool:
    """Whether a saved ``config.json`` (a dict) names a masked LM (``...ForMaskedLM``)."""
    return any(a.endswith("ForMaskedLM") for a in config.get("architectures") or [])


def load_teachers(dirs: Sequence[str | os.PathLike], device: torch.device | str = "cpu") -> list:
    """Saved models (teachers) in eval mode without gradients; all must share one vocabulary
    and one kind: causal LMs, or masked LMs (``...ForMaskedLM`` in config.json, loaded with
    their MLM head)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    if not dirs:
        raise UserError("--teacher: give at least one teacher model directory")
    models, kinds = [], {}
    for d in dirs:
        if not (Path(d) / "config.json").is_file():
            raise UserError(f"{d}: not a saved model directory (no config.json); train the teacher first")
        config = json.loads((Path(d) / "config.json").read_text())
        check_weights(d, config.get("vocab_size"))
        masked = _names_masked_lm(config)
        kinds.setdefault(masked, str(d))
        auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
        m = auto.from_pretrained(d).to(device).eval()
        m.requires_grad_(False)
        models.append(m)
    if len(kinds) > 1:
        raise UserError(f"--teacher: {kinds[True]} is a masked LM and {kinds[False]} a causal one; "
                        "teachers must all be masked or all causal (they see the same inputs)")
    vocabs = {m.config.vocab_size for m in models}
    if len(vocabs) != 1:
        raise UserError(f"--teacher: teachers disagree on vocab_size {sorted(vocabs)}; they must share one tokenizer")
    return models


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "models.build", "every stage that trains, distils or scores a model")
