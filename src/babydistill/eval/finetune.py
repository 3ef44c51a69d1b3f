"""Fine-tuning evaluation: (Super)GLUE and MSGS sequence classification on top of a causal or
masked LM.

Owns the task table (input fields, number of labels, metric per task), reading BabyLM's
``glue_filtered`` jsonl layout (``{task}.train.jsonl`` / ``{task}.valid.jsonl``) and the run
itself, built on the stack the BabyLM evaluation pipelines use: data through ``datasets``
(``load_dataset("json")`` on the local files, ``map`` with the tokenizer), training on
``transformers.Trainer`` with ``EarlyStoppingCallback``, metrics from scikit-learn
(accuracy, binary F1, MCC).

Semantics (BabyLM 2023 pipeline, ``finetune_classification.py``; Baby Llama Table 3 gives
lr, batch size, epochs, patience, eval_every and seed per task, from config): a fresh
classification head on the saved causal LM (``AutoModelForSequenceClassification``, the
rightmost non-pad token is pooled), inputs truncated to 128 tokens, the two texts of a pair
passed to the tokenizer as ``(text, text_pair)`` (longest first truncation), MultiRC as
``"Question: {q} Answer: {a}"`` + paragraph, WSC as ``'Does "{span2}" refer to "{span1}" in
this passage?'`` + text; AdamW (betas 0.9/0.999, eps 1e-8, no weight decay), linear decay to
zero over the maximum number of epochs with no warm-up, gradient clipping at 1.0 (the
Trainer's defaults); evaluation on the validation set every ``eval_every`` steps and at the
last step, early stopping after ``patience`` evaluations without an improvement above 0.001,
and the best validation score reported (no checkpoint is written: only the score is kept).
MNLI-mm trains on ``mnli.train.jsonl`` and validates on ``mnli-mm.valid.jsonl``, as in the
pipeline. Labels: integers (or booleans) are class ids; strings are mapped by sorted order;
a file that mixes the two is refused with its first odd line.

Recipes (``eval.finetune.recipe``, carried in the spec as ``recipe``; absent = babylm-2023):
the above is ``babylm-2023``. ``babylm-2025`` is the official 2025 pipeline's fine-tuning,
written from babylm/evaluation-pipeline-2025 @ bf55c1131e53654c2a87418f5629c26959acd710
(``eval_finetuning.sh`` for the tasks and values, ``evaluation_pipeline/finetune/run.py``,
``trainer.py``, ``classifier_model.py``, ``dataset.py``, ``utils.py`` for the run): boolq,
multirc, rte, wsc, mrpc, qqp, mnli, lr 3e-5, batch 32 (boolq, multirc 16), 10 epochs (wsc 30),
seed 42, 512-token inputs, the first position's state into its MLP head, AdamW with weight
decay 0.01, 6% warm-up then cosine to 0.1 x lr, no clipping, every epoch evaluated and the
best kept (``babydistill.eval.finetune_2025``; values in ``babydistill.config.finetune_recipes``,
where the MNLI/QQP 10k subsample is explained: the release's own draw is not published, so a
larger file is subsampled with seed 42). Its input formats are the ones above (the 2025
``dataset.py`` builds MultiRC and WSC the same way).

Encoders (a saved ``RobertaForMaskedLM``, ``arch: roberta``): babylm-2023 loads it with
``AutoModelForSequenceClassification`` as the 2023/2024 pipelines load every model
(babylm/evaluation-pipeline-2024 @ d680c2875e2141d0db14f68c305caca9e6d86b85,
``finetune_classification.py`` l. 418-427, run by ``finetune_model.sh``; the same call in
babylm/evaluation-pipeline-2023 @ 4f0da24c5dffbae8876791d1067e98d0aa9a9124, same file, no pad
id passed in either), which for RoBERTa is ``RobertaForSequenceClassification``
with RoBERTa's own head (``RobertaClassificationHead``: dropout, dense, tanh, dropout, out
projection) on the *first* position; its config's pad id is kept (RoBERTa counts positions
from it). babylm-2025 puts its MLP head on the base ``RobertaModel``'s first position
(``AutoModel``, as ``classifier_model.py``). In both the inputs are the tokenizer's own
encoding, as the pipelines feed them: with roberta-base-style tokenizers position 0 is
``<s>``; the project's tokenizer adds no special tokens, so it is the first text token, which
in an encoder attends to the whole input (unlike a causal LM's). The result records
``pooling: first`` and the head's class.

Context: every recipe cuts inputs to min(its length, the tokens the model reads:
``max_position_embeddings`` or ``n_positions``, less RoBERTa's padding offset
``pad_token_id + 1``) -- the 2025 pipeline's 512 crashed on 128-position GPT-2s, and
``max_position_embeddings`` tokens index past a RoBERTa's position table -- and the result's
``truncation`` records the recipe length, the length used, the model's positions (those
tokens) and how many train / validation inputs were cut.

No network: the hub and datasets run offline, with their caches and the Trainer's output in
a temporary folder per job (beside ``--out``), removed at the end. Logs: on a terminal a
live bar; in a log file a progress line at most every 30 s and the result line.

CLI::

    python -m babydistill.eval.finetune --model DIR --task cola --data-dir DIR \\
        --spec '{"lr": 4e-5, "batch_size": 64, "epochs": 3, "patience": 10,
                 "eval_every": 20, "seed": 12}' --out results/x/finetune/cola.json
    python -m babydistill.eval.finetune --model DIR --task wsc --data-dir DIR \\
        --recipe babylm-2025 --out results/x/finetune/wsc.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from babydistill.common import (UserError, cli, parse_json_arg, read_json, setup_logging,
                                text_lines, write_json)
from babydistill.config import finetune_recipes
from babydistill.config.specs import schema, validate as validate_against_schema

# Set before transformers / datasets / huggingface_hub are imported, which read them once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

log = logging.getLogger("babydistill.eval.finetune")

MAX_LENGTH = 128  # the pipeline's --max_seq_length
MAX_LENGTH_2025 = 512  # recipe babylm-2025: eval_finetuning.sh's --sequence_length
EARLY_STOPPING_THRESHOLD = 1e-3  # the pipeline's EarlyStoppingCallback threshold
GRAD_CLIP = 1.0  # HF Trainer's default max_grad_norm
SPEC_KEYS = tuple(schema()["$defs"]["finetune_task"]["properties"])  # the task's hyperparameters
# RoBERTa-style position ids start after the padding index (as eval.pll's list)
OFFSET_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert", "data2vec-text")


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


def read_jsonl(path: str | os.PathLike, with_lines: bool = False) -> list:
    """All records of a jsonl file (with ``with_lines``: ``(line number, record)`` pairs);
    a bad line is a one-line UserError naming file:line."""
    out: list = []
    for i, line in text_lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{i}: not valid JSON ({e.msg}); fix or remove the line") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}:{i}: expected a JSON object per line")
        out.append((i, rec) if with_lines else rec)
    return out


def _label_kind(v: Any) -> str | None:
    if isinstance(v, (bool, int)):
        return "integer"
    return "string" if isinstance(v, str) else None


def _texts_of(task: Task, rec: dict, at: str) -> tuple[str, str | None]:
    """The task's input text(s) of one record; a null, numeric or empty text is one line (it
    crashed the tokenizer, or an all-empty file trained on nothing and reported a score)."""
    try:
        pair = task.build(rec)
    except (TypeError, AttributeError, ValueError, IndexError) as e:
        raise UserError(f"{at}: the fields of task {task.name} are not text ({e})") from None
    for i, text in enumerate(pair):
        if text is None and i == 1:
            continue
        if not isinstance(text, str):
            raise UserError(f"{at}: input {i + 1} of task {task.name} is "
                            f"{type(text).__name__}, not text")
        if not text.strip():
            raise UserError(f"{at}: input {i + 1} of task {task.name} is empty; fix or drop the record")
    return pair


def build_examples(task: Task, records: Sequence[dict], path: str | os.PathLike,
                   label_map: dict | None = None, lines: Sequence[int] | None = None,
                   ) -> tuple[list[tuple[str, str | None]], list[int], dict]:
    """(texts, labels, label_map) for a task's records. Integer labels (and booleans) are
    used as class ids; string labels are mapped by sorted order, as the pipeline does. A
    file mixing the two kinds (``"acceptable"`` among 0/1) is refused: the string would
    otherwise become some class id silently. ``lines``: each record's line in ``path``."""
    where = [f"{path}:{n}" for n in lines] if lines is not None else \
        [f"{path}: record {i}" for i in range(1, len(records) + 1)]
    texts, raw = [], []
    for at, rec in zip(where, records):
        missing = [k for k in (*task.build.keys, "label") if k not in rec]  # type: ignore[attr-defined]
        if missing:
            raise UserError(f"{at}: missing key(s) {missing} for task {task.name}")
        if _label_kind(rec["label"]) is None:
            raise UserError(f"{at}: label {rec['label']!r} must be an integer class id or a string")
        if isinstance(rec["label"], str) and not rec["label"].strip():
            raise UserError(f"{at}: label is empty; give every example its class")
        texts.append(_texts_of(task, rec, at))
        raw.append(rec["label"])
    kinds = [_label_kind(v) for v in raw]
    if len(set(kinds)) > 1:
        odd = min(set(kinds), key=kinds.count)  # the rarer kind is the mistake
        i = kinds.index(odd)
        raise UserError(f"{where[i]}: label {raw[i]!r} is a {odd} but the file's other labels are "
                        f"{'strings' if odd == 'integer' else 'integers'}; use one kind of label")
    if label_map is None:
        strs = sorted({v for v in raw if isinstance(v, str)})
        label_map = {s: j for j, s in enumerate(strs)}
    labels = []
    for at, v in zip(where, raw):
        y = int(v) if isinstance(v, (bool, int)) else label_map.get(v)
        if y is None or not 0 <= y < task.num_labels:
            raise UserError(
                f"{at}: label {v!r} is not one of the {task.num_labels} classes of {task.name}"
            )
        labels.append(y)
    return texts, labels, label_map


