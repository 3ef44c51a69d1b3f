"""Distillation losses: logit-averaged teacher KD (forward / reverse KL), the WML peer
loss and the top-k sparse-target loss used with the teacher cache; and the checks of
the loss keys of a spec (alpha, temperature, kl_direction, kl_reduction).

Conventions shared by every function here:

* logits are ``[B, T, V]`` and ``labels`` ``[B, T]`` are next-token targets already
  aligned with them (``labels[:, t]`` is the token after position ``t``; the last
  position has no target and holds ``IGNORE_INDEX``) -- see :func:`next_token_labels`.
* the CE term is the mean over non-ignored positions (what a HF model's ``.loss`` is).
* ``reduction="batchmean"`` reproduces the Baby Llama reference exactly:
  ``nn.KLDivLoss(reduction="batchmean")`` on ``[B, T, V]`` tensors sums over every
  position and the vocabulary and divides by ``B`` -- ignored positions are NOT masked
  (the reference passes the full, unshifted logits). ``reduction="token"`` is the mean
  over non-ignored positions, so the KL is on the same per-token scale as the CE.
* the KL term is scaled by ``T**2`` (Hinton et al.; the reference does the same).

All maths runs in float32 whatever the logits' dtype (bf16 autocast on GPU).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F



IGNORE_INDEX = -100
REDUCTIONS = ("batchmean", "token")
DIRECTIONS = ("forward", "reverse")
# A finite stand-in for log(0): keeps 0 * log-ratio terms at 0 instead of NaN.
LOG_ZERO = -1.0e4


def next_token_labels(input_ids: torch.Tensor) -> torch.Tensor:
    """Targets aligned with the logits: input_ids shifted left, last position ignored."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = input_ids[:, 1:]
    return labels


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over non-ignored positions."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


def average_logits(teacher_logits: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """The ensemble teacher: mean of the RAW logits (before any softmax), as in Baby Llama."""
    if isinstance(teacher_logits, torch.Tensor):
        return teacher_logits.float()
    if len(teacher_logits) == 1:
        return teacher_logits[0].float()
    return torch.stack([t.float() for t in teacher_logits]).mean(dim=0)


def _check(reduction: str, direction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def reduce_positions(per_pos: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
    """[B, T] per-position values -> scalar, by ``batchmean`` (sum / B) or ``token``."""
    if reduction == "batchmean":
        return per_pos.sum() / per_pos.size(0)
    mask = (labels != IGNORE_INDEX).to(per_pos.dtype)
    return (per_pos * mask).sum() / mask.sum().clamp(min=1.0)


def _kl_rows(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) summed over the last dim, given (finite) log-probs."""
    # log-probs are finite (log_softmax of finite logits, or clamped at LOG_ZERO), so a zero
    # probability contributes exactly 0 here.
    return (logp.exp() * (logp - logq)).sum(-1)


def kl_per_position(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, direction: str
) -> torch.Tensor:
    """[B, T] KL at temperature T: forward KL(teacher || student), reverse KL(student || teacher)."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return _kl_rows(log_t, log_s) if direction == "forward" else _kl_rows(log_s, log_t)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: Sequence[torch.Tensor] | torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    direction: str = "forward",
    reduction: str = "batchmean",
    return_parts: bool = False,
    labelled_only: bool = False,
):
    """alpha * CE(student, labels) + (1 - alpha) * T^2 * KL, teachers logit-averaged.

    With ``return_parts`` also returns ``(ce, kl)`` (detached) for logging. ``labelled_only``
    (masked LMs, :func:`masked_kd_loss`): the KL term, too, sees only the labelled positions,
    and CE over none of them is 0, not NaN.
    """
    _check(reduction, direction)
    teacher = average_logits(teacher_logits)
    if teacher.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher.shape)} != student {tuple(student_logits.shape)}")
    kl_pos = kl_per_position(student_logits, teacher, temperature, direction)
    if labelled_only:
        chosen = (labels != IGNORE_INDEX).to(torch.float32)
        ce_sum = F.cross_entropy(student_logits.float().flatten(0, 1), labels.flatten(),
                                 ignore_index=IGNORE_INDEX, reduction="sum")
        ce = ce_sum / chosen.sum().clamp(min=1.0)
        kl_pos = kl_pos * chosen
    else:
        ce = ce_loss(student_logits, labels)
    kl = reduce_positions(kl_pos, labels, reduction)
    loss = alpha * ce + (1.0 - alpha) * temperature**2 * kl
    return (loss, ce.detach(), kl.detach()) if return_parts else loss


