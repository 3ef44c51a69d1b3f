"""The official BabyLM 2025 results layout for one model and its revisions (rule export).

``python -m babydistill.export`` runs this module (an entry above the layers, the issue's
name for it).

Owns: turning this project's evaluation outputs -- the per-checkpoint fast evaluation
(:mod:`babydistill.eval.revisions`) and the final model's full zero-shot scores (the
``eval_blimp`` pairs TSVs) -- into the folder the official tools read, and the collated
submission file, as babylm/evaluation-pipeline-2025 defines them (read at bf55c113;
``collate_preds.py`` is the same at 591121d):

* ``<results_dir>/<model>/<revision>/zero_shot/<backend>/<task>/<dataset>/predictions.json``
  (``sentence_zero_shot/run.py`` ``main``: ``output_dir / model_name / revision_name /
  "zero_shot" / backend / task / data_path.stem``; revision ``main`` when none is given).
  The task is ``blimp`` for BLiMP and the supplement, ``ewok`` for EWoK; the dataset is
  ``blimp_fast`` / ``supplement_fast`` / ``ewok_fast`` for the fast evaluation of every
  revision (``eval_zero_shot_fast.sh``) and ``blimp_filtered`` / ``supplement_filtered`` /
  ``ewok_filtered`` for the full evaluation of ``main`` (``eval_zero_shot.sh``). The model's
  folder is named as ``Path(model_path_or_name).stem`` names it there.
* ``predictions.json``: ``{UID: {"predictions": [{"id": "<UID>_<i>", "pred": completion}]}}``,
  a UID's items in the order of its file (``compute_results.py`` ``rank_and_evaluate`` and
  ``compute_causal_results``; the data loader does not shuffle), ``pred`` the chosen
  completion: the whole sentence for BLiMP (``read_files.py`` ``decode_blimp``), ``" " +
  Target`` for EWoK (``decode_ewok``), the good one on a tie (``torch.max`` takes the
  first). ``collate_preds.py`` opens ``<fast_eval_dir>/<dataset>/<UID>.jsonl`` for each UID
  and zips its lines with the predictions (``_calculate_target_results``: right when
  ``pred.strip()`` equals ``sentence_good`` / ``Target1``), so the UID here is the paradigm's
  file stem (the official BLiMP files carry the same name in ``UID``).
* ``<results_dir>/<model>/all_full_preds_and_fast_scores_<backend>.json`` (``collate_preds``):
  the full predictions of ``main`` under ``blimp``, ``blimp_supplement``, ``ewok``, and
  ``fast_eval_results``: per task a list, one ``{UID: accuracy (0-1)}`` per revision, in
  revision order (collate_preds' ``get_fast_eval_metrics`` over ``STRICT_SMALL_FAST_REVISIONS``
  or ``OTHER_FAST_REVISIONS``).

The backend folder is the official backend the model is scored under: ``causal`` for a
causal LM, ``mlm`` for a masked LM (an encoder, ``arch: roberta``: ``sentence_zero_shot/run.py``
loads it with ``AutoModelForMaskedLM`` and ``dataset.py`` masks with
``tokenizer.mask_token_id``, so its folder's tokenizer must name the mask token; its fast
evaluation is this project's ``babylm-2025`` convention, the ``mlm`` backend's scoring).
``--backend auto`` (the default) reads it from the evaluated folder's config.json (the
revisions JSON's ``model_dir``); an explicit backend that contradicts the folder is refused.
A masked LM's ``export.json`` also names its ``auto_class`` and ``mask_token``.

Only what this project evaluates is written; ``export.json`` beside it says what the
official collation would still ask for: the revisions of the track's schedule not
exported, the files it checks (``_check_validity_of_dir``) that are missing (entity
tracking, WUG, COMPS, reading, AoA, the GLUE fine-tuning: not evaluated here), and every
UID whose fast item count is not the official one (``FAST_SIZES``; ``_check_size``).

    python -m babydistill.export --revisions eval/revisions/M.json --suite NAME=DIR ... \\
        --dataset NAME=blimp|supplement|ewok ... [--full NAME=PAIRS_TSV ...] \\
        [--full-limit N] [--track strict-small|strict] [--backend auto|causal|mlm] --out DIR
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from types import SimpleNamespace

from babydistill.common import UserError, atomic_path, cli, read_json, setup_logging, write_json
from babydistill.config.challenge import FAST_SIZES, revision_name, schedule
from babydistill.eval.scorer import is_masked_lm, load_suite

log = logging.getLogger("babydistill.export")

# dataset -> (task folder, fast dataset folder, full dataset folder, key in the collated file)
DATASETS = {"blimp": ("blimp", "blimp_fast", "blimp_filtered", "blimp"),
            "supplement": ("blimp", "supplement_fast", "supplement_filtered", "blimp_supplement"),
            "ewok": ("ewok", "ewok_fast", "ewok_filtered", "ewok")}
# what _check_validity_of_dir looks for under <revision>/zero_shot/<backend>/ (fast: every
# revision of the track; full: main, plus main/finetune/<task>/predictions.json)
FAST_FILES = ("blimp/blimp_fast", "blimp/supplement_fast", "ewok/ewok_fast",
              "entity_tracking/entity_tracking_fast", "wug_adj/wug_adj_nominalization",
              "wug_past/wug_past_tense", "reading")
FULL_FILES = ("blimp/blimp_filtered", "blimp/supplement_filtered", "ewok/ewok_filtered",
              "entity_tracking/entity_tracking", "wug_adj/wug_adj_nominalization",
              "wug_past/wug_past_tense", "comps/comps", "reading")
GLUE = ("boolq", "mnli", "mrpc", "multirc", "qqp", "rte", "wsc")
TRACKS = {"strict-small": "strict-small-2026", "strict": "strict-2026"}
MAIN = "main"
PROG = "python -m babydistill.report.export"  # the babydistill.export entry sets its own


BACKENDS = ("auto", "causal", "mlm")


def _model_config(model_dir: Path) -> dict | None:
    """The folder's config.json, None when it has none (a bad one is one line)."""
    if not (model_dir / "config.json").is_file():
        return None
    cfg = read_json(model_dir / "config.json")
    if not isinstance(cfg, dict):
        raise UserError(f"{model_dir / 'config.json'}: not a JSON object; save the model again")
    return cfg


