"""Fine-tuning evaluation: (Super)GLUE and MSGS sequence classification on top of a causal LM.

Owns the task table (input fields, number of labels, metric per task), reading BabyLM's
``glue_filtered`` jsonl layout (``{task}.train.jsonl`` / ``{task}.valid.jsonl``), the metrics
(accuracy, binary F1, MCC) and a plain PyTorch fine-tuning loop with early stopping.

It follows the BabyLM 2023 evaluation pipeline (``finetune_classification.py``): a fresh
classification head on the saved causal LM (``AutoModelForSequenceClassification``, the
rightmost non-pad token is pooled), inputs truncated to 128 tokens, the two texts of a pair
passed to the tokenizer as ``(text, text_pair)``, MultiRC as ``"Question: {q} Answer: {a}"``
+ paragraph, WSC as ``'Does "{span2}" refer to "{span1}" in this passage?'`` + text;
AdamW, linear decay to zero over the maximum number of epochs with no warm-up, gradient
clipping at 1.0 (HF Trainer defaults); evaluation on the validation set every ``eval_every``
steps, early stopping after ``patience`` evaluations without an improvement above 0.001,
and the best validation score reported. MNLI-mm trains on ``mnli.train.jsonl`` and
validates on ``mnli-mm.valid.jsonl``, as in the pipeline.

CLI::

    python -m babydistill.finetune --model DIR --task cola --data-dir DIR \\
        --spec '{"lr": 4e-5, "batch_size": 64, "epochs": 3, "patience": 10,
                 "eval_every": 20, "seed": 12}' --out results/x/finetune/cola.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .common import UserError, cli, parse_json_arg, read_json, setup_logging, write_json

log = logging.getLogger("babydistill.finetune")

MAX_LENGTH = 128  # the pipeline's --max_seq_length
EARLY_STOPPING_THRESHOLD = 1e-3  # the pipeline's EarlyStoppingCallback threshold
GRAD_CLIP = 1.0  # HF Trainer's default max_grad_norm
SPEC_KEYS = ("lr", "batch_size", "epochs", "patience", "eval_every", "seed")


# ---------------------------------------------------------------------------------------
# Tasks: how each one turns a jsonl record into (text, text_pair)


def _fields(a: str, b: str | None = None) -> Callable[[dict], tuple[str, str | None]]:
    def build(rec: dict) -> tuple[str, str | None]:
        return rec[a], (rec[b] if b is not None else None)

    build.keys = (a,) if b is None else (a, b)  # type: ignore[attr-defined]
    return build


def _multirc(rec: dict) -> tuple[str, str | None]:
    return f"Question: {rec['question']} Answer: {rec['answer']}", rec["paragraph"]


_multirc.keys = ("question", "answer", "paragraph")  # type: ignore[attr-defined]


def _wsc(rec: dict) -> tuple[str, str | None]:
    return f'Does "{rec["span2_text"]}" refer to "{rec["span1_text"]}" in this passage?', rec["text"]


_wsc.keys = ("span1_text", "span2_text", "text")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Task:
    name: str
    build: Callable[[dict], tuple[str, str | None]]
    num_labels: int
    metric: str  # acc | f1 | mcc
    train_name: str  # file stem of the training data (mnli-mm trains on mnli)
    valid_name: str


GLUE_TASKS: dict[str, tuple[Callable, int, str]] = {
    "cola": (_fields("sentence"), 2, "mcc"),
    "sst2": (_fields("sentence"), 2, "acc"),
    "mrpc": (_fields("sentence1", "sentence2"), 2, "f1"),
    "qqp": (_fields("question1", "question2"), 2, "f1"),
    "mnli": (_fields("premise", "hypothesis"), 3, "acc"),
    "mnli-mm": (_fields("premise", "hypothesis"), 3, "acc"),
    "qnli": (_fields("question", "sentence"), 2, "acc"),
    "rte": (_fields("sentence1", "sentence2"), 2, "acc"),
    "boolq": (_fields("question", "passage"), 2, "acc"),
    "multirc": (_multirc, 2, "acc"),
    "wsc": (_wsc, 2, "acc"),
}
_ALIASES = {"sst-2": "sst2", "mnli_mm": "mnli-mm", "mnli-m": "mnli"}


def resolve_task(name: str) -> Task:
    """The Task for a (case-insensitive) GLUE/SuperGLUE name or an ``msgs_*`` name."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key in GLUE_TASKS:
        build, n, metric = GLUE_TASKS[key]
        train = "mnli" if key == "mnli-mm" else key
        return Task(key, build, n, metric, train, key)
    if key.startswith("msgs_") and len(key) > len("msgs_"):
        return Task(key, _fields("sentence"), 2, "mcc", key, key)
    raise UserError(
        f"--task {name}: unknown task; use one of {', '.join(GLUE_TASKS)} or msgs_<name>"
    )


