"""BLiMP zero-shot evaluation of a saved model directory, through lm-eval 0.4.13 offline.

Owns: turning a suite directory (one ``<paradigm>.jsonl`` per paradigm: full BLiMP,
BabyLM's blimp_filtered, the BLiMP supplement, the demo suite) into local lm-eval task
YAMLs (one task per paradigm, one group per suite; written by :mod:`babydistill.eval.lm_eval_tasks`,
which the workflow keeps per run in ``results/<run>/lm_eval_tasks/<suite>/`` and passes
here with ``--tasks-dir``), running ``lm_eval.simple_evaluate``
on the ``hf`` model with no network, and writing the summary JSON and per-pair TSV.
``--backend fast`` scores the same pairs with :mod:`babydistill.eval.scorer` instead and
writes the same formats. :func:`independent_loglik` is a plain-transformers reference,
one sentence at a time, used to check both backends.

``--convention`` names the official pipeline whose scoring to reproduce
(:data:`babydistill.eval.scorer.CONVENTIONS`: babylm-2023, babylm-2024, babylm-2025;
default babylm-2024). The fast backend scores all three; lm-eval the two it can express
(babylm-2024 as it is, babylm-2023 with ``prefix_token_id`` = EOS, sentence suites only)
and refuses babylm-2025 in one line. ``--temperatures T ...`` (babylm-2025, fast): the
2025 pipeline's temperature scan. The summary JSON ends with ``ties`` (also per paradigm),
``temperature``/``temperature_scan`` after a scan, ``convention`` and ``precision``; the pairs
TSV has a ``convention`` column. ``--precision bf16`` (fast backend) runs the forward under bf16
autocast, faster where the hardware has bf16; the default fp32 reproduces the official pipelines.
A masked LM (:func:`babydistill.eval.scorer.is_masked_lm` of its config) is loaded with its
masked-LM head and scored by pseudo-log-likelihood as each convention's pipeline computes it
(:mod:`babydistill.eval.pll`), fast backend only: lm-eval has no masked-LM scorer.

Safety: no code from a model folder runs unless ``--trust-remote-code`` is given (the
workflow never gives it): the logit-averaged ensemble is loaded with babydistill's own
classes (:func:`babydistill.distill.ensemble.register_auto_classes`), whatever its folder holds.
Before scoring, the model folder's config and tokenizer are loaded (a missing
tokenizer.json is one line) and a suite holding a sentence longer than the model's
context is refused naming the paradigm and pair (:func:`babydistill.eval.scorer.check_context`),
the same for both backends.

    python -m babydistill.eval.blimp --model DIR --suite-dir DIR --suite NAME \
        --out results.json --pairs-out pairs.tsv [--backend lmeval|fast] [--batch-size 64] \
        [--convention babylm-2023|babylm-2024|babylm-2025] [--temperatures T ...] \
        [--limit N] [--work-dir DIR] [--tasks-dir DIR] [--trust-remote-code]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

# Everything here is local; never let a library reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from babydistill.eval import lm_eval_tasks
from babydistill.common import (UserError, atomic_write_text, cli, setup_logging, temp_beside,
                                write_json)
from babydistill.models.build import check_weights
from babydistill.eval.pll import check_masked_context, masked_context
from babydistill.eval.scorer import (
    DEFAULT_CONVENTION,
    CONVENTIONS,
    PRECISIONS,
    SUITE_FORMATS,
    Pair,
    Paradigm,
    check_context,
    check_precision,
    check_temperatures,
    get_convention,
    is_masked_lm,
    load_suite,
    max_length,
    score_suite,
    summarize,
)

log = logging.getLogger("babydistill.eval.blimp")

TSV_HEADER = ("paradigm", "pair_id", "ll_good", "ll_bad", "correct")  # then "convention"


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def require_model_dir(model_dir: str | Path) -> Path:
    d = Path(model_dir)
    if not (d / "config.json").is_file():
        raise UserError(f"{d}: not a saved model directory (no config.json); give --model a save_pretrained folder")
    return d


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def _reason(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def load_config_and_tokenizer(model_dir: str | Path, trust_remote_code: bool = False):
    """(config, tokenizer) of a saved model directory; every failure is a one-line UserError.

    Without ``trust_remote_code`` no code from the folder is imported: a config whose
    model type only its own code (auto_map) defines is refused; our ensemble is loaded
    with babydistill's classes.
    """
    from transformers import AutoConfig, AutoTokenizer

    from babydistill.models.ensemble import register_auto_classes

    register_auto_classes()
    d = require_model_dir(model_dir)
    try:
        cfg = AutoConfig.from_pretrained(d, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as e:
        if "trust_remote_code" in str(e):
            raise UserError(f"{d}: its config.json names custom code (auto_map) that "
                            "babydistill does not run; give a standard model folder (or, for "
                            "a folder you trust, --trust-remote-code)") from None
        raise UserError(f"{d}/config.json: cannot load the model config ({_reason(e)})") from None
    if not any((d / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(f"{d}: no tokenizer files (tokenizer.json); save the tokenizer into the "
                        "model folder (tokenizer.save_pretrained(DIR)) or re-run the training")
    try:
        tok = AutoTokenizer.from_pretrained(d, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{d}: cannot load the tokenizer ({_reason(e)}); the folder needs the "
                        "tokenizer files save_pretrained writes (tokenizer.json, "
                        "tokenizer_config.json)") from None
    return cfg, tok


def load_model(model_dir: str | Path, trust_remote_code: bool = False):
    """(model, tokenizer) from a saved HF directory, in eval mode on the best device: a
    masked LM (:func:`~babydistill.eval.scorer.is_masked_lm`) with its masked-LM head."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    cfg, tok = load_config_and_tokenizer(model_dir, trust_remote_code)
    check_weights(model_dir, getattr(cfg, "vocab_size", None), len(tok))
    auto = AutoModelForMaskedLM if is_masked_lm(cfg) else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(Path(model_dir), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"{model_dir}: cannot load the model weights ({_reason(e)})") from None
    return model.to(_device()).eval(), tok