def resolve_backend(backend: str, model_dir: str | Path | None) -> tuple[str, dict]:
    """(the official backend, the manifest's extra keys) for the evaluated model folder: ``mlm``
    for a masked LM, whose tokenizer must have a mask token, else ``causal``. ``auto`` on a
    folder that is gone is ``causal`` (what every export wrote before encoders), with a warning."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend}: use one of {', '.join(BACKENDS)}")
    d = Path(model_dir) if model_dir else None
    cfg = _model_config(d) if d is not None else None
    if cfg is None:
        if backend == "auto":
            log.warning("%s: no config.json to tell causal from masked; exporting as causal", d)
            return "causal", {}
        return backend, {}
    masked = is_masked_lm(SimpleNamespace(**cfg))  # as the scorer told it when it scored
    found = "mlm" if masked else "causal"
    if backend not in ("auto", found):
        raise UserError(f"--backend {backend}: {d} is a {'masked' if masked else 'causal'} LM "
                        f"({', '.join(cfg.get('architectures') or ['?'])}); use --backend {found} or auto")
    if not masked:
        return found, {}
    return found, {"auto_class": "AutoModelForMaskedLM", "mask_token": _mask_token(d)}


def _mask_token(model_dir: Path) -> dict:
    """The folder's mask token as the official ``mlm`` backend reads it (``AutoTokenizer``)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load the tokenizer ({str(e).splitlines()[0]})") from None
    if tok.mask_token_id is None:
        raise UserError(f"{model_dir}: a masked LM whose tokenizer has no mask token, which the official "
                        "mlm backend masks with; copy the tokenizer in again "
                        "(babydistill.data.tokenizer.copy_for_model adds <mask>)")
    return {"token": tok.mask_token, "id": tok.mask_token_id}


