"""Model cards: the README.md (Hugging Face card, YAML header) of a saved model directory.

Owns what a card says. The card is the README.md to upload with the model folder to the
Hugging Face hub (copy it in as ``README.md``); the workflow keeps it apart from the folder,
at ``results/<run>/model_cards/<model>/README.md`` (rule model_card, after every evaluation
of the model), so that no job rewrites another job's output. A card tells, from the model
folder's own files and the evaluation results it is given:

* what the model is (a teacher or baseline trained from scratch, a distilled student, a
  weighted-mutual-learning peer, the logit-averaged ensemble), its architecture and size, and
  whether it is a causal LM or a masked LM (an encoder, ``arch: roberta``: its card says
  "masked LM (RoBERTa)", loads it with ``AutoModelForMaskedLM``, states its masking --
  :mod:`babydistill.train.masked_lm`'s rate and 80/10/10 split -- and the pseudo-log-likelihood
  convention its zero-shot scores were computed with);
* the paper whose recipe it follows (from the spec's objective and ``kl_direction``);
* the data (corpus split, tokens, tokenizer) and the full config spec (``provenance.json``);
* training metrics (``train_summary.json``, the last ``metrics.csv`` row);
* its evaluation results (``results/<run>/eval/blimp/<suite>/<model>.json``,
  ``eval/finetune/<task>/<model>.json``: ``--blimp`` and ``--finetune``), in the body and as
  the header's ``model-index``;
* the provenance digest: spec sha256, code commit, input digests, library versions.

CLI::

    python -m babydistill.report.model_card --model-dir results/<run>/models/<name> \
        --blimp EVAL.json ... --finetune EVAL.json ... --out README.md
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import yaml

from babydistill.common import UserError, atomic_write_text, cli, read_json, setup_logging

log = logging.getLogger("babydistill.report.model_card")

PAPERS = {
    "baby-llama": ("Baby Llama: knowledge distillation from an ensemble of teachers trained on a small "
                   "dataset with no performance penalty (Timiryasov & Tastet, 2023)"),
    "babyllama-2": ("BabyLlama-2: Ensemble-Distilled Models Consistently Outperform Teachers With Limited "
                    "Data (Tastet & Timiryasov, 2024)"),
    "choosy": ("Choosy Babies Need One Coach: Inducing Mode-Seeking Behavior in BabyLlama with Reverse "
               "KL Divergence (BabyLM 2024)"),
    "wml": ("When Babies Teach Babies: Can student knowledge sharing outperform Teacher-Guided "
            "Distillation on small datasets? (BabyLM 2024)"),
}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


# What each zero-shot convention computes for a masked LM (babydistill.eval.pll has the sources)
PLL_CONVENTIONS = {
    "babylm-2023": "the 2023 pipeline's: the sum, in bits, of the log-probabilities of the "
                   "sentence's tokens, each masked in turn (positions 1..n after the CLS token)",
    "babylm-2024": "the 2024 pipeline's (minicons's `conditional_score`): the mean of the "
                   "masked log-probabilities of the sentence's tokens after the EOS token's text "
                   "(or the context)",
    "babylm-2025": "the 2025 pipeline's `mlm` backend: the sum of the masked log-probabilities "
                   "of the completion's tokens, each masked in turn",
}


def is_encoder(config: dict) -> bool:
    """Whether a saved config.json is a masked LM's (``...ForMaskedLM``: RoBERTa and the like)."""
    return any(str(a).endswith("ForMaskedLM") for a in config.get("architectures") or [])


def _kind(config: dict) -> str:
    """The model's kind as the card names it."""
    if not is_encoder(config):
        return "causal LM"
    return "masked LM (RoBERTa)" if config.get("model_type") == "roberta" else "masked LM"


def context_tokens(config: dict) -> int | None:
    """The tokens the model reads: its positions, less RoBERTa's padding offset (position ids
    start at ``pad_token_id + 1``)."""
    ctx = config.get("max_position_embeddings") or config.get("n_positions")
    if ctx and is_encoder(config) and config.get("model_type") == "roberta" and \
            config.get("pad_token_id") is not None:
        ctx -= config["pad_token_id"] + 1
    return ctx