def masked_kd_loss(student_logits, teacher_logits, labels, **kw):
    """:func:`kd_loss` for masked LMs: ``labels`` are the masked positions' original ids
    (IGNORE_INDEX elsewhere, babydistill.train.masked_lm), and both terms see those
    positions only. CE: the sum over masked positions / their count (0, not NaN, with none,
    as the MLM objective's). KL: per masked position, then ``batchmean`` = the sum / B,
    ``token`` = the mean over masked positions. Elementwise masking, no boolean indexing:
    no GPU sync per step.
    """
    return kd_loss(student_logits, teacher_logits, labels, labelled_only=True, **kw)


# Rows whose tempered remainder mass (unnormalised, see _BucketKD) is below this may have
# lost it to float32 underflow of softmax(z) (below ~1e-38 before the square root): they are
# recomputed in the log domain, so the fast path stays exact for very confident students.
_TINY_REST = 2.0**-60
_TINY_P = 1e-20  # below this, log p1 from softmax is no longer trusted for logsumexp(z)


class _BucketKD(torch.autograd.Function):
    """Per position: the KL between the teacher's and the student's k + 1 bucket
    distributions at temperature T, and the student's next-token CE (at T = 1).

    Hand-written backward so the full-vocabulary work is a few fused passes instead of
    autograd's chain of logsumexp / scatter copies and a separate CE graph: this is what
    keeps a cached distillation step close to a plain one (benchmarks/distill_step.py).
    The student enters only through p1 = softmax(z) and its unnormalised tempered form
    e = p1^(1/T): at T = 1 e = p1, at T = 2 e = sqrt(p1) (a square root instead of an exp;
    p1 = e*e again in backward), other T exp(log p1 / T). Log-probs at the kept tokens and
    the label come from the logits (z - logsumexp z, with logsumexp z = z_j - log p1_j at the
    best kept token j), never from log(p1) itself, so they stay exact however small p1 is.
    Gradients w.r.t. s = z / T (p = softmax(s), P_b the student's bucket masses, q_b the
    teacher's): forward KL(q||P): kept v: p_v - q_v; other v: p_v (1 - q_rest / P_rest);
    reverse KL(P||q): p_v (r_b(v) - sum_b P_b r_b) with r_b = log P_b - log q_b;
    and the CE's w.r.t. z: softmax(z) - onehot(label).
    """

    @staticmethod
    def forward(ctx, logits, idx, log_q, labels, temperature, reverse):
        valid = labels != IGNORE_INDEX
        safe_labels = labels.clamp(min=0).unsqueeze(-1)
        z = logits.float()
        p1 = torch.softmax(z, dim=-1)
        # logsumexp(z) without another full pass: z_j - log p1_j at the kept token the student
        # likes best (softmax is accurate to a few ulp relative wherever p1 is a normal float);
        # rows where even that p1 is tiny take the full logsumexp.
        p_kept, j = p1.gather(-1, idx).max(-1, keepdim=True)
        lse = z.gather(-1, idx.gather(-1, j)) - torch.log(p_kept)
        small = (p_kept < _TINY_P).squeeze(-1)
        if small.any():
            lse[small] = torch.logsumexp(z[small], dim=-1, keepdim=True)
        ce_pos = (lse - z.gather(-1, safe_labels)).squeeze(-1) * valid
        kept = (z.gather(-1, idx) - lse) / temperature  # log of e below, at the kept tokens
        if temperature == 1.0:
            e, mode = p1, "one"
        elif temperature == 2.0:
            e, mode = p1.sqrt_(), "square"  # in place: p1 = e * e in backward
        else:
            e, mode = (z - lse).mul_(1.0 / temperature).exp_(), "general"
        zero = torch.zeros(idx.shape, dtype=e.dtype, device=e.device)
        e.scatter_(-1, idx, zero)  # keep only the mass outside the kept tokens
        rest = e.sum(-1, keepdim=True)
        if mode == "square":
            tiny = (rest < _TINY_REST).squeeze(-1) & (idx.size(-1) < e.size(-1))
            if tiny.any():  # exact e for those rows (they are rare: a very peaked student)
                exact = ((z[tiny] - lse[tiny]) / temperature).exp_()
                e[tiny] = exact.scatter_(-1, idx[tiny], zero[tiny])
                rest = e.sum(-1, keepdim=True)
        log_e = torch.cat([kept, torch.log(rest)], dim=-1)  # -inf rest when every token is kept
        log_z = torch.logsumexp(log_e, dim=-1, keepdim=True)  # no cancellation: kept + rest
        log_p = (log_e - log_z).clamp(min=LOG_ZERO)
        kl_pos = _kl_rows(log_p, log_q) if reverse else _kl_rows(log_q, log_p)
        ctx.save_for_backward(e, p1 if mode == "general" else None, idx, kept, rest, log_p, log_q,
                              log_z, safe_labels, valid)
        ctx.temperature, ctx.reverse, ctx.in_dtype, ctx.mode = temperature, reverse, logits.dtype, mode
        return kl_pos, ce_pos

    @staticmethod
    def backward(ctx, grad_kl, grad_ce):
        e, p1, idx, kept, rest_e, log_p, log_q, log_z, labels, valid = ctx.saved_tensors
        big_p, q = log_p.exp(), log_q.exp()
        g_kl = grad_kl.unsqueeze(-1) / ctx.temperature  # d s / d z = 1 / T
        g_ce = (grad_ce * valid).unsqueeze(-1)
        inv_z = torch.exp(-log_z)  # e * inv_z = p outside the kept tokens
        # rest_mult * e: the KL gradient outside the kept tokens
        if ctx.reverse:
            r = log_p - log_q
            coef = r - (big_p * r).sum(-1, keepdim=True)
            kept_grad, rest_mult = big_p[..., :-1] * coef[..., :-1], coef[..., -1:] * inv_z * g_kl
        else:
            kept_grad = big_p[..., :-1] - q[..., :-1]
            # p_v (1 - q_rest / P_rest) = e_v (1/Z - q_rest / rest_e): no division by a
            # normalised (possibly underflowed) P_rest
            rest_mult = torch.where(rest_e > 0, inv_z - q[..., -1:] / rest_e.clamp(min=1e-38),
                                    torch.zeros_like(rest_e)) * g_kl
        # The saved buffers are reused in place: backward runs once.
        if ctx.mode == "one":  # softmax(z) = p, so the CE gradient folds into the same pass
            grad = e.mul_(rest_mult + g_ce * inv_z)
            grad.scatter_(-1, idx, kept_grad * g_kl + big_p[..., :-1] * g_ce)
        elif ctx.mode == "square":  # e (m + e g_ce) = m e + p1 g_ce outside the kept tokens
            grad = torch.addcmul(rest_mult, e, g_ce).mul_(e)
            p1_kept = torch.exp(kept * ctx.temperature)
            grad.scatter_(-1, idx, kept_grad * g_kl + p1_kept * g_ce)
        else:
            grad = e.mul_(rest_mult)
            grad.scatter_(-1, idx, kept_grad * g_kl)
            grad.addcmul_(p1, g_ce)
        grad.scatter_add_(-1, labels, -g_ce)
        return grad.to(ctx.in_dtype), None, None, None, None, None