def _stem_candidates(task: Task, stem: str) -> list[str]:
    """File stems to look for. MSGS files may be named without the ``msgs_`` prefix and
    with a ``_control`` suffix (the 2023 pipeline's ``main_verb_control.train.json``)."""
    if not task.name.startswith("msgs_"):
        return [stem]
    bare = stem[len("msgs_"):]
    out = [stem, bare]
    if not bare.endswith("_control"):
        out += [stem + "_control", bare + "_control"]
    return out


def find_split(task: Task, data_dir: str | os.PathLike, split: str) -> Path | None:
    """Path of ``{stem}.{split}.jsonl`` (or ``.json``) in data_dir, or None."""
    stem = task.train_name if split == "train" else task.valid_name
    for s in _stem_candidates(task, stem):
        for ext in ("jsonl", "json"):
            p = Path(data_dir) / f"{s}.{split}.{ext}"
            if p.is_file():
                return p
    return None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a jsonl file; a bad line is a one-line UserError naming file:line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: not valid JSON ({e.msg}); fix or remove the line") from None
            if not isinstance(rec, dict):
                raise UserError(f"{path}:{i}: expected a JSON object per line")
            out.append(rec)
    return out


def build_examples(task: Task, records: Sequence[dict], path: str | os.PathLike,
                   label_map: dict | None = None) -> tuple[list[tuple[str, str | None]], list[int], dict]:
    """(texts, labels, label_map) for a task's records. Integer labels (and booleans) are
    used as class ids; string labels are mapped by sorted order, as the pipeline does."""
    texts, raw = [], []
    for i, rec in enumerate(records, 1):
        missing = [k for k in (*task.build.keys, "label") if k not in rec]  # type: ignore[attr-defined]
        if missing:
            raise UserError(f"{path}: record {i}: missing key(s) {missing} for task {task.name}")
        texts.append(task.build(rec))
        raw.append(rec["label"])
    if label_map is None:
        strs = sorted({str(v) for v in raw if not isinstance(v, (bool, int))})
        label_map = {s: j for j, s in enumerate(strs)}
    labels = []
    for i, v in enumerate(raw, 1):
        y = int(v) if isinstance(v, (bool, int)) else label_map.get(str(v))
        if y is None or not 0 <= y < task.num_labels:
            raise UserError(
                f"{path}: record {i}: label {v!r} is not one of the {task.num_labels} classes of {task.name}"
            )
        labels.append(y)
    return texts, labels, label_map


# ---------------------------------------------------------------------------------------
# Metrics (the ones BabyLM reports per task)


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    p, y = np.asarray(preds), np.asarray(labels)
    return float((p == y).mean()) if len(y) else 0.0


