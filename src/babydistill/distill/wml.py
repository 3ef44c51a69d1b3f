"""When Babies Teach Babies: teacher-less weighted mutual learning (WML) of N peer students.

Owns the peer size search, :class:`WMLObjective` (the peer loss and the peer-weight
update) and the export of one peer as a model of its own. The reference is the authors'
code, AI-DA-STC/generative-ai-research-babylm at commit 701a0c8 (``REF`` below):
``src/WML_distill/utils.py`` (``wml_loss``, ``get_lr``), ``src/WML_distill/train.py``
(``WMLTrainer.train_epoch``, ``validate``) and ``conf/config.yaml`` (the defaults).

* Loss (:func:`babydistill.distill.losses.wml_loss`, as theirs): ``(1 - alpha) * sum_i w_i CE_i +
  alpha * sum_i sum_{j != i} w_j KL(p_j || p_i)``, KL by ``F.kl_div(..., log_target=True,
  reduction="batchmean")`` on ``[B, T, V]`` (sum over positions / B), no temperature,
  targets not detached; the weights are constants for the peers' gradients. The
  N(N-1) KL terms are summed in N passes over the vocabulary (an identity, see there).
* Weights ``w`` start at ``1/N``. Their loop (``train``): after each optimizer step
  ``it`` (0-based; their ``epoch`` is one optimizer step over ``num_batches`` accumulated
  micro-batches), when ``it % weight_update_frequency == 0``, ``validate`` runs
  validation batches and, per batch, takes one mirror-descent step
  ``w_i <- w_i exp(-eta g_i) / sum_k w_k exp(-eta g_k)``. What their code computes:
  ``g = d(ensemble_loss)/dw`` with ``ensemble_loss = sum_k w_k CE_k / num_batches``, so
  ``g_i = CE_i / num_batches`` on that batch; the "second-order" term
  ``lr * <dL2/dtheta, dLa/dtheta>`` is exactly zero because ``La`` is detached before
  it is differentiated (``La.detach().requires_grad_(True)``), and it is not computed
  here. ``g`` is clamped to ``[0, grad_clip]`` (their one ``grad_clip``, the training
  grad-norm clip; 0 or null: no clamp). ``eta = get_lr(it, lr_type="val")``: linear
  warm-up from 0 over the training warm-up, then cosine from ``step_size`` to
  ``min_step_size`` at the end of training (their ``warmup_iters`` / ``lr_decay_iters``
  are the training schedule's; here ``train.warmup_steps`` and the run's total steps).
  Deliberate difference (key ``val_batches``, default 1): they run ``num_batches`` (60)
  validation batches per validation, but their step is 60 micro-batches; one validation
  batch of ``val_batch_size`` (default: the training batch) every 5 steps keeps their
  ratio of validation to training sequences (1/5: one forward pass per five training
  steps, ~7% of the training compute); 60 batches per validation here would cost ~4x
  the training itself. The
  batches rotate over the fixed dev chunks (theirs: random windows); every
  data-parallel rank uses the whole batch, so all ranks compute the same ``w``.
  ``use_bilevel: false`` keeps ``w = 1/N``. Each update is one row of
  ``wml_weights.csv`` (the trajectory; checkpointed, so a resumed run writes the same).
* Masked-LM peers (a ``reference`` or ``peers`` of ``arch: roberta``, their
  ``model_type: MLM``): every peer reads the same masked batch (the masks of
  babydistill.train.masked_lm, drawn once in :meth:`WMLObjective.prepare`); the CE is on the
  masked positions and the KL over every position, as their ``wml_loss`` computes it on the
  whole ``[B, T, V]`` logits; validation CE and the eval loss on the dev chunks' fixed
  eval masks (theirs re-masks each validation batch: fixed masks keep a resumed run's
  weight updates identical).
* Peers: ``peers`` presets by hand, or :func:`peer_presets` -- a deterministic size search
  for ``N/2, N/3, ...`` of the reference preset's parameter count ``N`` (theirs:
  Bayesian optimisation over layers, heads and width for the same targets; RoBERTa peers
  keep the reference's FFN width as theirs do, ``peer_generator.py``).
* Saving: every peer at ``OUT/peers/<i>/`` (i = 1..N, save_pretrained + tokenizer), the
  best peer by eval loss at ``OUT`` itself (the variant's model), ``OUT/wml_weights.csv``.
  ``python -m babydistill.distill.wml --run-dir OUT --peer I --out DIR`` makes peer I a model
  directory of its own (``<run>-peer<I>`` in the workflow, scored like any model).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import shutil
from pathlib import Path

import torch

from babydistill.common import UserError, atomic_path, atomic_write_text, cli, setup_logging, write_json
from babydistill.distill.losses import ce_loss, next_token_labels, wml_loss
from babydistill.config.presets import MASKED_ARCHS, is_masked, preset_parameters
from babydistill.config.specs import DistillSpec, ModelPreset, defaults
from babydistill.train.trainer import Objective, copy_tokenizer

REF = "AI-DA-STC/generative-ai-research-babylm@701a0c8"
# The WML keys' defaults are the reference's conf/config.yaml (WML:) unless said otherwise;
# workflow/schemas/config.schema.yaml ($defs wml_keys, loss_keys) is where they are written.
WML_DEFAULTS = {**defaults("wml_keys"), "kl_reduction": defaults("loss_keys")["kl_reduction"]}
_TRAIN_DEFAULTS = defaults("training_keys")

# ---------------------------------------------------------------------------------------
# Peer size search


def peer_presets(reference: ModelPreset | dict, vocab_size: int, num_peers: int,
                 tolerance: float = 0.05) -> list[ModelPreset]:
    """Presets near N/2, N/3, ..., N/(num_peers+1) parameters, N = the reference's count.

    Grid: hidden in steps of a quarter of the reference's head size (at least 4) up to
    the reference's, heads = the divisor of hidden whose head size is closest to the
    reference's (so heads always divide hidden), layers 1..2x the reference's, the MLP
    keeps the reference's hidden:intermediate ratio, LLaMA peers use full multi-head
    attention; RoBERTa peers keep the reference's FFN width (theirs). Among shapes within ``tolerance`` of the target, the one closest to the
    reference's depth:width ratio wins (a scaled-down reference, not a 1-layer embedding
    table); when none is that close, the closest count.
    """
    reference = ModelPreset.of(reference, "reference").to_json()
    h_ref, l_ref, heads_ref = reference["hidden_size"], reference["num_layers"], reference["num_heads"]
    head_dim = h_ref // heads_ref
    ratio = reference.get("intermediate_size", 4 * h_ref) / h_ref
    n_ref = preset_parameters(reference, vocab_size)
    step = max(4, head_dim // 4)
    grid = []
    for hidden in range(step, h_ref + 1, step):
        heads = min((d for d in range(1, hidden + 1) if hidden % d == 0),
                    key=lambda d: (abs(math.log(hidden / d / head_dim)), d))
        for layers in range(1, 2 * l_ref + 1):
            # RoBERTa peers keep the reference's FFN width, as theirs (peer_generator.py
            # changes layers, heads and hidden_size only); causal peers keep its ratio
            ffn = (reference["intermediate_size"] if reference["arch"] in MASKED_ARCHS
                   else max(1, int(round(ratio * hidden))))
            p = {**reference, "hidden_size": hidden, "num_layers": layers, "num_heads": heads,
                 "intermediate_size": ffn}
            if reference["arch"] == "llama":
                p["num_kv_heads"] = heads
            p = ModelPreset(**p)  # built here from a checked reference: no parsing per shape
            grid.append((p, preset_parameters(p, vocab_size)))
    aspect_ref = math.log(l_ref / h_ref)
    peers = []
    for i in range(num_peers):
        target = n_ref / (i + 2)

        def err(c):
            return abs(math.log(c[1] / target))

        close = [c for c in grid if err(c) <= tolerance]
        if close:
            best = min(close, key=lambda c: (abs(math.log(c[0].num_layers / c[0].hidden_size) - aspect_ref),
                                             err(c), c[0].hidden_size, c[0].num_layers))
        else:
            best = min(grid, key=lambda c: (err(c), c[0].hidden_size, c[0].num_layers))
        peers.append(best[0])
    return peers


# ---------------------------------------------------------------------------------------
# The weight update


def val_step_size(it: int, *, warmup_iters: int, lr_decay_iters: int, step_size: float,
                  min_step_size: float) -> float:
    """eta for (0-based) step ``it``: ``get_lr(it, args, lr_type="val")`` of REF's utils.py."""
    if it < warmup_iters:
        return step_size * it / warmup_iters
    if it > lr_decay_iters:
        return min_step_size
    decay_ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_step_size + coeff * (step_size - min_step_size)