# ---------------------------------------------------------------------------------------
# Metrics (the ones BabyLM reports per task), from scikit-learn


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, preds)) if len(labels) else 0.0


def f1_binary(preds: Sequence[int], labels: Sequence[int]) -> float:
    """F1 of the positive class (label 1); 0 when there is no true or predicted positive."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels, preds, pos_label=1, average="binary", zero_division=0.0))


def mcc(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Matthews correlation (multiclass form for more than two classes); 0 when it is
    undefined (a constant prediction or a constant truth)."""
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, preds))


METRICS = {"acc": accuracy, "f1": f1_binary, "mcc": mcc}


# ---------------------------------------------------------------------------------------
# Data plumbing


def _tokenize(tokenizer, texts: Sequence[tuple[str, str | None]], **kw) -> dict:
    singles = [a for a, b in texts if b is None]
    if len(singles) == len(texts):
        return dict(tokenizer(singles, **kw))
    if singles:
        raise UserError("mixed single and pair inputs in one task")  # cannot happen per Task
    a, b = zip(*texts)
    return dict(tokenizer(list(a), list(b), **kw))


def encode(tokenizer, texts: Sequence[tuple[str, str | None]], max_length: int) -> dict:
    """The tokenizer's output (input_ids, attention_mask) per example; pairs go in as
    (text, text_pair), truncated longest-first. ``truncated``: per example, whether it was
    longer than ``max_length`` (tokenized whole first; only the long ones are tokenized
    again with truncation, which gives the same ids as truncating them all)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "longer than the model's maximum": counted, then cut
    try:
        enc = _tokenize(tokenizer, texts)
        long = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) > max_length]
        if long:
            cut = _tokenize(tokenizer, [texts[i] for i in long], truncation=True,
                            max_length=max_length)
            for j, i in enumerate(long):
                for key in enc:
                    enc[key][i] = cut[key][j]
    finally:
        hf_logging.set_verbosity(verbosity)
    flags = set(long)
    return {**enc, "truncated": [i in flags for i in range(len(texts))]}


def subsample(n: int, k: int | None, seed: int) -> list[int]:
    """A deterministic sorted subset of k indices out of n (all of them when k is None)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