def f1_binary(preds: Sequence[int], labels: Sequence[int]) -> float:
    """F1 of the positive class (label 1); 0 when there is no true or predicted positive."""
    p, y = np.asarray(preds), np.asarray(labels)
    tp = int(((p == 1) & (y == 1)).sum())
    fp = int(((p == 1) & (y != 1)).sum())
    fn = int(((p != 1) & (y == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def mcc(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Matthews correlation (multiclass form, equal to the usual one for two classes);
    0 when it is undefined (a constant prediction or a constant truth)."""
    p, y = np.asarray(preds, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    k = int(max(p.max(initial=0), y.max(initial=0))) + 1
    c = np.zeros((k, k), dtype=np.float64)
    np.add.at(c, (y, p), 1)
    t, s, n = c.sum(1), c.sum(0), c.sum()
    correct = np.trace(c)
    den = math.sqrt((n * n - (s * s).sum()) * (n * n - (t * t).sum()))
    return float((correct * n - (s * t).sum()) / den) if den > 0 else 0.0


METRICS = {"acc": accuracy, "f1": f1_binary, "mcc": mcc}


# ---------------------------------------------------------------------------------------
# Data plumbing


def encode(tokenizer, texts: Sequence[tuple[str, str | None]], max_length: int) -> list[list[int]]:
    """Token ids per example; pairs go in as (text, text_pair), truncated longest-first."""
    singles = [a for a, b in texts if b is None]
    if len(singles) == len(texts):
        return tokenizer(singles, truncation=True, max_length=max_length)["input_ids"]
    if singles:
        raise UserError("mixed single and pair inputs in one task")  # cannot happen per Task
    a, b = zip(*texts)
    return tokenizer(list(a), list(b), truncation=True, max_length=max_length)["input_ids"]


def collate(ids: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence; returns (input_ids, attention_mask)."""
    n = max(1, max(len(x) for x in ids))
    out = torch.full((len(ids), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), n), dtype=torch.long)
    for i, x in enumerate(ids):
        out[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return out, mask


def subsample(n: int, k: int | None, seed: int) -> list[int]:
    """A deterministic sorted subset of k indices out of n (all of them when k is None)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


def validate_spec(spec: Any) -> dict:
    if not isinstance(spec, dict):
        raise UserError("--spec: expected a JSON object with keys " + ", ".join(SPEC_KEYS))
    missing = [k for k in SPEC_KEYS if k not in spec]
    extra = [k for k in spec if k not in SPEC_KEYS]
    if missing or extra:
        what = "; ".join(f"{k} keys {v}" for k, v in (("missing", missing), ("unknown", extra)) if v)
        raise UserError(f"--spec: {what}; expected exactly {list(SPEC_KEYS)} (eval.finetune.tasks.<task>)")
    for k in ("batch_size", "epochs", "patience", "eval_every"):
        if not isinstance(spec[k], int) or isinstance(spec[k], bool) or spec[k] < 1:
            raise UserError(f"--spec: {k} must be an integer >= 1, got {spec[k]!r}")
    if not isinstance(spec["seed"], int) or isinstance(spec["seed"], bool):
        raise UserError(f"--spec: seed must be an integer, got {spec['seed']!r}")
    if not isinstance(spec["lr"], (int, float)) or isinstance(spec["lr"], bool) or spec["lr"] <= 0:
        raise UserError(f"--spec: lr must be a number > 0, got {spec['lr']!r}")
    return {k: spec[k] for k in SPEC_KEYS}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here; use --device cpu or auto")
    return torch.device(device)


def load_model(model_dir: str | os.PathLike, num_labels: int, device: torch.device):
    """(tokenizer, classifier) from a saved causal-LM directory, with a fresh head."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: no config.json; --model must be a saved HF model directory")
    try:
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load the tokenizer ({str(e).splitlines()[0]})") from None
    if tok.pad_token_id is None:  # fall back on eos so batches can be padded
        tok.pad_token = tok.eos_token
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "score.weight newly initialized" warning is expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=num_labels, pad_token_id=tok.pad_token_id,
            dtype=torch.float32, local_files_only=True,
        )
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load as a sequence classifier ({str(e).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return tok, model.to(device)


@torch.no_grad()
def predict(model, ids: Sequence[list[int]], pad_id: int, device: torch.device,
            batch_size: int = 64) -> list[int]:
    """Argmax class per example; batches are formed by length to save padding."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    preds = [0] * len(ids)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        x, m = collate([ids[i] for i in idx], pad_id)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=x.to(device), attention_mask=m.to(device)).logits
        for i, p in zip(idx, logits.argmax(-1).tolist()):
            preds[i] = p
    model.train()
    return preds


# ---------------------------------------------------------------------------------------
# The fine-tuning run


def finetune(model_dir: str | os.PathLike, task_name: str, data_dir: str | os.PathLike,
             spec: dict, max_train: int | None = None, max_valid: int | None = None,
             device: str = "auto") -> dict:
    """Fine-tune ``model_dir`` on one task; returns the result record (see module doc)."""
    t0 = time.time()
    task = resolve_task(task_name)
    spec = validate_spec(spec)
    base = {"model": Path(model_dir).name, "model_dir": str(model_dir), "task": task.name,
            "metric": task.metric}
    if not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir}: not a directory")
    train_path = find_split(task, data_dir, "train")
    if train_path is None:
        reason = f"no train file in {data_dir}"
        print(f"skip: {task.name}: {reason}", file=sys.stderr)
        return {**base, "skipped": True, "reason": reason, "score": None, "hyperparameters": spec}
    valid_path = find_split(task, data_dir, "valid")
    if valid_path is None:
        raise UserError(f"{Path(data_dir) / (task.valid_name + '.valid.jsonl')}: validation file not found")

    train_texts, train_y, label_map = build_examples(task, read_jsonl(train_path), train_path)
    valid_texts, valid_y, _ = build_examples(task, read_jsonl(valid_path), valid_path, label_map)
    if not train_texts or not valid_texts:
        raise UserError(f"{train_path if not train_texts else valid_path}: no examples")
    keep = subsample(len(train_texts), max_train, spec["seed"])
    train_texts, train_y = [train_texts[i] for i in keep], [train_y[i] for i in keep]
    keep = subsample(len(valid_texts), max_valid, spec["seed"])
    valid_texts, valid_y = [valid_texts[i] for i in keep], [valid_y[i] for i in keep]

    dev = pick_device(device)
    random.seed(spec["seed"])
    np.random.seed(spec["seed"] % 2**32)
    torch.manual_seed(spec["seed"])  # before loading: the head's init depends on it
    tok, model = load_model(model_dir, task.num_labels, dev)
    max_len = min(MAX_LENGTH, getattr(model.config, "max_position_embeddings", None)
                  or getattr(model.config, "n_positions", MAX_LENGTH))
    pad_id = tok.pad_token_id
    train_ids = encode(tok, train_texts, max_len)
    valid_ids = encode(tok, valid_texts, max_len)
    metric_fn = METRICS[task.metric]

    bs, epochs = spec["batch_size"], spec["epochs"]
    steps_per_epoch = math.ceil(len(train_ids) / bs)
    total = steps_per_epoch * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)
    # linear decay to zero over the maximum run, no warm-up (HF Trainer defaults)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total))
    gen = torch.Generator().manual_seed(spec["seed"])
    log.info("%s: %d train / %d valid examples, %d labels, %d steps max, device %s",
             task.name, len(train_ids), len(valid_ids), task.num_labels, total, dev)

    history: list[dict] = []
    best, best_step, bad_evals, stopped_early = -math.inf, 0, 0, False
    loss_sum, loss_n, step = 0.0, 0, 0

    def evaluate() -> bool:
        """Score on valid; True when early stopping says stop."""
        nonlocal best, best_step, bad_evals, loss_sum, loss_n
        score = metric_fn(predict(model, valid_ids, pad_id, dev, max(bs, 64)), valid_y)
        history.append({"step": step, "score": score,
                        "loss": loss_sum / loss_n if loss_n else None})
        loss_sum, loss_n = 0.0, 0
        improved = score > best + EARLY_STOPPING_THRESHOLD
        if score > best:  # the best model is kept on any improvement, as the Trainer does
            best, best_step = score, step
        bad_evals = 0 if improved else bad_evals + 1
        return bad_evals >= spec["patience"]

    model.train()
    bar = tqdm(total=total, desc=f"finetune {task.name}", file=sys.stderr, dynamic_ncols=True)
    for _epoch in range(epochs):
        perm = torch.randperm(len(train_ids), generator=gen).tolist()
        for s in range(0, len(perm), bs):
            idx = perm[s : s + bs]
            x, m = collate([train_ids[i] for i in idx], pad_id)
            y = torch.tensor([train_y[i] for i in idx], device=dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = model(input_ids=x.to(dev), attention_mask=m.to(dev)).logits
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            opt.step()
            sched.step()
            step += 1
            loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", best=f"{best:.3f}" if history else "-")
            if step % spec["eval_every"] == 0 and evaluate():
                stopped_early = True
                break
        if stopped_early:
            break
    if not history or history[-1]["step"] != step:
        evaluate()  # the last steps are scored too, so short runs still get a score
    bar.close()

    return {
        **base,
        "score": best,
        "best_step": best_step,
        "n_train": len(train_ids),
        "n_valid": len(valid_ids),
        "steps": step,
        "stopped_early": stopped_early,
        "history": history,
        "hyperparameters": {
            **spec, "max_length": max_len, "schedule": "linear", "warmup_steps": 0,
            "optimizer": "adamw", "weight_decay": 0.0, "grad_clip": GRAD_CLIP,
            "early_stopping_threshold": EARLY_STOPPING_THRESHOLD, "max_train": max_train,
            "max_valid": max_valid,
        },
        "num_labels": task.num_labels,
        "train_file": str(train_path),
        "valid_file": str(valid_path),
        "device": str(dev),
        "seconds": round(time.time() - t0, 2),
    }


def _read_spec(text: str) -> Any:
    """--spec is inline JSON or the path of a JSON file."""
    return parse_json_arg(text, "--spec") if text.lstrip().startswith("{") else read_json(text)


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m babydistill.finetune", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="saved HF causal-LM directory (with tokenizer)")
    ap.add_argument("--task", required=True, help="cola, sst2, mrpc, qqp, mnli, mnli-mm, qnli, rte, "
                    "boolq, multirc, wsc, or msgs_<name>")
    ap.add_argument("--data-dir", required=True, help="folder with {task}.train.jsonl / {task}.valid.jsonl")
    ap.add_argument("--spec", required=True, help="JSON (inline or file): lr, batch_size, epochs, "
                    "patience, eval_every, seed")
    ap.add_argument("--out", required=True, help="result JSON (written atomically)")
    ap.add_argument("--max-train", type=int, default=None, help="deterministic subsample of N train examples")
    ap.add_argument("--max-valid", type=int, default=None, help="deterministic subsample of N valid examples")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:i]")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if args.threads:
        torch.set_num_threads(args.threads)  # oversubscribed CPUs slow tiny models down a lot
    for flag, v in (("--max-train", args.max_train), ("--max-valid", args.max_valid)):
        if v is not None and v < 1:
            raise UserError(f"{flag}: must be >= 1, got {v}")
    result = finetune(args.model, args.task, args.data_dir, _read_spec(args.spec),
                      args.max_train, args.max_valid, args.device)
    write_json(args.out, result)
    if not result.get("skipped"):
        log.info("%s: best %s %.4f at step %d of %d -> %s", result["task"], result["metric"],
                 result["score"], result["best_step"], result["steps"], args.out)
    return result


if __name__ == "__main__":
    main()