def masking() -> str:
    """The masked-LM objective in one sentence, from the training module's own constants."""
    from babydistill.train import masked_lm as m

    keep = round(100 * (1 - m.MASK_REPLACE_PROB - m.RANDOM_REPLACE_PROB))
    return (f"each position is chosen with probability {m.MLM_PROBABILITY}; of the chosen, "
            f"{round(100 * m.MASK_REPLACE_PROB)}% become `<mask>`, "
            f"{round(100 * m.RANDOM_REPLACE_PROB)}% a random token and {keep}% stay "
            "(80/10/10); the loss is the cross-entropy on the chosen positions")


def describe(spec: dict, config: dict) -> tuple[str, str]:
    """(what the model is, the paper whose recipe it follows), from its spec and config."""
    arch = config.get("model_type", "?")
    if is_encoder(config):
        arch = f"{arch} {_kind(config)}"
    if config.get("model_type") == "babydistill_ensemble" or config.get("members"):
        members = config.get("member_sources") or config.get("members") or []
        names = ", ".join(Path(m).name for m in members)
        return (f"The logit-averaged ensemble of {len(members)} teachers ({names}): the mean of their "
                "raw logits, the distillation target of the students, as one model (custom code: load "
                "with trust_remote_code=True).", PAPERS["baby-llama"])
    objective = spec.get("objective")
    if objective == "wml":
        return (f"A {arch} student trained by teacher-less weighted mutual learning with "
                f"{spec.get('num_peers', 'N')} peers (the best peer is saved here).", PAPERS["wml"])
    if objective == "kd":
        teachers = ", ".join(spec.get("teachers") or [])
        direction = spec.get("kl_direction", "forward")
        what = (f"A {arch} student distilled ({direction} KL, alpha {spec.get('alpha')}, temperature "
                f"{spec.get('temperature')}) from the logit-averaged teachers {teachers}"
                + (f", through their stored top-{spec['cache']['k']} targets" if spec.get("cache") else "")
                + ".")
        if direction == "reverse":
            return what, PAPERS["choosy"]
        return what, f"{PAPERS['baby-llama']}; {PAPERS['babyllama-2']}"
    if is_encoder(config):
        return (f"A {arch} trained from scratch (masked-token cross-entropy): a teacher or the "
                "non-distilled baseline of the distillation experiments.",
                f"{PAPERS['baby-llama']}; {PAPERS['babyllama-2']}")
    return (f"A {arch} causal LM trained from scratch (next-token cross-entropy): a teacher or the "
            "non-distilled baseline of the distillation experiments.",
            f"{PAPERS['baby-llama']}; {PAPERS['babyllama-2']}")


def eval_results(paths: Sequence[str | os.PathLike]) -> list[dict]:
    """The evaluation results in ``paths`` (each must exist), in the order of their paths
    (``.../<suite or task>/<model>.json``: by suite or task name)."""
    return [read_json(p) for p in sorted(paths, key=str)]


def model_index(name: str, zero: list[dict], fine: list[dict], encoder: bool = False) -> list[dict]:
    """The card header's ``model-index`` (Hugging Face's machine-readable results)."""
    results = []
    for r in zero:
        suite = r.get("suite", "?")
        task = ({"type": "fill-mask", "name": f"zero-shot minimal pairs (PLL, {r.get('convention')}, acc)"}
                if encoder else {"type": "text-generation", "name": "zero-shot minimal pairs (lm-eval, acc)"})
        results.append({
            "task": task,
            "dataset": {"name": suite, "type": suite},
            "metrics": [{"type": "accuracy", "value": round(100 * r["accuracy"], 2),
                         "name": f"{suite} macro accuracy (%)"}],
        })
    for r in fine:
        if r.get("score") is None:
            continue
        task = r.get("task", "?")
        results.append({
            "task": {"type": "text-classification", "name": f"fine-tuning ({task})"},
            "dataset": {"name": task, "type": task},
            "metrics": [{"type": r.get("metric", "score"), "value": round(100 * r["score"], 2),
                         "name": f"{task} {r.get('metric', 'score')} x 100"}],
        })
    return [{"name": name, "results": results}] if results else []


