"""Model cards: the README.md (Hugging Face card, YAML header) of every saved model directory.

Owns what a card says and when it is rewritten. A card tells, from the files the workflow
already writes beside the weights (no new inputs):

* what the model is (a teacher or baseline trained from scratch, a distilled student, a
  weighted-mutual-learning peer, the logit-averaged ensemble), its architecture and size;
* the paper whose recipe it follows (from the spec's objective and ``kl_direction``);
* the data (corpus split, tokens, tokenizer) and the full config spec (``provenance.json``);
* training metrics (``train_summary.json``, the last ``metrics.csv`` row);
* its evaluation results once they exist (``results/<run>/eval/blimp/<suite>/<model>.json``,
  ``eval/finetune/<task>/<model>.json``), in the body and as the header's ``model-index``;
* the provenance digest: spec sha256, code commit, input digests, library versions.

Each model stage writes the card after ``provenance.json`` (``provenance.record_model``);
each evaluation stage rewrites it after its result (``refresh_after_eval``), so the card
lists every score that exists. Rewrites are atomic (one
rename) and serialised by a lock on the model directory, so two evaluations of the same
model finishing together both end up in the card. Snakemake dates directory outputs by
their ``.snakemake_timestamp``, so a rewritten card does not make the model look new.

CLI::

    python -m babydistill.report.model_card --model-dir results/<run>/models/<name> [--eval-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import yaml

from babydistill.common import UserError, atomic_write_text, cli, setup_logging

log = logging.getLogger("babydistill.report.model_card")
CARD = "README.md"

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


def describe(spec: dict, config: dict) -> tuple[str, str]:
    """(what the model is, the paper whose recipe it follows), from its spec and config."""
    arch = config.get("model_type", "?")
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
    return (f"A {arch} causal LM trained from scratch (next-token cross-entropy): a teacher or the "
            "non-distilled baseline of the distillation experiments.",
            f"{PAPERS['baby-llama']}; {PAPERS['babyllama-2']}")


def eval_results(model_dir: Path, eval_dir: Path | None) -> tuple[list[dict], list[dict]]:
    """(zero-shot suite results, fine-tuning results) of this model that exist on disk."""
    if eval_dir is None or not eval_dir.is_dir():
        return [], []
    name = model_dir.name
    zero = [r for p in sorted(eval_dir.glob(f"blimp/*/{name}.json")) if (r := _read_json(p))]
    fine = [r for p in sorted(eval_dir.glob(f"finetune/*/{name}.json")) if (r := _read_json(p))]
    return zero, fine


def model_index(name: str, zero: list[dict], fine: list[dict]) -> list[dict]:
    """The card header's ``model-index`` (Hugging Face's machine-readable results)."""
    results = []
    for r in zero:
        suite = r.get("suite", "?")
        results.append({
            "task": {"type": "text-generation", "name": "zero-shot minimal pairs (lm-eval, acc)"},
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
    header = {
        "language": ["en"],
        "license": "mit",
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["babylm", "babydistill", "knowledge-distillation", config.get("model_type", "causal-lm")],
    }
    if index:
        header["model-index"] = index
    out = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "", f"# {name}", "", what, ""]
    params = summary.get("parameters") or {}
    ctx = config.get("max_position_embeddings") or config.get("n_positions")
    facts = [f"architecture `{config.get('model_type')}`", f"vocabulary {config.get('vocab_size')}",
             f"context {ctx} tokens"]
    if params:
        facts.append("parameters " + ", ".join(f"{k} {v:,}" for k, v in params.items()))
    return out + ["- " + "; ".join(facts), f"- paper: {paper}", ""]


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
                "keep", "wall_time_s", "objective", "cached_targets"):
        if summary.get(key) is not None:
            out.append(f"| {key} | {_fmt(summary[key])} |")
    last = _last_metrics_row(model_dir)
    if last:
        out.append("| last metrics.csv row | " + ", ".join(f"{k}={v}" for k, v in last.items() if v) + " |")
    return out + [""]


def _card_evaluation(zero: list[dict], fine: list[dict]) -> list[str]:
    out = ["## Evaluation", ""]
    if not (zero or fine):
        out += ["Not evaluated yet: the evaluation rules rewrite this card with their results.", ""]
    if zero:
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


def render(model_dir: str | os.PathLike, eval_dir: str | os.PathLike | None = None) -> str:
    """The card's text for a saved model directory."""
    d = Path(model_dir)
    config = _read_json(d / "config.json")
    if config is None:
        raise UserError(f"{d}: not a saved model directory (no config.json)")
    prov = _read_json(d / "provenance.json") or {}
    summary = _read_json(d / "train_summary.json") or {}
    spec = prov.get("spec") or {}
    name = d.name
    zero, fine = eval_results(d, Path(eval_dir) if eval_dir else None)
    what, paper = describe(spec, config)
    ensemble = config.get("model_type") == "babydistill_ensemble"
    return "\n".join([
        *_card_head(name, config, summary, what, paper, model_index(name, zero, fine)),
        *_card_use(name, ensemble),
        *_card_data(spec, summary, prov, config, ensemble),
        *_card_spec(spec),
        *_card_training(summary, d),
        *_card_evaluation(zero, fine),
        *_card_provenance(prov),
    ])


@contextlib.contextmanager
def locked(model_dir: Path) -> Iterator[None]:
    """An exclusive lock on the model directory (evaluation jobs of one model run together)."""
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def default_eval_dir(model_dir: Path) -> Path:
    """results/<run>/models/<name> -> results/<run>/eval."""
    return model_dir.resolve().parent.parent / "eval"


def write_card(model_dir: str | os.PathLike, eval_dir: str | os.PathLike | None = None) -> Path:
    """(Re)write ``model_dir/README.md`` atomically from what is on disk now."""
    d = Path(model_dir)
    if not d.is_dir():
        raise UserError(f"{d}: model directory not found")
    eval_dir = Path(eval_dir) if eval_dir else default_eval_dir(d)
    # The card is documentation, not a new model: keep the folder's timestamps, so that
    # Snakemake never takes a card update for a changed model and reruns what depends on it.
    before = d.stat()
    with locked(d):  # read the results and write the card under one lock: no lost update
        atomic_write_text(d / CARD, render(d, eval_dir))
        os.utime(d / CARD, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.utime(d, ns=(before.st_atime_ns, before.st_mtime_ns))
    return d / CARD


def refresh_after_eval(model: str | os.PathLike, out: str | os.PathLike) -> Path | None:
    """After an evaluation stage wrote ``out``: rewrite the card of ``model`` when it is a
    run's model directory (results/<run>/models/<name>) and ``out`` lies in that run's eval
    directory, as in the workflow; a model elsewhere (a hub id, a folder of yours) is left
    alone. Returns the card's path, or None."""
    d = Path(model)
    if not d.is_dir() or not Path(out).resolve().is_relative_to(default_eval_dir(d)):
        return None
    return write_card(d)


@cli
def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m babydistill.report.model_card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="a saved model directory (results/<run>/models/<name>)")
    ap.add_argument("--eval-dir", default=None, help="where eval results live (default: results/<run>/eval)")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    path = write_card(args.model_dir, args.eval_dir)
    log.info("wrote %s", path)
    return path


if __name__ == "__main__":
    main()
