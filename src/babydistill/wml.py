"""When Babies Teach Babies: teacher-less weighted mutual learning (WML) of N peer students.

Owns the peer size search, :class:`WMLObjective` and its bi-level peer-weight update.

* Loss (babydistill.losses.wml_peer_loss): peer i minimises
  ``(1 - alpha) * CE_i + alpha * T^2 * sum_{j != i} w_j KL(p_j || p_i)`` with the targets
  ``p_j`` detached; the peers' losses are summed, so every peer trains at once.
* Peer weights ``w`` live on the simplex, start at ``1/N`` and, every ``outer_every``
  optimizer steps (``outer_loop: true``), take one mirror-descent (exponentiated
  gradient) step ``w <- w * exp(-mirror_lr * g) / Z`` on the validation loss of the
  weighted ensemble. What is differentiated: ``g = d/dw CE(sum_i w_i z_i, y)`` where
  ``z_i`` are the peers' logits on one fixed-size dev batch, with the peers' parameters
  held fixed (the first-order approximation of the bi-level hypergradient: the
  dependence of the peers' parameters on ``w`` through the inner training is dropped).
  The dev batches rotate over the eval chunks; every data-parallel rank uses the whole
  batch, so all ranks compute the same ``w``. The weights are objective state
  (checkpointed and restored on resume).
* Peers: ``peers`` presets by hand, or :func:`peer_presets` -- a deterministic size search
  for targets ``N/2, N/3, ...`` of the reference preset's parameter count ``N``.
* Saving: every peer at ``OUT/peers/<i>/`` (save_pretrained + tokenizer) and the best peer
  by eval loss at ``OUT`` itself (the variant's model).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .common import UserError
from .losses import ce_loss, next_token_labels, wml_peer_loss
from .train import Objective, copy_tokenizer

# ---------------------------------------------------------------------------------------
# Peer size search


def preset_param_count(preset: dict, vocab_size: int) -> int:
    """Exact parameter count of a preset (matches babydistill.models.build_model), no torch."""
    h, layers = preset["hidden_size"], preset["num_layers"]
    if preset["arch"] == "llama":
        kv = h // preset["num_heads"] * preset.get("num_kv_heads", preset["num_heads"])
        ffn = preset["intermediate_size"]
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * ffn + 2 * h  # q,o + k,v + mlp + 2 norms
        heads = 1 if preset.get("tie_word_embeddings", False) else 2
        return layers * per_layer + heads * vocab_size * h + h
    ffn = preset.get("intermediate_size") or 4 * h
    per_layer = (3 * h * h + 3 * h) + (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 4 * h
    heads = 1 if preset.get("tie_word_embeddings", True) else 2
    return layers * per_layer + heads * vocab_size * h + preset["max_position_embeddings"] * h + 2 * h


def peer_presets(reference: dict, vocab_size: int, num_peers: int, tolerance: float = 0.05) -> list[dict]:
    """Presets near N/2, N/3, ..., N/(num_peers+1) parameters, N = the reference's count.

    Grid: hidden in steps of half the reference's head size (at least 8) up to the
    reference's, heads = the divisor of hidden whose head size is closest to the
    reference's (so heads always divide hidden), layers 1..2x the reference's, the MLP
    keeps the reference's hidden:intermediate ratio, LLaMA peers use full multi-head
    attention. Among shapes within ``tolerance`` of the target, the one closest to the
    reference's depth:width ratio wins (a scaled-down reference, not a 1-layer embedding
    table); when none is that close, the closest count.
    """
    h_ref, l_ref, heads_ref = reference["hidden_size"], reference["num_layers"], reference["num_heads"]
    head_dim = h_ref // heads_ref
    ratio = reference.get("intermediate_size", 4 * h_ref) / h_ref
    n_ref = preset_param_count(reference, vocab_size)
    step = max(8, head_dim // 2)
    grid = []
    for hidden in range(step, h_ref + 1, step):
        heads = min((d for d in range(1, hidden + 1) if hidden % d == 0),
                    key=lambda d: (abs(math.log(hidden / d / head_dim)), d))
        for layers in range(1, 2 * l_ref + 1):
            p = {**reference, "hidden_size": hidden, "num_layers": layers, "num_heads": heads,
                 "intermediate_size": max(1, int(round(ratio * hidden)))}
            if reference["arch"] == "llama":
                p["num_kv_heads"] = heads
            grid.append((p, preset_param_count(p, vocab_size)))
    aspect_ref = math.log(l_ref / h_ref)
    peers = []
    for i in range(num_peers):
        target = n_ref / (i + 2)

        def err(c):
            return abs(math.log(c[1] / target))

        close = [c for c in grid if err(c) <= tolerance]
        if close:
            best = min(close, key=lambda c: (abs(math.log(c[0]["num_layers"] / c[0]["hidden_size"]) - aspect_ref),
                                             err(c), c[0]["hidden_size"], c[0]["num_layers"]))
        else:
            best = min(grid, key=lambda c: (err(c), c[0]["hidden_size"], c[0]["num_layers"]))
        peers.append(dict(best[0]))
    return peers


# ---------------------------------------------------------------------------------------
# The objective


class WMLObjective(Objective):
    """N peers trained together with weighted mutual learning (see the module docstring)."""

    def __init__(self, peers, *, alpha: float, temperature: float, outer_loop: bool = True,
                 outer_every: int = 100, mirror_lr: float = 0.1, reduction: str = "token",
                 val_batch_size: int = 32, tokenizer_dir=None):
        if not peers:
            raise UserError("wml: at least one peer is needed")
        self.peers = list(peers)
        self.alpha, self.temperature, self.reduction = float(alpha), float(temperature), reduction
        self.outer_loop, self.outer_every, self.mirror_lr = bool(outer_loop), int(outer_every), float(mirror_lr)
        self.val_batch_size = int(val_batch_size)
        self.tokenizer_dir = tokenizer_dir
        self.weights = torch.full((len(self.peers),), 1.0 / len(self.peers), dtype=torch.float64)
        self.outer_steps = 0
        self.keep = "best"
        self.best_score, self.best_evals, self.last_evals = math.inf, {}, {}

    # -- what the trainer sees ---------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        return {f"peer{i}": m for i, m in enumerate(self.peers)}

    def _device(self) -> torch.device:
        return next(self.peers[0].parameters()).device

    def loss(self, batch: dict):
        ids = batch["input_ids"].to(self._device())
        labels = next_token_labels(ids)
        logits = [m(input_ids=ids, use_cache=False).logits for m in self.peers]
        total, _, ces = wml_peer_loss(logits, labels, self.weights.to(ids.device), alpha=self.alpha,
                                      temperature=self.temperature, reduction=self.reduction)
        logs = {f"ce{i}": c for i, c in enumerate(ces)}
        logs.update({f"w{i}": float(w) for i, w in enumerate(self.weights)})
        return total, logs

    @torch.no_grad()
    def eval_loss(self, batch: dict) -> dict[str, float]:
        ids = batch["input_ids"].to(self._device())
        labels = next_token_labels(ids)
        return {f"peer{i}": ce_loss(m(input_ids=ids, use_cache=False).logits, labels).item()
                for i, m in enumerate(self.peers)}

    def score(self, eval_losses: dict[str, float]) -> float:
        """The best peer's eval loss: it is the variant's model. Also remembers which."""
        s = min(eval_losses.values())
        self.last_evals = dict(eval_losses)
        if s < self.best_score:
            self.best_score, self.best_evals = s, dict(eval_losses)
        return s

    def state_dict(self) -> dict:
        return {"weights": self.weights.tolist(), "outer_steps": self.outer_steps,
                "best_score": self.best_score, "best_evals": self.best_evals, "last_evals": self.last_evals}

    def load_state_dict(self, state: dict) -> None:
        self.weights = torch.tensor(state["weights"], dtype=torch.float64)
        self.outer_steps = state.get("outer_steps", 0)
        self.best_score = state.get("best_score", math.inf)
        self.best_evals, self.last_evals = state.get("best_evals", {}), state.get("last_evals", {})

    def on_step(self, step: int, trainer) -> None:
        self.keep = trainer.spec.get("keep", "best")
        if not self.outer_loop or step % self.outer_every or getattr(trainer, "eval_data", None) is None:
            return
        data = trainer.eval_data
        n = data.num_batches(self.val_batch_size)
        index = self.outer_steps % n
        # Whole batch on every rank (rank 0 of world 1): identical weights everywhere.
        batch = next(data.batches(0, self.val_batch_size, start_batch=index))
        self.mirror_step(batch["input_ids"])

    # -- the outer (bi-level) step -------------------------------------------------------
    def mirror_step(self, input_ids: torch.Tensor) -> torch.Tensor:
        """One exponentiated-gradient step on the weighted ensemble's dev CE; returns g."""
        ids = input_ids.to(self._device())
        labels = next_token_labels(ids)
        was_training = [m.training for m in self.peers]
        with torch.no_grad():
            for m in self.peers:
                m.eval()
            logits = torch.stack([m(input_ids=ids, use_cache=False).logits.float() for m in self.peers])
        for m, t in zip(self.peers, was_training):
            m.train(t)
        w = self.weights.to(logits.device, torch.float32).requires_grad_(True)
        ens = torch.einsum("n,nbtv->btv", w, logits)
        loss = F.cross_entropy(ens.reshape(-1, ens.size(-1)), labels.reshape(-1), ignore_index=-100)
        (g,) = torch.autograd.grad(loss, w)
        g = g.detach().double().cpu()
        # Mirror descent with the entropy mirror map, in log space for stability.
        logw = torch.log(self.weights) - self.mirror_lr * g
        self.weights = torch.softmax(logw, dim=0)
        self.outer_steps += 1
        return g

    # -- the final models ------------------------------------------------------------------
    def best_peer(self) -> int:
        evals = self.best_evals if self.keep == "best" else self.last_evals
        if not evals:
            return 0
        return int(min(evals, key=evals.get).removeprefix("peer"))

    def save(self, out_dir: Path, best: dict[str, dict]) -> None:
        out_dir = Path(out_dir)
        for i, m in enumerate(self.peers):
            m.load_state_dict(best[f"peer{i}"])
            d = out_dir / "peers" / str(i)
            m.save_pretrained(d)
            copy_tokenizer(self.tokenizer_dir, d)
        self.peers[self.best_peer()].save_pretrained(out_dir)