def completion(pair, kind: str, good: bool) -> str:
    """The official ``pred`` of a pair: the chosen sentence, EWoK's with its leading space."""
    text = pair.good if good else pair.bad
    return " " + text if kind == "ewok" else text


def predictions(paradigms, correct: dict[str, str]) -> dict:
    """``{UID: {"predictions": [...]}}`` from each paradigm's decisions (``"0110..."``)."""
    out = {}
    for par in paradigms:
        flags = correct.get(par.name)
        if flags is None or len(flags) != len(par.pairs):
            raise UserError(f"{par.path}: {len(par.pairs)} pairs, but the scores hold "
                            f"{len(flags or '')} for paradigm {par.name}; re-run the evaluation")
        out[par.name] = {"predictions": [
            {"id": f"{par.name}_{i}", "pred": completion(p, par.kind, f == "1")}
            for i, (p, f) in enumerate(zip(par.pairs, flags))]}
    return out


def accuracies(preds: dict, paradigms) -> dict[str, float]:
    """``{UID: correct / total}`` as collate_preds scores a ``predictions.json``."""
    by_name = {p.name: p for p in paradigms}
    out = {}
    for uid, entry in preds.items():
        par = by_name[uid]
        truth = [(" " + p.good if par.kind == "ewok" else p.good).strip() for p in par.pairs]
        right = sum(e["pred"].strip() == t for e, t in zip(entry["predictions"], truth))
        out[uid] = right / len(entry["predictions"])
    return out


