"""The logit-averaged teacher ensemble as one evaluable model (the papers' "ensemble" row).

``python -m babydistill.ensemble --teacher DIR [--teacher DIR ...] --out DIR`` writes::

    DIR/config.json                   model_type babydistill_ensemble, auto_map -> the code file
    DIR/modeling_babydistill_ensemble.py   EnsembleConfig + EnsembleForCausalLM (self-contained)
    DIR/member0/, DIR/member1/, ...   the member models (save_pretrained), loaded by from_pretrained
    DIR/tokenizer files               copied from the first member (or --tokenizer DIR)

so ``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)`` loads it offline
and lm-eval's ``hf`` model (``pretrained=DIR,trust_remote_code=True``) can score it. The
forward pass returns the mean of the members' RAW logits (float32), the same ensemble the
distillation losses use (babydistill.losses.average_logits).

It is a generation-capable model too (``GenerationMixin``): ``model.generate(...)`` and
``pipeline("text-generation", model=DIR, trust_remote_code=True)`` work. It keeps no
key/value cache (each step runs the members on the whole sequence, which is cheap at the
papers' 128-256-token contexts) and gives the members position ids from the attention
mask, so left-padded batches generate as unpadded ones do.

The two classes below are written into DIR as source (``inspect.getsource``), so they
import nothing but torch and transformers: the directory works without babydistill.
babydistill itself never runs that copy: :func:`register_auto_classes` makes the Auto
classes load the folder with the classes of this module, no ``trust_remote_code`` needed.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .common import UserError, atomic_path, cli, setup_logging
from .provenance import record_model, stage_inputs
from .tokenizer import fit_to_model

log = logging.getLogger("babydistill.ensemble")
CODE_FILE = "modeling_babydistill_ensemble.py"


class EnsembleConfig(PretrainedConfig):
    """Names the member sub-folders; shared vocabulary / special ids / context copied in."""

    model_type = "babydistill_ensemble"

    def __init__(self, members=None, vocab_size=None, max_position_embeddings=None, use_cache=False, **kwargs):
        self.members = list(members or [])
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.use_cache = use_cache  # no key/value cache (generate reads this)
        super().__init__(**kwargs)


class EnsembleForCausalLM(PreTrainedModel, GenerationMixin):
    """Mean of the members' raw logits. Weights live in the member sub-folders."""

    config_class = EnsembleConfig
    base_model_prefix = "ensemble"
    main_input_name = "input_ids"
    _no_split_modules: list = []
    _supports_cache_class = False  # no key/value cache: every step sees the whole sequence

    def __init__(self, config, members=None):
        super().__init__(config)
        self.members = torch.nn.ModuleList(members or [])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, config=None, **kwargs):
        # Members are ordinary HF models in sub-folders; only the dtype is passed on (hub
        # and device-placement kwargs from callers such as lm-eval do not apply here).
        path = os.fspath(pretrained_model_name_or_path)
        if not isinstance(config, EnsembleConfig):
            config = EnsembleConfig.from_pretrained(path)
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        member_kwargs = {} if dtype in (None, "auto") else {"dtype": dtype}
        members = [AutoModelForCausalLM.from_pretrained(os.path.join(path, m), **member_kwargs)
                   for m in config.members]
        model = cls(config, members)
        if os.path.isfile(os.path.join(path, "generation_config.json")):
            from transformers import GenerationConfig

            model.generation_config = GenerationConfig.from_pretrained(path)
        model.eval()
        return model

    @classmethod
    def _supports_default_dynamic_cache(cls):  # generate must not build a cache for us
        return False

    def get_input_embeddings(self):
        return self.members[0].get_input_embeddings()

    def tie_weights(self, *args, **kwargs):  # members handle their own ties
        pass

    def get_output_embeddings(self):
        return self.members[0].get_output_embeddings()

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        # No cache: the whole sequence every step (generate's cache arguments are dropped).
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids=None, attention_mask=None, labels=None, position_ids=None, **kwargs):
        if position_ids is None and attention_mask is not None:
            # left padding (batched generation): positions count real tokens only
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        logits = torch.stack([
            m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
              use_cache=False).logits.float()
            for m in self.members
        ]).mean(dim=0)
        loss = None
        if labels is not None:  # HF convention: labels are the inputs, shifted here
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)