def mirror_descent(weights: torch.Tensor, val_ces: torch.Tensor, *, eta: float, num_batches: int,
                   grad_clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One update of REF's ``validate``: returns (new weights, the clamped gradient g).

    ``g_i = CE_i / num_batches`` (d/dw_i of their ``ensemble_loss``), clamped to
    ``[0, grad_clip]`` unless grad_clip is 0/None; ``w_i exp(-eta g_i)`` renormalised.
    """
    g = val_ces.double() / num_batches
    if grad_clip:
        g = g.clamp(0.0, grad_clip)
    scaled = weights.double() * torch.exp(-eta * g)
    return scaled / scaled.sum(), g


# ---------------------------------------------------------------------------------------
# The objective


class WMLObjective(Objective):
    """N peers trained together with weighted mutual learning (see the module docstring).

    Peers are named ``peer1`` ... ``peerN`` (modules, eval losses, the saved folders).
    """

    # keyword defaults: the schema's (WML_DEFAULTS; val_batch_size and grad_clip: the training ones)
    def __init__(self, peers, *, alpha: float, reduction: str = WML_DEFAULTS["kl_reduction"],
                 use_bilevel: bool = WML_DEFAULTS["use_bilevel"],
                 weight_update_frequency: int = WML_DEFAULTS["weight_update_frequency"],
                 step_size: float = WML_DEFAULTS["step_size"],
                 min_step_size: float = WML_DEFAULTS["min_step_size"],
                 num_batches: int = WML_DEFAULTS["num_batches"],
                 val_batches: int = WML_DEFAULTS["val_batches"],
                 val_batch_size: int = _TRAIN_DEFAULTS["batch_size"],
                 grad_clip: float | None = _TRAIN_DEFAULTS["grad_clip"], tokenizer_dir=None,
                 masked_vocab: int | None = None, seed: int = _TRAIN_DEFAULTS["seed"]):
        if not peers:
            raise UserError("wml: at least one peer is needed")
        # masked-LM peers (masked_vocab: the tokenizer's size): one masked batch for all
        self.mlm = None
        if masked_vocab is not None:
            from babydistill.train.masked_lm import MaskedLMObjective

            self.mlm = MaskedLMObjective(peers[0], masked_vocab, seed, name="peers")
        self.peers = list(peers)
        self.forward_peers = list(self.peers)  # what loss() calls: the peers, or DDP wrappers
        self.alpha, self.reduction = float(alpha), reduction
        self.use_bilevel, self.weight_update_frequency = bool(use_bilevel), int(weight_update_frequency)
        self.step_size, self.min_step_size = float(step_size), float(min_step_size)
        self.num_batches, self.val_batches = int(num_batches), int(val_batches)
        self.val_batch_size, self.grad_clip = int(val_batch_size), grad_clip
        self.tokenizer_dir = tokenizer_dir
        self.weights = torch.full((len(self.peers),), 1.0 / len(self.peers), dtype=torch.float64)
        self.val_position = 0  # validation batches consumed (they rotate over the dev chunks)
        self.history: list[dict] = []  # one row per weight update (wml_weights.csv)
        self.keep = "best"
        self.best_score, self.best_evals, self.last_evals = math.inf, {}, {}

    # -- what the trainer sees ---------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        return {f"peer{i + 1}": m for i, m in enumerate(self.peers)}

    def wrap(self, wrap) -> None:
        self.forward_peers = [wrap(m) for m in self.peers]

    def _device(self) -> torch.device:
        return next(self.peers[0].parameters()).device

    def prepare(self, batch: dict, step: int) -> dict:
        return self.mlm.prepare(batch, step) if self.mlm else batch

    def _inputs(self, batch: dict, step: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, labels) on the peers' device: next-token labels, or for masked peers the
        batch's masks (prepared ones; ``step`` None on an unprepared batch: the fixed eval masks)."""
        device = self._device()
        if self.mlm is None:
            ids = batch["input_ids"].to(device)
            return ids, next_token_labels(ids)
        if "labels" not in batch:
            batch = {**batch, **dict(zip(("input_ids", "labels"), self.mlm.masked(batch, step)))}
        return batch["input_ids"].to(device), batch["labels"].to(device)

    def _logits(self, model, ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids).logits if self.mlm else model(input_ids=ids, use_cache=False).logits

    def loss(self, batch: dict):
        ids, labels = self._inputs(batch)
        logits = [self._logits(m, ids) for m in self.forward_peers]
        # masked peers: CE on the masked positions, the KL over every position (theirs)
        kl_labels = torch.zeros_like(labels) if self.mlm else None
        total, ces = wml_loss(logits, labels, self.weights.to(ids.device), alpha=self.alpha,
                              reduction=self.reduction, kl_labels=kl_labels)
        logs = {f"ce{i + 1}": c for i, c in enumerate(ces)}
        logs.update({f"w{i + 1}": float(w) for i, w in enumerate(self.weights)})
        return total, logs

    @torch.no_grad()
    def eval_loss(self, batch: dict) -> dict:
        """Each peer's eval CE; masked peers: ``(mean over the fixed eval masks, count)``."""
        ids, labels = self._inputs(batch)
        if self.mlm is None:
            return {f"peer{i + 1}": ce_loss(self._logits(m, ids), labels).item()
                    for i, m in enumerate(self.peers)}
        n = int((labels != -100).sum())
        return {f"peer{i + 1}": (ce_loss(self._logits(m, ids), labels).item() if n else 0.0, n)
                for i, m in enumerate(self.peers)}

    def score(self, eval_losses: dict[str, float]) -> float:
        """The best peer's eval loss: it is the variant's model. Also remembers which."""
        s = min(eval_losses.values())
        self.last_evals = dict(eval_losses)
        if s < self.best_score:
            self.best_score, self.best_evals = s, dict(eval_losses)
        return s

    def state_dict(self) -> dict:
        return {"weights": self.weights.tolist(), "val_position": self.val_position,
                "history": self.history, "best_score": self.best_score,
                "best_evals": self.best_evals, "last_evals": self.last_evals}

    def load_state_dict(self, state: dict) -> None:
        self.weights = torch.tensor(state["weights"], dtype=torch.float64)
        self.val_position = state.get("val_position", 0)
        self.history = list(state.get("history", []))
        self.best_score = state.get("best_score", math.inf)
        self.best_evals, self.last_evals = state.get("best_evals", {}), state.get("last_evals", {})

    def on_step(self, step: int, trainer) -> None:
        """REF's ``train``: validate (and update w) after step ``it = step - 1`` when
        ``it % weight_update_frequency == 0``; eta from the step, as their get_lr."""
        self.keep = trainer.spec.keep
        it = step - 1
        data = getattr(trainer, "eval_data", None)
        if not self.use_bilevel or it % self.weight_update_frequency or data is None:
            return
        eta = val_step_size(it, warmup_iters=trainer.spec.warmup_steps,
                            lr_decay_iters=getattr(trainer, "total_steps", it), step_size=self.step_size,
                            min_step_size=self.min_step_size)
        autocast = getattr(trainer, "autocast", None)
        n = data.num_batches(self.val_batch_size)
        if n < 1:
            raise UserError(f"wml: fewer eval chunks than one validation batch of {self.val_batch_size}; "
                            "lower val_batch_size or raise data.eval_chunks")
        for _ in range(self.val_batches):
            # Whole batch on every rank (rank 0 of world 1): identical weights everywhere.
            batch = next(data.batches(0, self.val_batch_size, start_batch=self.val_position % n))
            self.val_position += 1
            self.update_weights(batch, eta, step=step, autocast=autocast)

    @torch.no_grad()
    def validation_ces(self, batch: dict | torch.Tensor, autocast=None) -> torch.Tensor:
        """Each peer's CE on a validation batch (eval mode, as REF's validate); masked
        peers: on the dev chunks' fixed eval masks (theirs re-masks each batch)."""
        ids, labels = self._inputs(batch if isinstance(batch, dict) else {"input_ids": batch})
        was_training = [m.training for m in self.peers]
        ctx = autocast() if autocast else contextlib.nullcontext()
        with ctx:
            ces = [ce_loss(self._logits(m.eval(), ids), labels) for m in self.peers]
        for m, t in zip(self.peers, was_training):
            m.train(t)
        return torch.stack([c.float() for c in ces]).cpu()

    def update_weights(self, batch: dict | torch.Tensor, eta: float, step: int = 0,
                       autocast=None) -> torch.Tensor:
        """One mirror-descent step on one validation batch (a dev batch, or its input ids
        for causal peers); returns the clamped g."""
        ces = self.validation_ces(batch, autocast)
        self.weights, g = mirror_descent(self.weights, ces, eta=eta, num_batches=self.num_batches,
                                         grad_clip=self.grad_clip)
        self.history.append({"step": step, "eta": eta, "weights": self.weights.tolist(),
                             "val_ce": ces.tolist(), "grad": g.tolist()})
        return g

    # -- the final models ------------------------------------------------------------------
    def best_peer(self) -> int:
        """1-based index of the peer the variant keeps (best eval loss)."""
        evals = self.best_evals if self.keep == "best" else self.last_evals
        if not evals:
            return 1
        return int(min(evals, key=evals.get).removeprefix("peer"))

    def weights_csv(self) -> str:
        """The weights' trajectory: a row at step 0 (1/N), then one per update."""
        n = len(self.peers)
        head = (["step", "update", "eta"] + [f"w{i + 1}" for i in range(n)]
                + [f"val_ce{i + 1}" for i in range(n)] + [f"g{i + 1}" for i in range(n)])
        lines = [",".join(head), ",".join(["0", "0", ""] + [repr(1.0 / n)] * n + [""] * 2 * n)]
        for k, r in enumerate(self.history, 1):
            cells = [r["step"], k, r["eta"], *r["weights"], *r["val_ce"], *r["grad"]]
            lines.append(",".join(str(c) for c in cells))
        return "\n".join(lines) + "\n"

    def save(self, out_dir: Path, best: dict[str, dict]) -> None:
        out_dir = Path(out_dir)
        for name, m in self.modules().items():
            m.load_state_dict(best[name])
            d = out_dir / "peers" / name.removeprefix("peer")
            m.save_pretrained(d)
            copy_tokenizer(self.tokenizer_dir, d)
        self.peers[self.best_peer() - 1].save_pretrained(out_dir)
        atomic_write_text(out_dir / "wml_weights.csv", self.weights_csv())


def build_wml_objective(spec: DistillSpec, vocab_size: int, tokenizer_dir=None,
                        where: str = "--spec") -> WMLObjective:
    """Peers (by hand or by the size search; seeded init) and the WML objective, from a
    parsed spec (checked and completed by babydistill.config.specs)."""
    from babydistill.models.build import build_model

    w, train = spec.wml, spec.train
    presets = list(w.peers) if w.peers else peer_presets(w.reference, vocab_size, w.num_peers)
    kinds = {is_masked(p) for p in presets}
    if len(kinds) > 1:
        raise UserError(f"{where}: wml peers mix masked and causal presets; all peers see one "
                        "batch, so they must all be masked LMs or all causal")
    masked = kinds == {True}
    torch.manual_seed(train.seed)
    models = [build_model(p, vocab_size, name=f"{where}.peers[{i}]") for i, p in enumerate(presets)]
    return WMLObjective(models, alpha=w.alpha, reduction=w.kl_reduction, use_bilevel=w.use_bilevel,
                        weight_update_frequency=w.weight_update_frequency,
                        step_size=float(w.step_size), min_step_size=float(w.min_step_size),
                        num_batches=w.num_batches, val_batches=w.val_batches,
                        val_batch_size=w.val_batch_size or train.batch_size,
                        grad_clip=train.grad_clip, tokenizer_dir=tokenizer_dir,
                        masked_vocab=vocab_size if masked else None, seed=train.seed)


# ---------------------------------------------------------------------------------------
# One peer as a model directory of its own


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the run's files are never rewritten in place: sharing is safe
    except OSError:
        shutil.copy2(src, dst)


def peer_metrics(run_metrics: Path, peer: int) -> list[dict]:
    """The run's metrics.csv rows seen from one peer: train rows' ``loss`` is the peer's CE
    (last batch of the logging window), eval rows' ``eval_loss`` the peer's eval CE, BLiMP
    rows' ``blimp_acc`` the peer's accuracy; other columns as they are."""
    with run_metrics.open(newline="") as f:
        rows = list(csv.DictReader(f))
    key = f"peer{peer}"
    out = []
    for r in rows:
        logs = json.loads(r.get("logs") or "{}")
        r = dict(r)
        if r.get("blimp_acc"):
            r["blimp_acc"] = logs.get(key, "")
        elif r.get("eval_loss"):
            r["eval_loss"] = logs.get(key, "")
        elif r.get("loss"):
            r["loss"] = logs.get(f"ce{peer}", "")
        r["logs"] = json.dumps({k: v for k, v in logs.items() if k in (key, f"ce{peer}", f"w{peer}")})
        out.append(r)
    return out


def export_peer(run_dir: Path, peer: int, out: Path) -> Path:
    """``run_dir/peers/<peer>`` as the model directory ``out``: the model and tokenizer files
    (hard links where possible), the peer's metrics.csv and a provenance.json."""
    from babydistill.config.provenance import record

    src = run_dir / "peers" / str(peer)
    if not (src / "config.json").is_file():
        have = sorted(p.name for p in (run_dir / "peers").iterdir()) if (run_dir / "peers").is_dir() else []
        raise UserError(f"{src}: no such peer (have: {', '.join(have) or 'none'}); "
                        "is --run-dir a finished wml run?")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for f in src.iterdir():
            if f.is_file():
                _link_or_copy(f, tmp / f.name)
        if (run_dir / "metrics.csv").is_file():
            rows = peer_metrics(run_dir / "metrics.csv", peer)
            with (tmp / "metrics.csv").open("w", newline="") as f:
                w = csv.DictWriter(f, list(rows[0]) if rows else ["step"])
                w.writeheader()
                w.writerows(rows)
        spec = {"wml_run": run_dir.name, "peer": peer}
        _export_peer_ledger(run_dir, peer, tmp)
        write_json(tmp / "provenance.json", record(Path(out), spec, [str(src)]))
    return Path(out)


def _export_peer_ledger(run_dir: Path, peer: int, tmp: Path) -> None:
    """The run's words-seen ledger (every peer sees every batch) as the peer's
    ``train_summary.json``, and the peer's part of each of the run's revisions as its own
    ``revisions/`` and ``hub.git`` (train.hub)."""
    from babydistill.common import read_json
    from babydistill.train.hub import REVISIONS, write_hub_repo

    summary = run_dir / "train_summary.json"
    if summary.is_file():
        run = read_json(summary)
        write_json(tmp / "train_summary.json",
                   {"name": tmp.name, "wml_run": run_dir.name, "peer": peer,
                    **{k: run[k] for k in ("steps", "epochs", "tokens", "ledger") if k in run}})
    revs = sorted((run_dir / REVISIONS).glob("*/revision.json"),
                  key=lambda f: read_json(f)["at_words"])
    if not revs:
        return
    for info in revs:
        dest = tmp / REVISIONS / info.parent.name
        shutil.copytree(info.parent / "peers" / str(peer), dest)
        for f in ("revision.json", "README.md"):
            shutil.copy2(info.parent / f, dest / f)
    write_hub_repo(tmp, [(f.parent.name, f"{f.parent.name}: step {read_json(f)['step']}, "
                          f"{read_json(f)['words_seen']} words seen") for f in revs])


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.distill.wml",
                                 description=__doc__.strip().splitlines()[0] + " This command "
                                 "exports one peer of a finished WML run as a model directory "
                                 "(training runs inside python -m babydistill.distill.student).")
    ap.add_argument("--run-dir", required=True, help="the wml run's model directory (holds peers/<i>/)")
    ap.add_argument("--peer", required=True, type=int, help="peer index, 1-based")
    ap.add_argument("--out", required=True, help="the peer's model directory")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    print(export_peer(Path(args.run_dir), args.peer, Path(args.out)))


if __name__ == "__main__":
    main()
