"""The logit-averaged teacher ensemble as one evaluable model (the papers' "ensemble" row).

``python -m babydistill.distill.ensemble --teacher DIR [--teacher DIR ...] --out DIR`` writes::

    DIR/config.json                   model_type babydistill_ensemble, auto_map -> the code file
    DIR/modeling_babydistill_ensemble.py   EnsembleConfig + EnsembleForCausalLM (self-contained)
    DIR/member0/, DIR/member1/, ...   the member models (save_pretrained), loaded by from_pretrained
    DIR/tokenizer files               copied from the first member (or --tokenizer DIR)

so ``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)`` loads it offline
and lm-eval's ``hf`` model (``pretrained=DIR,trust_remote_code=True``) can score it. The
model classes, and the loader that needs no remote code, are
:mod:`babydistill.models.ensemble`'s.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from babydistill.common import UserError, atomic_path, cli, setup_logging
from babydistill.config.provenance import record_model, stage_inputs
from babydistill.data.tokenizer import fit_to_model
from babydistill.models.ensemble import CODE_FILE, EnsembleConfig, model_code

log = logging.getLogger("babydistill.distill.ensemble")


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
            # Copy the saved files as they are (weights bit-identical, no reload needed); not
            # the member's revisions and their hub repository (train.callbacks.Revisions).
            shutil.copytree(d, tmp / f"member{i}",
                            ignore=shutil.ignore_patterns("*.pt", "metrics.csv", "tensorboard",
                                                          "README.md", "revisions", "hub.git"))
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
    ap = argparse.ArgumentParser(prog="python -m babydistill.distill.ensemble", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", action="append", required=True, help="member model dir (repeat)")
    ap.add_argument("--out", required=True, help="ensemble directory to write")
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir (default: the first member's files)")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    out = save_ensemble(args.teacher, args.out, args.tokenizer)
    log.info("wrote %s: logit average of %d models", out, len(args.teacher))
    record_model(args.out, {}, stage_inputs(args))  # provenance.json (rule model_card writes the card)
    return out


if __name__ == "__main__":
    main()