def _last_metrics_row(model_dir: Path) -> dict | None:
    path = model_dir / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if any(r.values())]
    return rows[-1] if rows else None


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _card_head(name: str, config: dict, summary: dict, what: str, paper: str,
               index: list[dict]) -> list[str]:
    """The YAML header (with the ``model-index``), the title, what the model is, its facts."""
    encoder = is_encoder(config)
    header = {
        "language": ["en"],
        "license": "mit",
        "library_name": "transformers",
        "pipeline_tag": "fill-mask" if encoder else "text-generation",
        "tags": ["babylm", "babydistill", "knowledge-distillation", config.get("model_type", "causal-lm")]
        + (["masked-lm"] if encoder else []),
    }
    if index:
        header["model-index"] = index
    out = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "", f"# {name}", "", what, ""]
    params = summary.get("parameters") or {}
    ctx = context_tokens(config)
    facts = [f"architecture `{config.get('model_type')}`", f"vocabulary {config.get('vocab_size')}",
             f"context {ctx} tokens"]
    if encoder:
        facts[0] += ", a masked LM"
        facts[2] += f" ({config.get('max_position_embeddings')} positions less the padding offset)"
    if params:
        facts.append("parameters " + ", ".join(f"{k} {v:,}" for k, v in params.items()))
    masked = [f"- masking: {masking()}"] if encoder else []
    return out + ["- " + "; ".join(facts), *masked, f"- paper: {paper}", ""]


def _mask_token(model_dir: Path) -> tuple[str, int | None]:
    """The folder's mask token and its id (tokenizer_config.json, tokenizer.json)."""
    tok_cfg = _read_json(model_dir / "tokenizer_config.json") or {}
    mask = tok_cfg.get("mask_token") or "<mask>"
    mask = mask.get("content", "<mask>") if isinstance(mask, dict) else mask
    added = (_read_json(model_dir / "tokenizer.json") or {}).get("added_tokens") or []
    return mask, next((t.get("id") for t in added if t.get("content") == mask), None)


def _card_use_encoder(name: str, model_dir: Path, zero: list[dict]) -> list[str]:
    """How to load a masked LM, its mask token and the zero-shot scoring it was given."""
    mask, mask_id = _mask_token(model_dir)
    conventions = sorted({r.get("convention") for r in zero if r.get("convention")})
    scoring = "; ".join(f"`{c}`: {PLL_CONVENTIONS.get(c, 'see babydistill.eval.pll')}" for c in conventions)
    return ["## Use", "", "```python",
            "from transformers import AutoModelForMaskedLM, AutoTokenizer",
            f"tok = AutoTokenizer.from_pretrained(\"{name}\")",
            f"model = AutoModelForMaskedLM.from_pretrained(\"{name}\")", "```", "",
            f"A masked LM (an encoder): it predicts the token under `{mask}`"
            + (f" (id {mask_id})" if mask_id is not None else "") + ", a token "
            "appended to this folder's tokenizer only (byte-level BPE, `PreTrainedTokenizerFast`); "
            "it does not generate text. The official BabyLM pipelines score it by "
            "pseudo-log-likelihood (`--model hf-mlm` in 2024, `--backend mlm` in 2025) and "
            "fine-tune it with a classification head on the first position.", "",
            *([f"Zero-shot scoring convention of the results below: {scoring}.", ""] if scoring else [])]