def topk_kd_loss(
    student_logits: torch.Tensor,
    topk_logprobs: torch.Tensor,
    topk_index: torch.Tensor,
    rest_logit: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    direction: str = "forward",
    reduction: str = "batchmean",
    return_parts: bool = False,
):
    """kd_loss against sparse teacher targets: k kept tokens + one remainder bucket.

    ``topk_logprobs`` [B, T, k]: the teacher's log-probs at T=1 of its top-k tokens
    (``topk_index`` [B, T, k]); ``rest_logit`` [B, T]: ``logsumexp`` over the NOT kept
    tokens of ``teacher_logprob / temperature`` (LOG_ZERO or -inf when k = V). Both
    distributions are coarse-grained onto the same k + 1 buckets (the kept tokens, and
    everything else as one bucket) and the KL is taken between those: exact probability
    mass, no renormalisation, and identical to the full KL when k = V.
    """
    _check(reduction, direction)
    t_bucket = torch.cat(
        [topk_logprobs.float() / temperature, rest_logit.float().clamp(min=LOG_ZERO).unsqueeze(-1)], dim=-1
    )
    log_t = F.log_softmax(t_bucket, dim=-1)
    kl_pos, ce_pos = _BucketKD.apply(student_logits, topk_index.long(), log_t, labels,
                                     float(temperature), direction == "reverse")
    ce = ce_pos.sum() / (labels != IGNORE_INDEX).sum().clamp(min=1)
    kl = reduce_positions(kl_pos, labels, reduction)
    loss = alpha * ce + (1.0 - alpha) * temperature**2 * kl
    return (loss, ce.detach(), kl.detach()) if return_parts else loss