class _ConfigOnly:
    """Stands in for a model where only its config is needed (context length)."""

    def __init__(self, config):
        self.config = config


def task_name(suite: str, paradigm: str | None = None) -> str:
    """lm-eval task name of a paradigm, or the group name of the suite (``paradigm=None``)."""
    return lm_eval_tasks.task_name(suite, paradigm)


def write_tasks(suite: str, paradigms: Sequence[Paradigm], work_dir: str | Path) -> tuple[str, dict[str, str]]:
    """Write one lm-eval task YAML per paradigm and a group YAML into ``work_dir/tasks``.

    Returns (group name, {task name: paradigm name}). Each task reads its local jsonl
    (absolute path) with the ``json`` builder and a datasets cache inside ``work_dir``.
    The workflow keeps its own copy per run instead (:mod:`babydistill.eval.lm_eval_tasks`).
    """
    cache = str((Path(work_dir) / "hf_home" / "datasets").resolve())
    return lm_eval_tasks.write_tasks(suite, paradigms, Path(work_dir) / "tasks", cache_dir=cache)


@contextlib.contextmanager
def offline_env(work_dir: Path):
    """No hub access and HF caches inside ``work_dir`` for the duration (restored after).

    Libraries imported for the first time inside read these at import; the task YAMLs
    also pin the datasets cache_dir for processes that imported datasets earlier.
    """
    home = (Path(work_dir) / "hf_home").resolve()
    new = dict(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(home), HF_DATASETS_CACHE=str(home / "datasets"))
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    # datasets reads HF_DATASETS_CACHE once, at import: pin it for kept task YAMLs, which
    # name no cache_dir, when this process imported datasets before.
    ds_config = sys.modules.get("datasets.config")
    old_ds_cache = getattr(ds_config, "HF_DATASETS_CACHE", None)
    if ds_config is not None:
        ds_config.HF_DATASETS_CACHE = Path(new["HF_DATASETS_CACHE"])
    try:
        yield
    finally:
        if ds_config is not None:
            ds_config.HF_DATASETS_CACHE = old_ds_cache
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_lmeval(model_dir: str | Path, suite: str, paradigms: Sequence[Paradigm], work_dir: str | Path,
               batch_size: int = 64, trust_remote_code: bool = False,
               tasks_dir: str | Path | None = None,
               model_args: dict | None = None) -> tuple[list[float], list[float]]:
    """Per-pair (ll_good, ll_bad) from lm-eval's ``hf`` model, in the order of ``paradigms``.

    Each paradigm's pairs must be the first records of its file (as :func:`load_suite`
    gives them, with or without a limit); lm-eval gets the longest count as its limit.
    ``tasks_dir``: the run's kept task YAMLs (``python -m babydistill.eval.lm_eval_tasks``) to
    score with; without it they are written into ``work_dir/tasks``. Either way every
    document lm-eval scores is checked against the suite's pairs. ``model_args``: more
    arguments of lm-eval's ``hf`` model (a convention's ``prefix_token_id``).
    """
    if importlib.util.find_spec("accelerate") is None:
        raise UserError("lm-eval's hf model needs the 'accelerate' package (lm_eval[hf]); "
                        "install it or use --backend fast")
    from babydistill.models.ensemble import register_auto_classes

    register_auto_classes()  # lm-eval's from_pretrained then loads ensembles with our code
    work_dir = Path(work_dir)
    if tasks_dir is None:
        group, names = write_tasks(suite, paradigms, work_dir)
        tasks_dir = work_dir / "tasks"
    else:
        group, names = task_name(suite), {task_name(suite, par.name): par.name for par in paradigms}
        if not (Path(tasks_dir) / f"_{group}.yaml").is_file():
            raise UserError(f"{tasks_dir}: no lm-eval group {group} here; write it with "
                            f"python -m babydistill.eval.lm_eval_tasks --suite {suite} --out {tasks_dir}")
    with offline_env(work_dir):
        import lm_eval
        from lm_eval.tasks import TaskManager

        tm = TaskManager(include_path=str(tasks_dir), include_defaults=False)
        res = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(Path(model_dir).resolve()), "trust_remote_code": trust_remote_code,
                        **(model_args or {})},
            tasks=[group], task_manager=tm, batch_size=batch_size, device=_device(),
            limit=max(len(par.pairs) for par in paradigms), log_samples=True,
        )
    by_paradigm = {par.name: par for par in paradigms}
    lls: dict[str, list[tuple[float, float]]] = {}
    if set(res["samples"]) != set(names):
        raise UserError(f"{tasks_dir}: its tasks {sorted(res['samples'])} are not the suite's paradigms "
                        f"{sorted(names)}; rewrite them with python -m babydistill.eval.lm_eval_tasks")
    for name, samples in res["samples"].items():
        par = by_paradigm[names[name]]
        samples = sorted(samples, key=lambda s: s["doc_id"])
        if len(samples) != len(par.pairs):
            raise RuntimeError(f"lm-eval returned {len(samples)} docs for {par.name}, expected {len(par.pairs)}")
        good_key, bad_key, _ = SUITE_FORMATS[par.kind]
        for s, pair in zip(samples, par.pairs):
            if s["doc"][good_key] != pair.good or s["doc"][bad_key] != pair.bad:
                raise RuntimeError(f"lm-eval doc {s['doc_id']} of {par.name} does not match the jsonl")
        lls[par.name] = [(s["resps"][0][0][0], s["resps"][1][0][0]) for s in samples]
    flat = [ll for par in paradigms for ll in lls[par.name]]
    return [g for g, _ in flat], [b for _, b in flat]