def _card_use(name: str, ensemble: bool) -> list[str]:
    return ["## Use", "", "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f"tok = AutoTokenizer.from_pretrained(\"{name}\")",
            f"model = AutoModelForCausalLM.from_pretrained(\"{name}\""
            + (", trust_remote_code=True)" if ensemble else ")"), "```", "",
            "The tokenizer (byte-level BPE, `PreTrainedTokenizerFast`) gives the same ids in "
            "transformers 4.40 to 5.x; lm-eval adds the BOS token before each sentence.", ""]


def _card_data(spec: dict, summary: dict, prov: dict, config: dict, ensemble: bool) -> list[str]:
    data = [f"- trained on the BabyLM training split, tokenized and cut into "
            f"{spec.get('seq_length', summary.get('seq_length', '?'))}-token chunks; the eval loss on "
            f"{spec.get('eval_chunks', '?')} fixed dev chunks"]
    if summary.get("tokens"):
        data.append(f"- {summary['tokens']:,} training tokens seen ({_fmt(summary.get('epochs'))} epochs)")
    for path, digest in (prov.get("inputs") or {}).items():
        data.append(f"- input `{path}` (sha256 `{digest[:16]}`)")
    if ensemble:
        members = config.get("member_sources") or []
        data = ["- the members' own training data: see the cards of "
                + ", ".join(f"`{m}`" for m in members)]
    return ["## Data", "", *data, ""]


def _card_ledger(summary: dict) -> list[str]:
    """The words-seen ledger: this model's words, tokens and epochs, each ancillary model's
    (teachers, a teacher cache's teachers) and the total the BabyLM rules count."""
    led = summary.get("ledger")
    if not led:
        return []
    out = ["## Words seen", "",
           f"Whitespace words, as the BabyLM data statistics count them ({led.get('word_count')}). "
           "The BabyLM rules count the training data of ancillary models (teachers) toward a "
           "model's budget: the total adds theirs.", "",
           "| model | words seen | tokens seen | epochs | data words |", "|---|---|---|---|---|"]
    def n(x) -> str:
        return "–" if x is None else f"{x:,}" if isinstance(x, int) else _fmt(x)

    rows = [("this model", led), *sorted((led.get("ancillary") or {}).items())]
    for name, r in rows:
        out.append(f"| {name} | {n(r.get('words_seen'))} | {n(r.get('tokens_seen'))} | "
                   f"{n(r.get('epochs'))} | {n(r.get('data_words'))} |")
    out += ["", f"Total words seen, teachers included: {n(led.get('total_words_seen'))}.", ""]
    return out


def _card_spec(spec: dict) -> list[str]:
    if not spec:
        return []
    return ["## Config spec", "", "The merged config entry this model was trained with:", "", "```json",
            json.dumps(spec, indent=2, sort_keys=True), "```", ""]


def _card_training(summary: dict, model_dir: Path) -> list[str]:
    if not summary:
        return []
    out = ["## Training", "", "| metric | value |", "|---|---|"]
    for key in ("steps", "epochs", "tokens", "batch_size", "world_size", "best_eval_loss", "best_step",
                "keep", "precision", "wall_time_s", "objective", "cached_targets"):
        if summary.get(key) is not None:
            out.append(f"| {key} | {_fmt(summary[key])} |")
    last = _last_metrics_row(model_dir)
    if last:
        out.append("| last metrics.csv row | " + ", ".join(f"{k}={v}" for k, v in last.items() if v) + " |")
    return out + [""]


def _zero_shot_encoder(zero: list[dict]) -> list[str]:
    """A masked LM's zero-shot table: pseudo-log-likelihoods, with each row's convention."""
    out = ["Zero-shot minimal pairs by pseudo-log-likelihood (each scored token masked in turn; "
           "the sentence with the higher score wins; macro accuracy over paradigms, chance 50%), "
           "as each row's convention computes it (see Use).", "",
           "| suite | accuracy (%) | pairs | backend | convention |", "|---|---|---|---|---|"]
    out += [f"| {r.get('suite')} | {100 * r['accuracy']:.2f} | {r.get('n_pairs')} | {r.get('backend')} "
            f"| {r.get('convention')} |" for r in zero]
    return out + [""]


def _card_evaluation(zero: list[dict], fine: list[dict], encoder: bool = False) -> list[str]:
    out = ["## Evaluation", ""]
    if not (zero or fine):
        out += ["Not evaluated (no evaluation results were given).", ""]
    if zero and encoder:
        out += _zero_shot_encoder(zero)
    elif zero:
        out += ["Zero-shot minimal pairs (lm-eval 0.4 `multiple_choice`: the sentence with the higher "
                "log-likelihood wins; macro accuracy over paradigms, chance 50%). "
                "`results/<run>/lm_eval_tasks/<suite>/RECIPE.md` holds the `lm_eval` command that "
                "recomputes it.", "", "| suite | accuracy (%) | pairs | backend |", "|---|---|---|---|"]
        out += [f"| {r.get('suite')} | {100 * r['accuracy']:.2f} | {r.get('n_pairs')} | {r.get('backend')} |"
                for r in zero]
        out.append("")
    if fine:
        out += ["Fine-tuning (best validation score with early stopping):", "",
                "| task | metric | score x 100 |", "|---|---|---|"]
        out += [f"| {r.get('task')} | {r.get('metric')} | "
                + ("skipped" if r.get("score") is None else f"{100 * r['score']:.2f}") + " |" for r in fine]
        out.append("")
    return out


def _card_provenance(prov: dict) -> list[str]:
    if not prov:
        return []
    code = prov.get("code") or {}
    return ["## Provenance", "",
            f"- spec sha256 `{prov.get('spec_sha256', '?')}`",
            f"- code commit `{code.get('commit', '?')}`" + (" (uncommitted changes)" if code.get("dirty") else ""),
            "- " + ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items() if v),
            f"- written {prov.get('written', '?')}; every digest is in `provenance.json`", ""]