def register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModelForCausalLM`` load a saved ensemble with THIS code.

    Once registered, ``from_pretrained(DIR)`` without ``trust_remote_code`` finds the
    ensemble's model_type here and never imports the code file in DIR: the evaluation
    scores ensembles without running code from a results folder.
    """
    from transformers import AutoConfig

    AutoConfig.register(EnsembleConfig.model_type, EnsembleConfig, exist_ok=True)
    AutoModelForCausalLM.register(EnsembleConfig, EnsembleForCausalLM, exist_ok=True)


def model_code() -> str:
    """The self-contained source written next to the saved ensemble."""
    header = (
        '"""babydistill logit-averaged ensemble (generated by babydistill.ensemble)."""\n\n'
        "import os\n\nimport torch\nimport torch.nn.functional as F\n"
        "from transformers import AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel\n"
        "from transformers.modeling_outputs import CausalLMOutputWithPast\n\n\n"
    )
    return header + inspect.getsource(EnsembleConfig) + "\n\n" + inspect.getsource(EnsembleForCausalLM)


def save_ensemble(member_dirs, out, tokenizer_dir=None) -> Path:
    """Write the ensemble directory ``out`` (atomically) from saved member model dirs."""
    from transformers import AutoConfig, GenerationConfig

    if len(member_dirs) < 1:
        raise UserError("--teacher: give at least one member model directory")
    configs = []
    for d in member_dirs:
        if not (Path(d) / "config.json").is_file():
            raise UserError(f"{d}: not a saved model directory (no config.json); train it first")
        configs.append(AutoConfig.from_pretrained(d))
    vocabs = {c.vocab_size for c in configs}
    if len(vocabs) != 1:
        raise UserError(f"--teacher: members disagree on vocab_size {sorted(vocabs)}; they must share one tokenizer")
    ctx = [getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None) for c in configs]
    ctx = min(c for c in ctx if c) if any(ctx) else None
    tok_src = Path(tokenizer_dir or member_dirs[0])
    if not (tok_src / "tokenizer.json").is_file() and not (tok_src / "tokenizer_config.json").is_file():
        raise UserError(f"{tok_src}: no tokenizer files; pass --tokenizer DIR")
    first = configs[0]
    cfg = EnsembleConfig(
        members=[f"member{i}" for i in range(len(member_dirs))], vocab_size=first.vocab_size,
        max_position_embeddings=ctx, bos_token_id=first.bos_token_id,
        eos_token_id=first.eos_token_id, pad_token_id=first.pad_token_id,
        member_sources=[str(d) for d in member_dirs],
    )
    cfg.auto_map = {"AutoConfig": f"{CODE_FILE[:-3]}.EnsembleConfig",
                    "AutoModelForCausalLM": f"{CODE_FILE[:-3]}.EnsembleForCausalLM"}
    cfg.architectures = ["EnsembleForCausalLM"]
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for i, d in enumerate(member_dirs):
            # Copy the saved files as they are (weights bit-identical, no reload needed).
            shutil.copytree(d, tmp / f"member{i}",
                            ignore=shutil.ignore_patterns("*.pt", "metrics.csv", "tensorboard", "README.md"))
        for f in tok_src.iterdir():
            if f.is_file() and ("token" in f.name or f.name in ("vocab.json", "merges.txt")):
                shutil.copy2(f, tmp / f.name)
        cfg.save_pretrained(tmp)
        GenerationConfig(bos_token_id=first.bos_token_id, eos_token_id=first.eos_token_id,
                         pad_token_id=first.pad_token_id, use_cache=False).save_pretrained(tmp)
        if ctx:
            fit_to_model(tmp, ctx)  # the tokenizer's limit is the shortest member's context
        (tmp / CODE_FILE).write_text(model_code(), encoding="utf-8")
    return out


@cli
def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m babydistill.ensemble", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", action="append", required=True, help="member model dir (repeat)")
    ap.add_argument("--out", required=True, help="ensemble directory to write")
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir (default: the first member's files)")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    out = save_ensemble(args.teacher, args.out, args.tokenizer)
    log.info("wrote %s: logit average of %d models", out, len(args.teacher))
    record_model(args.out, {}, stage_inputs(args))  # provenance.json, then the card
    return out


if __name__ == "__main__":
    main()