def validate_spec(spec: Any) -> dict:
    """The task's hyperparameters, checked against the schema: ``$defs/finetune_task``, or
    ``$defs/finetune_task_2025`` when ``recipe`` is babylm-2025 (an unknown recipe is one line)."""
    if not isinstance(spec, dict):
        raise UserError("--spec: expected a JSON object with keys " + ", ".join(SPEC_KEYS))
    recipe = spec.get("recipe", finetune_recipes.DEFAULT_RECIPE)
    if recipe not in finetune_recipes.RECIPES:
        raise UserError(f"--spec: recipe {recipe!r} is unknown; use one of "
                        f"{', '.join(finetune_recipes.RECIPES)}")
    if recipe == finetune_recipes.BABYLM_2025:
        validate_against_schema(spec, "finetune_task_2025", "--spec")
        return {"max_train": None, **spec}
    spec = {k: v for k, v in spec.items() if k != "recipe"}
    validate_against_schema(spec, "finetune_task", "--spec")
    return {k: spec[k] for k in SPEC_KEYS}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: use auto, cpu or cuda (pick a GPU with "
                        "CUDA_VISIBLE_DEVICES)")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here; use --device cpu or auto")
    return torch.device(device)


def is_encoder(model_dir: str | os.PathLike) -> bool:
    """Whether a saved model folder is a masked LM (an encoder: RoBERTa and the like), by
    its config.json (:func:`babydistill.eval.scorer.is_masked_lm`)."""
    from transformers import AutoConfig

    from babydistill.eval.scorer import is_masked_lm

    return is_masked_lm(AutoConfig.from_pretrained(model_dir, local_files_only=True))