def read_pairs_tsv(path: str | Path) -> dict[str, str]:
    """``{paradigm: "0110..."}`` of an eval_blimp pairs TSV, rows in file order."""
    out: dict[str, list[str]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                out.setdefault(row["paradigm"], []).append(row["correct"])
    except (OSError, KeyError) as e:
        raise UserError(f"{path}: not an eval_blimp pairs TSV ({e})") from None
    return {p: "".join(c) for p, c in out.items()}


def _size_problems(revision: str, dataset: str, preds: dict) -> list[str]:
    want = FAST_SIZES[dataset]
    return [f"{revision} {DATASETS[dataset][1]}/{uid}: {len(e['predictions'])} items, the "
            f"official collation asserts {want}" for uid, e in preds.items()
            if len(e["predictions"]) != want]


def _collation_gaps(root: Path, revisions: list[str], track: str, backend: str) -> dict:
    """What collate_preds --fast --track TRACK would still miss under ``root``."""
    official = [revision_name(w) for w in schedule(TRACKS[track])]
    files = [f"{MAIN}/finetune/{t}/predictions.json" for t in GLUE]
    files += [f"{MAIN}/zero_shot/{backend}/{f}/predictions.json" for f in FULL_FILES]
    files.append(f"{MAIN}/zero_shot/{backend}/AoA_word/surprisal.json")
    files += [f"{r}/zero_shot/{backend}/{f}/predictions.json" for r in official for f in FAST_FILES]
    return {"official_revisions": official,
            "missing_revisions": [r for r in official if r not in revisions],
            "missing_files": [f for f in files if not (root / f).is_file()]}


def export(revisions_json: dict, suites: dict[str, str], datasets: dict[str, str], out: Path,
           full: dict[str, str] | None = None, full_limit: int | None = None,
           track: str = "strict-small", backend: str = "auto") -> dict:
    """Write the layout into ``out`` (the model's folder of a results directory, written
    whole, atomically) and return its manifest (``export.json``). ``backend``: ``causal``,
    ``mlm`` or ``auto`` (:func:`resolve_backend` on the revisions' ``model_dir``)."""
    full = full or {}
    backend, masked_keys = resolve_backend(backend, revisions_json.get("model_dir"))
    names = list(revisions_json["suites"])
    for name in names + list(full):
        if name not in suites or name not in datasets:
            raise UserError(f"--suite/--dataset: give {name}=... for suite {name}")
    fast_suites = {n: load_suite(suites[n], revisions_json["suites"][n]["limit"]) for n in names}
    full_suites = {n: load_suite(suites[n], full_limit) for n in full}
    written, problems, collated = [], [], {"fast_eval_results": {}}
    with atomic_path(out) as tmp:
        for rev in revisions_json["revisions"]:
            for n in names:
                task, fast_dir, _, key = DATASETS[datasets[n]]
                preds = predictions(fast_suites[n], rev["suites"][n]["correct"])
                rel = f"{rev['revision']}/zero_shot/{backend}/{task}/{fast_dir}/predictions.json"
                write_json(tmp / rel, preds)
                written.append(rel)
                problems += _size_problems(rev["revision"], datasets[n], preds)
                if rev["revision"] != MAIN:
                    collated["fast_eval_results"].setdefault(key, []).append(
                        accuracies(preds, fast_suites[n]))
        for n, tsv in full.items():
            task, _, full_dir, key = DATASETS[datasets[n]]
            preds = predictions(full_suites[n], read_pairs_tsv(tsv))
            rel = f"{MAIN}/zero_shot/{backend}/{task}/{full_dir}/predictions.json"
            write_json(tmp / rel, preds)
            written.append(rel)
            collated[key] = preds
        write_json(tmp / f"all_full_preds_and_fast_scores_{backend}.json", collated)
        manifest = {"model": revisions_json["model"], "backend": backend, "track": track,
                    "convention": revisions_json.get("convention"),
                    "revisions": [r["revision"] for r in revisions_json["revisions"]],
                    "fast_eval_revisions": [r["revision"] for r in revisions_json["revisions"]
                                            if r["revision"] != MAIN],
                    "written": written, "size_mismatches": problems,
                    **_collation_gaps(tmp, [r["revision"] for r in revisions_json["revisions"]],
                                      track, backend), **masked_keys}
        write_json(tmp / "export.json", manifest)
    return manifest


def _named(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UserError(f"{flag} {item}: give NAME=VALUE")
        out[name] = value
    return out


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--revisions", required=True, help="the model's eval_revisions JSON")
    ap.add_argument("--suite", nargs="+", required=True, metavar="NAME=DIR", help="each suite's folder")
    ap.add_argument("--dataset", nargs="+", required=True, metavar="NAME=DATASET",
                    help=f"the official dataset each suite stands for: {', '.join(DATASETS)}")
    ap.add_argument("--full", nargs="+", default=[], metavar="NAME=TSV",
                    help="the final model's eval_blimp pairs TSV per suite (the full evaluation)")
    ap.add_argument("--full-limit", type=int, default=None, help="eval.blimp.limit of those TSVs")
    ap.add_argument("--track", choices=sorted(TRACKS), default="strict-small")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="the official backend folder: causal, mlm (a masked LM), or auto (from the "
                    "model folder's config.json)")
    ap.add_argument("--out", required=True,
                    help="RESULTS_DIR/<model>: the model's folder of the official results directory")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    datasets = _named(args.dataset, "--dataset")
    if bad := [d for d in datasets.values() if d not in DATASETS]:
        raise UserError(f"--dataset ...={bad[0]}: use one of {', '.join(DATASETS)}")
    res = read_json(args.revisions)
    if not isinstance(res, dict) or not isinstance(res.get("revisions"), list):
        raise UserError(f"{args.revisions}: not an eval_revisions result; write it with "
                        "python -m babydistill.eval.revisions")
    out = Path(args.out)
    if out.name != Path(res["model"]).stem:
        log.warning("%s: the official tools look for results/%s (Path(model).stem)", out,
                    Path(res["model"]).stem)
    manifest = export(res, _named(args.suite, "--suite"), datasets, out,
                      _named(args.full, "--full"), args.full_limit, args.track, args.backend)
    log.info("%s: %d files, %d official revisions missing, %d files the collation checks missing",
             out, len(manifest["written"]), len(manifest["missing_revisions"]),
             len(manifest["missing_files"]))
    return manifest


if __name__ == "__main__":
    main()