def wml_loss(
    peer_logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    weights: torch.Tensor,
    *,
    alpha: float,
    reduction: str = "batchmean",
    kl_labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Weighted mutual learning, as ``wml_loss`` (distillation_method "mutual") in
    AI-DA-STC/generative-ai-research-babylm ``src/WML_distill/utils.py``@701a0c8::

        (1 - alpha) * sum_i w_i CE_i + alpha * sum_i sum_{j != i} w_j KL(p_j || p_i)

    with ``KL(p_j || p_i) = F.kl_div(log p_i, log p_j, log_target=True,
    reduction="batchmean")`` on ``[B, T, V]`` log-probs: summed over positions and the
    vocabulary and divided by ``B`` (``reduction="token"``: the mean over target positions
    instead). No temperature; the targets ``p_j`` are NOT detached, so each KL term trains
    both peers of the pair, as in the reference. The weights are constants here (they are
    learnt on validation batches, babydistill.distill.wml). ``kl_labels``: the positions
    ``reduction="token"`` averages the KL over, when not ``labels``'s (masked peers: every
    position, as theirs, while the CE sees the masked ones). Returns (total, per-peer CE
    detached).
    """
    _check(reduction, "forward")
    w = weights.detach().float()
    log_p = [F.log_softmax(z.float(), dim=-1) for z in peer_logits]
    ces = [ce_loss(z, labels) for z in peer_logits]
    total_ce = sum(w[i] * ce for i, ce in enumerate(ces))
    # The N(N-1) KL terms in N passes over the vocabulary: with S = sum_i log p_i,
    #   sum_{i != j} KL(p_j || p_i) = sum_v p_j ((N - 1) log p_j - (S - log p_j))
    #                              = sum_v p_j (N log p_j - S).
    # Both reductions are linear in the per-position values, so the weighted sum is taken
    # per position first (batchmean: F.kl_div's sum / B, as in the reference).
    n, log_sum = len(log_p), sum(log_p)
    per_pos = sum(w[j] * (lp.exp() * (n * lp - log_sum)).sum(-1) for j, lp in enumerate(log_p))
    total_kl = reduce_positions(per_pos, labels if kl_labels is None else kl_labels, reduction)
    total = (1.0 - alpha) * total_ce + alpha * total_kl
    return total, [ce.detach() for ce in ces]


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "distill.losses", "python -m babydistill.distill.student")