def load_model(model_dir: str | os.PathLike, num_labels: int, first_token_head: bool = False):
    """(tokenizer, classifier) from a saved causal- or masked-LM directory, with a fresh head:
    HF's sequence classifier (a causal LM's pools the last non-pad token; an encoder's is its
    own, e.g. ``RobertaClassificationHead`` on the first position), or with
    ``first_token_head`` the base transformer and recipe babylm-2025's head
    (``finetune_2025.FirstTokenClassifier``). An encoder keeps its config's pad id: RoBERTa
    numbers its positions from it."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
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
    tok.padding_side = "right"
    from babydistill.models.build import check_weights

    try:
        vocab = json.loads((model_dir / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError, AttributeError):
        raise UserError(f"{model_dir}/config.json: not a JSON object; save the model again") from None
    check_weights(model_dir, vocab, len(tok))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "score.weight newly initialized" warning is expected
    try:
        if first_token_head:
            from babydistill.eval.finetune_2025 import FirstTokenClassifier

            base = AutoModel.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True)
            model = FirstTokenClassifier(base, base.config.hidden_size, num_labels)
            model.config = base.config  # the context length is read from it
        else:
            # a causal LM pools the last non-pad token: it must know the pad id the batches use
            pad = {} if is_encoder(model_dir) else {"pad_token_id": tok.pad_token_id}
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, num_labels=num_labels, dtype=torch.float32, local_files_only=True, **pad)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{model_dir}: cannot load as a sequence classifier ({str(e).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return tok, model


def load_splits(task: Task, train_path: Path, valid_path: Path, tok, max_len: int,
                cache_dir: Path, max_train: int | None, max_valid: int | None, seed: int):
    """The tokenized train / validation ``datasets.Dataset`` pair (columns input_ids,
    attention_mask, labels) and ``{split: inputs cut to max_len}``. The files are checked line by line first, so bad input is a
    one-line error naming file:line rather than a pyarrow traceback."""
    import datasets

    checked = {}
    label_map = None
    for split, path in (("train", train_path), ("validation", valid_path)):
        numbered = read_jsonl(path, with_lines=True)
        if not numbered:
            raise UserError(f"{path}: no examples")
        lines, records = zip(*numbered)
        _, labels, label_map = build_examples(task, records, path, label_map, lines)
        checked[split] = labels
    try:
        raw = datasets.load_dataset("json", data_files={"train": str(train_path),
                                                        "validation": str(valid_path)},
                                    cache_dir=str(cache_dir))
    except Exception as e:  # e.g. a field whose type changes between lines
        cause = e.__cause__ or e
        raise UserError(f"{train_path} / {valid_path}: datasets cannot read them as one table "
                        f"({type(cause).__name__}: {str(cause).splitlines()[0][:200]})") from None
    out, truncated = [], {}
    for split, k in (("train", max_train), ("validation", max_valid)):
        ds, labels = raw[split], checked[split]
        if len(ds) != len(labels):  # a blank line skipped by one reader and not the other
            raise UserError(f"{train_path if split == 'train' else valid_path}: read "
                            f"{len(ds)} records but checked {len(labels)}; remove blank lines")

        def features(batch: dict, idx: list[int], labels=labels) -> dict:
            recs = [dict(zip(batch, row)) for row in zip(*batch.values())]
            enc = encode(tok, [task.build(r) for r in recs], max_len)
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "labels": [labels[i] for i in idx], "truncated": enc["truncated"]}

        ds = ds.map(features, batched=True, with_indices=True, remove_columns=ds.column_names)
        keep = subsample(len(ds), k, seed)
        classes = {labels[i] for i in keep}
        if split == "train" and len(classes) < 2:  # it would "learn" a constant: MCC 0.0
            raise UserError(f"{train_path}: every training example{' kept' if k else ''} is class "
                            f"{classes.pop()}; a classifier needs at least two classes"
                            f"{' (raise eval.finetune.max_train)' if k else ''}")
        ds = ds.select(keep)
        truncated[split] = int(sum(ds["truncated"]))  # of the examples kept
        out.append(ds.remove_columns("truncated"))
    return out[0], out[1], truncated


def _callbacks(task: Task, patience: int):
    """EarlyStoppingCallback plus two small ones: a loss log at the last step (the
    Trainer evaluates there but logs the loss only every ``logging_steps``) and the
    progress bar (quiet in log files)."""
    from transformers import EarlyStoppingCallback, TrainerCallback

    from babydistill.common import progress_bar

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= state.max_steps:
                control.should_log = True

    class Progress(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kw):
            self.bar = progress_bar(state.max_steps, desc=f"finetune {task.name}")

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(1)

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            score = (metrics or {}).get(f"eval_{task.metric}")
            if score is not None:
                best = max(score, state.best_metric if state.best_metric is not None else -math.inf)
                self.bar.set_postfix({task.metric: f"{score:.3f}", "best": f"{best:.3f}"},
                                     refresh=False)

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    return [EarlyStoppingCallback(patience, EARLY_STOPPING_THRESHOLD), LogLastStep(), Progress()]


class _NoBestModelWarning(logging.Filter):
    """Only the score is kept, so not loading the best model at the end is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "load_best_model_at_end" not in record.getMessage()