def independent_loglik(model_dir: str | Path, pairs: Sequence[Pair | tuple[str, str]],
                       trust_remote_code: bool = False) -> tuple[list[float], list[float]]:
    """Reference log-likelihoods with plain transformers: one unpadded sentence per forward.

    Context as lm-eval builds it: the BOS token, then ``" " + sentence``; the score is
    the sum of the sentence tokens' log-probs.
    """
    model, tok = load_model(model_dir, trust_remote_code)
    device = next(model.parameters()).device
    pairs = [p if isinstance(p, Pair) else Pair(str(i), *p) for i, p in enumerate(pairs)]
    sentences = [s for p in pairs for s in (p.good, p.bad)]
    out = []
    with torch.no_grad():  # written out here rather than shared with the scorer: it is the check
        for s in tqdm(sentences, desc="reference", unit="sent", disable=len(sentences) < 1000):
            cont = tok.encode(" " + s, add_special_tokens=False)
            ids = torch.tensor([[tok.bos_token_id] + cont], device=device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            out.append(logp[torch.arange(len(cont)), ids[0, 1:]].sum().item())
    return out[0::2], out[1::2]


def write_pairs_tsv(path: str | Path, rows, convention: str | None = None) -> None:
    """One line per pair; with ``convention``, a last column naming it on every line."""
    extra = ("\t" + convention) if convention else ""
    lines = ["\t".join(TSV_HEADER) + ("\tconvention" if convention else "")]
    lines += [f"{p}\t{i}\t{g:.6f}\t{b:.6f}\t{c}{extra}" for p, i, g, b, c in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def lmeval_model_args(convention: str, tokenizer, paradigms: Sequence[Paradigm],
                      encoded: list[tuple[list[int], list[int]]]) -> dict:
    """lm-eval ``hf`` model arguments that make it score as ``convention``; a convention
    (or suite) it cannot express is one line naming the flag and what to use instead."""
    conv = get_convention(convention)
    if conv.lmeval is None:
        raise UserError(f"--convention {conv.name} --backend lmeval: lm-eval always scores a sentence "
                        "after a prefix token and this convention has none (its first token is never "
                        "scored); use --backend fast")
    if not conv.lmeval_contexts and any(par.kind != "blimp" for par in paradigms):
        raise UserError(f"--convention {conv.name} --backend lmeval: lm-eval encodes a context and its "
                        f"target together, {conv.name} apart; score this suite with --backend fast")
    if conv.lmeval == "default":
        return {}
    prefix = tokenizer.eos_token_id  # conv.lmeval == "eos"
    if any(cont[:1] == [prefix] for _, cont in encoded):
        # lm-eval would drop the prefix for such a sentence; the 2023 code keeps it
        raise UserError(f"--convention {conv.name} --backend lmeval: a sentence starts with the EOS "
                        "token, which lm-eval then drops from its context; use --backend fast")
    return {"prefix_token_id": prefix}


def lmeval_scratch() -> str:
    """A scratch folder for lm-eval in the system temp directory, named
    ``.blimp_lmeval.<host>.<pid>.*.tmp``; those that killed scorings of this host left are
    removed first (:func:`babydistill.common.temp_beside`)."""
    return str(temp_beside(Path(tempfile.gettempdir()) / "blimp_lmeval"))


def _checked_encodings(model_dir, backend: str, cfg, tok, paradigms: Sequence[Paradigm], conv):
    """The suite's encodings for this model, after refusing what cannot be scored: a masked
    LM under lm-eval (no masked-LM scorer there) and a sentence longer than the context
    (one semantics for both backends)."""
    if is_masked_lm(cfg):
        if backend == "lmeval":
            kind = (cfg.architectures or [cfg.model_type])[0]
            raise UserError(f"--backend lmeval: {model_dir} is a masked LM ({kind}) and lm-eval 0.4.13's "
                            "hf model has no masked-LM scorer; use --backend fast")
        return check_masked_context(tok, paradigms, masked_context(_ConfigOnly(cfg), tok), str(model_dir),
                                    convention=conv.name)
    return check_context(tok, paradigms, max_length(_ConfigOnly(cfg), tok), str(model_dir), convention=conv)


def evaluate(model_dir: str | Path, suite_dir: str | Path, suite: str, backend: str = "lmeval",
             batch_size: int = 64, limit: int | None = None, work_dir: str | Path | None = None,
             trust_remote_code: bool = False, tasks_dir: str | Path | None = None,
             convention: str = DEFAULT_CONVENTION, temperatures: Sequence[float] | None = None,
             precision: str = "fp32"):
    """Score a suite with either backend under ``convention``; returns (result dict for the
    JSON, per-pair rows). ``precision`` bf16 is the fast backend's (the default fp32 is the
    official pipelines')."""
    conv = get_convention(convention)
    check_precision(precision)  # before the model loads
    if backend == "lmeval" and precision != "fp32":
        raise UserError(f"--precision {precision} --backend lmeval: lm-eval scores in fp32 here; use --backend fast")
    temperatures = check_temperatures(temperatures, conv)
    if backend not in ("fast", "lmeval"):
        raise UserError(f"--backend {backend}: use lmeval or fast")
    if backend == "lmeval" and temperatures is not None:
        raise UserError("--temperatures --backend lmeval: lm-eval has no temperature scan; use --backend fast")
    paradigms = load_suite(suite_dir, limit)
    cfg, tok = load_config_and_tokenizer(model_dir, trust_remote_code)
    check_weights(model_dir, getattr(cfg, "vocab_size", None), len(tok))  # before either backend
    encoded = _checked_encodings(model_dir, backend, cfg, tok, paradigms, conv)
    t0 = time.time()
    if backend == "fast":
        model, tok = load_model(model_dir, trust_remote_code)
        summary, rows = score_suite(model, tok, paradigms, batch_size, progress=True, encoded=encoded,
                                    convention=conv, temperatures=temperatures, precision=precision)
    else:
        model_args = lmeval_model_args(conv.name, tok, paradigms, encoded)
        tmp = None if work_dir else lmeval_scratch()
        try:
            good, bad = run_lmeval(model_dir, suite, paradigms, work_dir or tmp, batch_size, trust_remote_code,
                                   tasks_dir, model_args)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        summary, rows = summarize(paradigms, good, bad, conv)
    log.info("%s on %s (%s, %s): %d pairs, macro acc %.4f, %d ties, %.1f s", model_dir, suite, backend,
             conv.name, summary["n_pairs"], summary["accuracy"], summary["ties"], time.time() - t0)
    # the model's name is its directory's (the workflow names directories after models)
    result = {"model": Path(model_dir).name, "model_dir": str(model_dir), "suite": suite,
              "backend": backend, "precision": precision, **summary, "convention": conv.name}
    return result, rows


def silence_progress_bars() -> None:
    """In a log file every tqdm redraw is text (lm-eval's requests, datasets' splits, the
    weights). lm-eval passes ``disable=`` itself, so no setting reaches its bars: every tqdm
    this process makes is switched off instead; the stage logs its own result lines."""
    import tqdm

    from babydistill.common import quiet_library_bars

    quiet_library_bars()
    init = tqdm.tqdm.__init__

    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    tqdm.tqdm.__init__ = quiet_init


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m babydistill.eval.blimp", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="saved HF model directory")
    ap.add_argument("--suite-dir", required=True, help="folder of <paradigm>.jsonl files")
    ap.add_argument("--suite", required=True, help="suite name (blimp, blimp_filtered, supplement, demo)")
    ap.add_argument("--out", required=True, help="summary JSON")
    ap.add_argument("--pairs-out", required=True, help="per-pair TSV")
    ap.add_argument("--backend", choices=["lmeval", "fast"], default="lmeval")
    ap.add_argument("--convention", default=DEFAULT_CONVENTION, metavar="NAME",
                    help=f"the official pipeline's scoring to reproduce: {', '.join(CONVENTIONS)} "
                         f"(default {DEFAULT_CONVENTION})")
    ap.add_argument("--temperatures", type=float, nargs="+", action="extend", default=None, metavar="T",
                    help="babylm-2025 with --backend fast: score at each temperature and report "
                         "the best, as the 2025 pipeline's scan does")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="fast backend: fp32 (default, the official pipelines' numbers) or bf16 autocast")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="first N pairs per paradigm")
    ap.add_argument("--work-dir", default=None, help="lm-eval task YAMLs and HF caches (default: a temp dir)")
    ap.add_argument("--trust-remote-code", action="store_true",
                    help="run the code a model folder's auto_map names (never needed for "
                         "babydistill's own models and ensembles; only for folders you trust)")
    ap.add_argument("--tasks-dir", default=None,
                    help="the run's kept lm-eval task YAMLs (python -m babydistill.eval.lm_eval_tasks); "
                         "default: written into --work-dir")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if not sys.stderr.isatty():
        silence_progress_bars()
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise UserError("--batch-size and --limit must be positive")
    result, rows = evaluate(args.model, args.suite_dir, args.suite, args.backend, args.batch_size,
                            args.limit, args.work_dir, args.trust_remote_code, args.tasks_dir,
                            args.convention, args.temperatures, args.precision)
    write_pairs_tsv(args.pairs_out, rows, result["convention"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