def render(model_dir: str | os.PathLike, blimp: Sequence[str | os.PathLike] = (),
           finetune: Sequence[str | os.PathLike] = ()) -> str:
    """The card's text for a saved model directory and its evaluation results (eval_blimp's
    and finetune's JSON files)."""
    d = Path(model_dir)
    config = _read_json(d / "config.json")
    if config is None:
        raise UserError(f"{d}: not a saved model directory (no config.json)")
    prov = _read_json(d / "provenance.json") or {}
    summary = _read_json(d / "train_summary.json") or {}
    spec = prov.get("spec") or {}
    name = d.name
    zero, fine = eval_results(blimp), eval_results(finetune)
    what, paper = describe(spec, config)
    ensemble = config.get("model_type") == "babydistill_ensemble"
    encoder = is_encoder(config)
    return "\n".join([
        *_card_head(name, config, summary, what, paper, model_index(name, zero, fine, encoder)),
        *(_card_use_encoder(name, d, zero) if encoder else _card_use(name, ensemble)),
        *_card_data(spec, summary, prov, config, ensemble),
        *_card_ledger(summary),
        *_card_spec(spec),
        *_card_training(summary, d),
        *_card_evaluation(zero, fine, encoder),
        *_card_provenance(prov),
    ])


def write_card(model_dir: str | os.PathLike, out: str | os.PathLike,
               blimp: Sequence[str | os.PathLike] = (),
               finetune: Sequence[str | os.PathLike] = ()) -> Path:
    """Write the card of ``model_dir`` with these results to ``out`` (atomically)."""
    if not Path(model_dir).is_dir():
        raise UserError(f"{model_dir}: model directory not found")
    atomic_write_text(out, render(model_dir, blimp, finetune))
    return Path(out)


@cli
def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m babydistill.report.model_card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="a saved model directory (results/<run>/models/<name>)")
    ap.add_argument("--blimp", nargs="*", default=[], metavar="JSON",
                    help="the model's zero-shot results (eval_blimp's --out files)")
    ap.add_argument("--finetune", nargs="*", default=[], metavar="JSON",
                    help="the model's fine-tuning results (finetune's --out files)")
    ap.add_argument("--out", required=True, help="the card to write (README.md)")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    path = write_card(args.model_dir, args.out, args.blimp, args.finetune)
    log.info("wrote %s", path)
    return path


if __name__ == "__main__":
    main()