# ---------------------------------------------------------------------------------------
# The fine-tuning run


def _training_arguments(spec: dict, task: Task, output_dir: Path, dev: torch.device):
    """The HF Trainer's settings: the papers' fine-tuning recipe (linear decay, no warm-up,
    AdamW, no weight decay), evaluated and logged every ``eval_every`` steps, nothing saved."""
    from transformers import TrainingArguments

    bs = spec["batch_size"]
    return TrainingArguments(
        output_dir=str(output_dir), learning_rate=spec["lr"],
        per_device_train_batch_size=bs, per_device_eval_batch_size=max(bs, 64),
        num_train_epochs=spec["epochs"], lr_scheduler_type="linear", warmup_steps=0,
        optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        weight_decay=0.0, max_grad_norm=GRAD_CLIP,
        eval_strategy="steps", eval_steps=spec["eval_every"],
        logging_strategy="steps", logging_steps=spec["eval_every"],
        save_strategy="no", load_best_model_at_end=False,
        metric_for_best_model=task.metric, greater_is_better=True,
        seed=spec["seed"], data_seed=spec["seed"], report_to="none", disable_tqdm=True,
        use_cpu=dev.type == "cpu", dataloader_pin_memory=False,
        bf16=dev.type == "cuda" and torch.cuda.is_bf16_supported(),  # autocast, fp32 weights
    )


def _train_quietly(trainer) -> None:
    """``trainer.train()`` without the warning that the best model is not loaded at the end."""
    quiet = _NoBestModelWarning()
    callback_log = logging.getLogger("transformers.trainer_callback")
    callback_log.addFilter(quiet)
    try:
        trainer.train()
    finally:
        callback_log.removeFilter(quiet)


def _result(base: dict, task: Task, spec: dict, state, run: dict) -> dict:
    """The result record from the Trainer's log history: the best validation score (the
    first of equal scores, as the Trainer picks it), the score history and the settings.
    ``run``: what the run knew (example counts, max_length, files, device, start time)."""
    key = f"eval_{task.metric}"
    losses = {e["step"]: e["loss"] for e in state.log_history if "loss" in e}
    history = [{"step": e["step"], "score": e[key], "loss": losses.get(e["step"])}
               for e in state.log_history if key in e]
    best = max(history, key=lambda h: h["score"])  # the first of equal scores, as the Trainer
    return {
        **base,
        "score": best["score"],
        "best_step": best["step"],
        "n_train": run["n_train"],
        "n_valid": run["n_valid"],
        "steps": state.global_step,
        "stopped_early": state.global_step < state.max_steps,
        "history": history,
        "hyperparameters": {
            **spec, "max_length": run["max_length"], "schedule": "linear", "warmup_steps": 0,
            "optimizer": "adamw", "weight_decay": 0.0, "grad_clip": GRAD_CLIP,
            "early_stopping_threshold": EARLY_STOPPING_THRESHOLD, "max_train": run["max_train"],
            "max_valid": run["max_valid"],
        },
        "num_labels": task.num_labels,
        "train_file": str(run["train_path"]),
        "valid_file": str(run["valid_path"]),
        "device": run["device"],
        "seconds": round(time.time() - run["t0"], 2),
    }