def build_wml_objective(spec: dict, vocab_size: int, tokenizer_dir=None, where: str = "--spec") -> WMLObjective:
    """Peers (by hand or by the size search; seeded init) and the WML objective, from a spec."""
    from .distill import check_kd_keys
    from .models import build_model

    keys = check_kd_keys({"kl_direction": "forward", "kl_reduction": "token", **spec}, where)
    peers_spec = spec.get("peers")
    if peers_spec:
        if not isinstance(peers_spec, list) or not all(isinstance(p, dict) for p in peers_spec):
            raise UserError(f"{where}: peers must be a list of model presets")
        presets = peers_spec
    else:
        ref = spec.get("reference")
        if not isinstance(ref, dict):
            raise UserError(f"{where}: wml needs 'reference' (a model preset) or 'peers'")
        n = spec.get("num_peers", 2)
        if n not in (1, 2, 4):
            raise UserError(f"{where}: num_peers must be 1, 2 or 4, got {n!r}")
        presets = peer_presets(ref, vocab_size, n)
    for i, p in enumerate(presets):
        if p.get("max_position_embeddings", 0) < spec["seq_length"]:
            raise UserError(f"{where}: peer {i} max_position_embeddings < seq_length {spec['seq_length']}")
    every = spec.get("outer_every", 100)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UserError(f"{where}: outer_every must be a positive integer, got {every!r}")
    lr = spec.get("mirror_lr", 0.1)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
        raise UserError(f"{where}: mirror_lr must be > 0, got {lr!r}")
    outer = spec.get("outer_loop", True)
    if not isinstance(outer, bool):
        raise UserError(f"{where}: outer_loop must be true or false, got {outer!r}")
    torch.manual_seed(int(spec["train"].get("seed", 42)))
    models = [build_model(p, vocab_size, name=f"{where}.peers[{i}]") for i, p in enumerate(presets)]
    train = spec["train"]
    return WMLObjective(models, alpha=keys["alpha"], temperature=keys["temperature"], outer_loop=outer,
                        outer_every=every, mirror_lr=float(lr), reduction=keys["reduction"],
                        val_batch_size=int(train.get("eval_batch_size") or train.get("batch_size", 32)),
                        tokenizer_dir=tokenizer_dir)


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "wml", "python -m babydistill.distill (objective: wml)")