def model_positions(config) -> int | None:
    """How many tokens the model reads: ``max_position_embeddings`` or ``n_positions``, less
    RoBERTa's padding offset (its position ids start at ``pad_token_id + 1``, so
    ``max_position_embeddings - pad_token_id - 1`` tokens fit; as ``eval.pll.masked_context``)."""
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    pad = getattr(config, "pad_token_id", None)
    if positions and getattr(config, "model_type", None) in OFFSET_POSITION_MODELS and pad is not None:
        positions -= pad + 1
    return positions


def context_length(config, recipe_length: int) -> int:
    """The input length used: the recipe's, cut to the model's positions
    (:func:`model_positions`) when it has fewer; the 2025 recipe's 512 on a 128-position
    GPT-2 crashed the official pipeline, and a RoBERTa fed ``max_position_embeddings``
    tokens indexes past its position table."""
    positions = model_positions(config)
    return min(recipe_length, positions) if positions else recipe_length


def _truncation(recipe_length: int, used: int, config, counts: dict) -> dict:
    positions = model_positions(config)
    if any(counts.values()):
        log.info("truncated to %d tokens (recipe %d, model %s positions): %d train, %d valid "
                 "inputs", used, recipe_length, positions, counts["train"], counts["validation"])
    return {"recipe_max_length": recipe_length, "max_length": used, "model_positions": positions,
            "truncated": {"train": counts["train"], "validation": counts["validation"]}}


def finetune(model_dir: str | os.PathLike, task_name: str, data_dir: str | os.PathLike,
             spec: dict, max_train: int | None = None, max_valid: int | None = None,
             device: str = "auto", work_dir: str | os.PathLike | None = None) -> dict:
    """Fine-tune ``model_dir`` on one task; returns the result record (see module doc).
    The spec's ``recipe`` (absent: babylm-2023) picks the run. ``work_dir``: where this
    job's temporary folder (HF caches, Trainer output) goes."""
    t0 = time.time()
    task = resolve_task(task_name)
    spec = validate_spec(spec)
    recipe = spec.get("recipe", finetune_recipes.DEFAULT_RECIPE)
    if recipe == finetune_recipes.BABYLM_2025 and task.name not in finetune_recipes.BABYLM_2025_TASKS:
        raise UserError(f"--task {task.name}: not in recipe babylm-2025 (its tasks: "
                        f"{', '.join(finetune_recipes.BABYLM_2025_TASKS)})")
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

    dev = pick_device(device)
    from babydistill.common import quiet_library_bars

    if not sys.stderr.isatty():
        quiet_library_bars()  # datasets' "Map" / "Generating split" bars
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    run = {"max_train": max_train, "max_valid": max_valid, "train_path": train_path,
           "valid_path": valid_path, "t0": t0}
    if recipe == finetune_recipes.BABYLM_2025:
        return _run_2025(base, task, spec, model_dir, dev, work_dir, run)
    return _run_2023(base, task, spec, model_dir, dev, work_dir, run)


def _run_2023(base: dict, task: Task, spec: dict, model_dir, dev: torch.device, work_dir,
              run: dict) -> dict:
    """Recipe babylm-2023: the HF Trainer run of the module doc."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, set_seed

    from babydistill.eval.scorer import is_masked_lm

    set_seed(spec["seed"])  # before loading: the head's init depends on it
    tok, model = load_model(model_dir, task.num_labels)
    max_len = context_length(model.config, MAX_LENGTH)
    metric_fn = METRICS[task.metric]
    with tempfile.TemporaryDirectory(prefix=".finetune.", dir=work_dir) as tmp:
        train_ds, valid_ds, truncated = load_splits(
            task, run["train_path"], run["valid_path"], tok, max_len, Path(tmp) / "datasets",
            run["max_train"], run["max_valid"], spec["seed"])
        args = _training_arguments(spec, task, Path(tmp) / "trainer", dev)
        trainer = Trainer(
            model=model, args=args, train_dataset=train_ds, eval_dataset=valid_ds,
            data_collator=DataCollatorWithPadding(tok),
            compute_metrics=lambda p: {task.metric: metric_fn(p.predictions, p.label_ids)},
            preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1),
            callbacks=_callbacks(task, spec["patience"]),
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        log.info("%s: %d train / %d valid examples, %d labels, %d steps max, device %s",
                 task.name, len(train_ds), len(valid_ds), task.num_labels,
                 math.ceil(len(train_ds) / spec["batch_size"]) * spec["epochs"], args.device)
        _train_quietly(trainer)
        state = trainer.state

    result = _result(base, task, spec, state, {
        **run, "n_train": len(train_ds), "n_valid": len(valid_ds), "max_length": max_len,
        "device": str(args.device)})
    if is_masked_lm(model.config):  # the encoder's own head: recorded (a causal LM's: as before)
        result["hyperparameters"].update(pooling="first", head=type(model).__name__)
    return {**result, "recipe": finetune_recipes.DEFAULT_RECIPE,
            "truncation": _truncation(MAX_LENGTH, max_len, model.config, truncated)}


def _run_2025(base: dict, task: Task, spec: dict, model_dir, dev: torch.device, work_dir,
              run: dict) -> dict:
    """Recipe babylm-2025: ``finetune_2025.train`` on the first-token MLP head (see there)."""
    from transformers import set_seed

    from babydistill.common import progress_bar
    from babydistill.eval import finetune_2025

    set_seed(spec["seed"])  # seed_everything(42) before the model is built, as run.py
    tok, model = load_model(model_dir, task.num_labels, first_token_head=True)
    max_len = context_length(model.config, MAX_LENGTH_2025)
    # the recipe's subsample (MNLI, QQP 10k) and --max-train: the smaller one
    cap = [k for k in (spec.get("max_train"), run["max_train"]) if k is not None]
    max_train = min(cap) if cap else None
    # the pipeline reports accuracy, F1 and MCC, MNLI accuracy alone (3 classes)
    names = ("acc",) if task.num_labels > 2 else ("acc", "f1", "mcc")
    with tempfile.TemporaryDirectory(prefix=".finetune.", dir=work_dir) as tmp:
        train_ds, valid_ds, truncated = load_splits(
            task, run["train_path"], run["valid_path"], tok, max_len, Path(tmp) / "datasets",
            max_train, run["max_valid"], spec["seed"])
        if len(train_ds) < spec["batch_size"]:  # drop_last: the official run trains 0 steps
            raise UserError(f"{run['train_path']}: {len(train_ds)} training examples, fewer than "
                            f"one batch ({spec['batch_size']}); recipe babylm-2025 drops the "
                            "last partial batch")
        log.info("%s (babylm-2025): %d train / %d valid examples, %d labels, %d epochs, device %s",
                 task.name, len(train_ds), len(valid_ds), task.num_labels, spec["epochs"], dev)
        bar = progress_bar(spec["epochs"] * (len(train_ds) // spec["batch_size"]),
                           desc=f"finetune {task.name}")
        out = finetune_2025.train(model, tok, train_ds, valid_ds, spec,
                                  {n: METRICS[n] for n in names}, task.metric, dev,
                                  progress=lambda step, total: bar.update(1))
        bar.close()
    best = out["best"]
    return {
        **base, "recipe": finetune_recipes.BABYLM_2025, "score": best["score"],
        "best_step": best["step"], "best_epoch": best["epoch"], "metrics": best["metrics"],
        "n_train": len(train_ds), "n_valid": len(valid_ds), "steps": out["steps"],
        "stopped_early": False, "history": out["history"],
        "hyperparameters": {
            **spec, "max_length": max_len, "max_train": max_train, "max_valid": run["max_valid"],
            "schedule": "cosine", "warmup_proportion": finetune_2025.WARMUP_PROPORTION,
            "min_factor": finetune_2025.MIN_FACTOR, "optimizer": "adamw",
            "weight_decay": finetune_2025.WEIGHT_DECAY, "grad_clip": None,
            "pooling": "first", "head": "mlp", "classifier_dropout": finetune_2025.CLASSIFIER_DROPOUT,
            "valid_batch_size": finetune_2025.VALID_BATCH_SIZE, "drop_last": True,
            "early_stopping": None, "precision": "fp32"},
        "truncation": _truncation(MAX_LENGTH_2025, max_len, model.config, truncated),
        "num_labels": task.num_labels, "train_file": str(run["train_path"]),
        "valid_file": str(run["valid_path"]), "device": str(dev),
        "seconds": round(time.time() - run["t0"], 2),
    }


def _read_spec(text: str) -> Any:
    """--spec is inline JSON or the path of a JSON file."""
    return parse_json_arg(text, "--spec") if text.lstrip().startswith("{") else read_json(text)


def cli_spec(spec_text: str | None, recipe: str | None, task_name: str) -> Any:
    """The spec of the command line: --spec, under --recipe babylm-2025 over the recipe's
    values for the task (so --recipe babylm-2025 alone is enough)."""
    spec = _read_spec(spec_text) if spec_text is not None else None
    if recipe is None:
        if spec is None:
            raise UserError("--spec: required (or --recipe babylm-2025, which has its own values)")
        return spec
    if recipe not in finetune_recipes.RECIPES:
        raise UserError(f"--recipe {recipe}: unknown; use one of {', '.join(finetune_recipes.RECIPES)}")
    if recipe == finetune_recipes.DEFAULT_RECIPE:
        if spec is None:
            raise UserError("--recipe babylm-2023: give the task's values with --spec")
        return {**spec, "recipe": recipe} if isinstance(spec, dict) else spec
    key = resolve_task(task_name).name
    if key not in finetune_recipes.BABYLM_2025_TASKS:
        raise UserError(f"--task {task_name}: not in recipe babylm-2025 (its tasks: "
                        f"{', '.join(finetune_recipes.BABYLM_2025_TASKS)})")
    if spec is not None and not isinstance(spec, dict):
        return spec  # validate_spec names the problem
    return {**finetune_recipes.babylm_2025_spec(key), **(spec or {}), "recipe": recipe}


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m babydistill.eval.finetune", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="saved HF causal- or masked-LM directory (with tokenizer)")
    ap.add_argument("--task", required=True, help="cola, sst2, mrpc, qqp, mnli, mnli-mm, qnli, rte, "
                    "boolq, multirc, wsc, or msgs_<name>")
    ap.add_argument("--data-dir", required=True, help="folder with {task}.train.jsonl / {task}.valid.jsonl")
    ap.add_argument("--spec", default=None, help="JSON (inline or file): lr, batch_size, epochs, "
                    "patience, eval_every, seed (babylm-2023); recipe, lr, batch_size, epochs, "
                    "seed, max_train (babylm-2025)")
    ap.add_argument("--recipe", default=None, help="babylm-2023 (the default: --spec's values) "
                    "or babylm-2025 (the official 2025 fine-tuning; --spec overrides its values)")
    ap.add_argument("--out", required=True, help="result JSON (written atomically)")
    ap.add_argument("--max-train", type=int, default=None, help="deterministic subsample of N train examples")
    ap.add_argument("--max-valid", type=int, default=None, help="deterministic subsample of N valid examples")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda "
                    "(choose the GPU with CUDA_VISIBLE_DEVICES)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if args.threads:
        torch.set_num_threads(args.threads)  # oversubscribed CPUs slow tiny models down a lot
    for flag, v in (("--max-train", args.max_train), ("--max-valid", args.max_valid)):
        if v is not None and v < 1:
            raise UserError(f"{flag}: must be >= 1, got {v}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    job_tmp = tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    before = os.environ.get("HF_HOME")
    os.environ["HF_HOME"] = str(Path(job_tmp) / "hf_home")  # any hub/datasets cache: this job's
    try:
        result = finetune(args.model, args.task, args.data_dir,
                          cli_spec(args.spec, args.recipe, args.task),
                          args.max_train, args.max_valid, args.device, work_dir=job_tmp)
    finally:
        if before is None:
            os.environ.pop("HF_HOME", None)
        else:
            os.environ["HF_HOME"] = before
        shutil.rmtree(job_tmp, ignore_errors=True)
    write_json(out, result)
    if not result.get("skipped"):
        log.info("%s: best %s %.4f at step %d of %d -> %s", result["task"], result["metric"],
                 result["score"], result["best_step"], result["steps"], args.out)
    return result


if __name__ == "__main__":
    main()
