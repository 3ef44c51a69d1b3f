"""losses.py against hand-computed values and against the Baby Llama reference formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from babydistill.distill.losses import (
    IGNORE_INDEX,
    kd_loss,
    masked_kd_loss,
    next_token_labels,
    topk_kd_loss,
    wml_loss,
)

torch.set_num_threads(1)


def softmax(xs, t=1.0):
    m = max(x / t for x in xs)
    e = [math.exp(x / t - m) for x in xs]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


# B=2, T=2, V=3; the last position of each row has no target (IGNORE_INDEX).
S = [[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], [[0.0, 2.0, 0.0], [-1.0, 0.0, 1.0]]]
T1 = [[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]]
T2 = [[[0.0, 0.0, 0.0], [2.0, 1.0, 0.0]], [[1.0, 1.0, 1.0], [1.0, -1.0, 1.0]]]
LABELS = [[2, IGNORE_INDEX], [1, IGNORE_INDEX]]


def hand_kd(alpha, temp, direction, reduction):
    ce = []
    kls = []
    for b in range(2):
        for t in range(2):
            teacher = [(x + y) / 2 for x, y in zip(T1[b][t], T2[b][t])]  # raw-logit average
            ps, pt = softmax(S[b][t], temp), softmax(teacher, temp)
            k = kl(pt, ps) if direction == "forward" else kl(ps, pt)
            kls.append((k, LABELS[b][t] != IGNORE_INDEX))
            if LABELS[b][t] != IGNORE_INDEX:
                ce.append(-math.log(softmax(S[b][t])[LABELS[b][t]]))
    ce = sum(ce) / len(ce)
    if reduction == "batchmean":
        k = sum(v for v, _ in kls) / 2  # all positions, divided by B
    else:
        kept = [v for v, m in kls if m]
        k = sum(kept) / len(kept)
    return alpha * ce + (1 - alpha) * temp**2 * k


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("reduction", ["batchmean", "token"])
@pytest.mark.parametrize("alpha,temp", [(0.5, 2.0), (0.3, 1.0)])
def test_kd_loss_matches_hand_computation(direction, reduction, alpha, temp):
    got = kd_loss(
        torch.tensor(S), [torch.tensor(T1), torch.tensor(T2)], torch.tensor(LABELS),
        alpha=alpha, temperature=temp, direction=direction, reduction=reduction,
    )
    assert got.item() == pytest.approx(hand_kd(alpha, temp, direction, reduction), rel=1e-5)


def test_forward_and_reverse_differ_and_batchmean_counts_ignored_positions():
    args = (torch.tensor(S), [torch.tensor(T1)], torch.tensor(LABELS))
    f = kd_loss(*args, alpha=0.0, temperature=1.0, direction="forward")
    r = kd_loss(*args, alpha=0.0, temperature=1.0, direction="reverse")
    assert abs(f.item() - r.item()) > 1e-3
    bm = kd_loss(*args, alpha=0.0, temperature=1.0, reduction="batchmean")
    tok = kd_loss(*args, alpha=0.0, temperature=1.0, reduction="token")
    # batchmean sums both positions of a row / B; token averages the one labelled position.
    assert bm.item() > tok.item()


# A masked LM's labels: the original ids at the masked positions, IGNORE_INDEX elsewhere
# (babydistill.train.masked_lm); here (0, 1) and (1, 0) are masked.
MASKED = [[IGNORE_INDEX, 0], [1, IGNORE_INDEX]]


def hand_masked_kd(alpha, temp, direction, reduction):
    """CE and KL over the masked positions only; batchmean = their KL sum / B."""
    ces, kls = [], []
    for b in range(2):
        for t in range(2):
            if MASKED[b][t] == IGNORE_INDEX:
                continue
            teacher = [(x + y) / 2 for x, y in zip(T1[b][t], T2[b][t])]
            ps, pt = softmax(S[b][t], temp), softmax(teacher, temp)
            kls.append(kl(pt, ps) if direction == "forward" else kl(ps, pt))
            ces.append(-math.log(softmax(S[b][t])[MASKED[b][t]]))
    k = sum(kls) / (2 if reduction == "batchmean" else len(kls))
    return alpha * sum(ces) / len(ces) + (1 - alpha) * temp**2 * k


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("reduction", ["batchmean", "token"])
@pytest.mark.parametrize("alpha,temp", [(0.5, 2.0), (0.3, 1.0)])
def test_masked_kd_loss_matches_hand_computation(direction, reduction, alpha, temp):
    got = masked_kd_loss(torch.tensor(S), [torch.tensor(T1), torch.tensor(T2)], torch.tensor(MASKED),
                         alpha=alpha, temperature=temp, direction=direction, reduction=reduction)
    assert got.item() == pytest.approx(hand_masked_kd(alpha, temp, direction, reduction), rel=1e-5)
    # the unmasked positions count for nothing: change the logits there, same loss
    s2, t2 = torch.tensor(S), torch.tensor(T1)
    s2[0, 0], t2[1, 1] = torch.tensor([9.0, -3.0, 0.0]), torch.tensor([0.0, 7.0, -2.0])
    moved = masked_kd_loss(s2, [t2, torch.tensor(T2)], torch.tensor(MASKED), alpha=alpha,
                           temperature=temp, direction=direction, reduction=reduction)
    assert moved.item() == pytest.approx(got.item(), rel=1e-6)


def test_masked_kd_loss_with_nothing_masked_is_zero_with_gradients():
    s = torch.tensor(S, requires_grad=True)
    loss = masked_kd_loss(s, torch.tensor(T1), torch.full((2, 2), IGNORE_INDEX), alpha=0.5,
                          temperature=2.0, direction="reverse", reduction="token")
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(s.grad, torch.zeros_like(s))


def test_batchmean_reproduces_baby_llama_reference():
    """The reference: HF .loss on unshifted inputs + KLDivLoss(batchmean) on full [B,T,V] logits."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=32)
    student, teacher1, teacher2 = (LlamaForCausalLM(LlamaConfig(**cfg)) for _ in range(3))
    ids = torch.randint(0, 50, (3, 12))
    temp, alpha = 2.0, 0.5
    out = student(input_ids=ids, labels=ids)
    with torch.no_grad():
        avg = torch.stack([teacher1(input_ids=ids).logits, teacher2(input_ids=ids).logits]).mean(0)
    ref_kl = nn.KLDivLoss(reduction="batchmean")(
        F.log_softmax(out.logits / temp, dim=-1), F.softmax(avg / temp, dim=-1)
    ) * temp**2
    reference = alpha * out.loss + (1 - alpha) * ref_kl
    with torch.no_grad():
        t_logits = [teacher1(input_ids=ids).logits, teacher2(input_ids=ids).logits]
    ours = kd_loss(out.logits, t_logits, next_token_labels(ids), alpha=alpha, temperature=temp)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_topk_with_full_vocab_equals_dense_loss(direction):
    torch.manual_seed(1)
    s = torch.randn(2, 5, 7, requires_grad=True)
    t = torch.randn(2, 5, 7) * 2
    labels = next_token_labels(torch.randint(0, 7, (2, 5)))
    temp = 2.0
    logp = F.log_softmax(t, -1)
    vals, idx = logp.topk(7, dim=-1)
    rest = torch.full((2, 5), float("-inf"))
    dense = kd_loss(s, [t], labels, alpha=0.5, temperature=temp, direction=direction)
    sparse = topk_kd_loss(s, vals, idx, rest, labels, alpha=0.5, temperature=temp, direction=direction)
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-5)
    (g1,) = torch.autograd.grad(dense, s)
    (g2,) = torch.autograd.grad(sparse, s)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_topk_remainder_bucket_by_hand():
    """k=1 of V=3: buckets {kept token, everything else}, temperature applied before bucketing."""
    s, t, temp = [0.0, 1.0, 2.0], [3.0, 0.0, 1.0], 2.0
    pt, ps = softmax(t, temp), softmax(s, temp)
    pt_b, ps_b = [pt[0], pt[1] + pt[2]], [ps[0], ps[1] + ps[2]]
    expected = temp**2 * kl(pt_b, ps_b)  # alpha = 0: KL term only
    logp = F.log_softmax(torch.tensor(t), -1)
    rest = torch.logsumexp(logp[1:] / temp, -1)
    got = topk_kd_loss(
        torch.tensor([[s]]), logp[:1].view(1, 1, 1), torch.tensor([[[0]]]), rest.view(1, 1),
        torch.tensor([[1]]), alpha=0.0, temperature=temp, reduction="token",
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_wml_loss_by_hand():
    """One position, two peers: (1 - a)(w_a CE_a + w_b CE_b) + a (w_b KL(pb||pa) + w_a KL(pa||pb))
    (the authors' wml_loss; batchmean over B = 1 sequence of one position is the plain KL)."""
    a = torch.tensor([[[1.0, 0.0, -1.0]]], requires_grad=True)
    b = torch.tensor([[[0.0, 1.0, 0.5]]], requires_grad=True)
    labels = torch.tensor([[0]])
    w = torch.tensor([0.25, 0.75])
    alpha = 0.4
    total, ces = wml_loss([a, b], labels, w, alpha=alpha)
    pa, pb = softmax(a[0, 0].tolist()), softmax(b[0, 0].tolist())
    ce_a, ce_b = -math.log(pa[0]), -math.log(pb[0])
    expected = (1 - alpha) * (0.25 * ce_a + 0.75 * ce_b) + alpha * (0.75 * kl(pb, pa) + 0.25 * kl(pa, pb))
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert [c.item() for c in ces] == pytest.approx([ce_a, ce_b], rel=1e-5)
    # Targets are not detached: with alpha = 1, peer b still gets a gradient from KL(pb || pa).
    only_kl, _ = wml_loss([a, b], torch.tensor([[-100]]), w, alpha=1.0)
    (gb,) = torch.autograd.grad(only_kl, b)
    assert torch.count_nonzero(gb) > 0


V_PEAKED = 13


def naive_topk_loss(s, vals, idx, rest, labels, alpha, temp, direction, reduction):
    """The bucket loss written with plain autograd ops (slow, obviously right)."""
    z = s.float() / temp
    lse = torch.logsumexp(z, -1, keepdim=True)
    mask = torch.zeros_like(z, dtype=torch.bool).scatter(-1, idx, True)
    other = torch.logsumexp(z.masked_fill(mask, float("-inf")), -1, keepdim=True)
    log_s = torch.cat([z.gather(-1, idx), other], -1) - lse
    log_t = F.log_softmax(torch.cat([vals.float() / temp, rest.unsqueeze(-1)], -1), -1)
    a, b = (log_t, log_s) if direction == "forward" else (log_s, log_t)
    per_pos = (a.exp() * (a - b)).sum(-1)
    keep = (labels != IGNORE_INDEX).float()
    kl = per_pos.sum() / per_pos.size(0) if reduction == "batchmean" else (per_pos * keep).sum() / keep.sum()
    ce = F.cross_entropy(s.float().reshape(-1, s.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    return alpha * ce + (1 - alpha) * temp**2 * kl


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("reduction", ["batchmean", "token"])
@pytest.mark.parametrize("temp", [1.0, 2.0, 1.5])  # 1, 2 and the rest: three code paths
def test_topk_loss_and_gradient_match_naive_autograd(direction, reduction, temp):
    torch.manual_seed(2)
    V, k = 11, 3
    s = (torch.randn(3, 6, V) * 2).requires_grad_(True)
    logp = F.log_softmax(torch.randn(3, 6, V) * 3, -1)
    vals, idx = logp.topk(k, dim=-1)
    rest = torch.logsumexp((logp / temp).scatter(-1, idx, float("-inf")), -1)
    labels = torch.randint(0, V, (3, 6))
    labels[0, 2] = labels[1, 5] = labels[2, 5] = IGNORE_INDEX
    kw = dict(alpha=0.3, temperature=temp, direction=direction, reduction=reduction)
    ours = topk_kd_loss(s, vals, idx, rest, labels, **kw)
    ref = naive_topk_loss(s, vals, idx, rest, labels, 0.3, temp, direction, reduction)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    (g1,) = torch.autograd.grad(ours, s)
    (g2,) = torch.autograd.grad(ref, s)
    assert torch.allclose(g1, g2, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("sure_of", [0, V_PEAKED - 1])
def test_topk_loss_exact_for_a_very_peaked_student(direction, sure_of):
    """At T = 2 the fast path takes sqrt(softmax(z)); where softmax underflows (logit gaps
    beyond ~90) the remainder mass must still be the exact, tiny, non-zero one (student sure
    of a kept token), and the kept log-probs exact too (sure of a token that is not kept)."""
    torch.manual_seed(4)
    V, k = V_PEAKED, 3
    s = torch.randn(2, 5, V) * 2
    s[0, :, sure_of] += 150.0  # a student sure of one token: every other p1 underflows in float32
    s.requires_grad_(True)
    t = torch.randn(2, 5, V) * 2
    t[..., 0] += 20.0  # the teacher keeps token 0 ...
    t[..., V - 1] -= 20.0  # ... and never token V - 1
    logp = F.log_softmax(t, -1)
    vals, idx = logp.topk(k, dim=-1)
    rest = torch.logsumexp((logp / 2.0).scatter(-1, idx, float("-inf")), -1)
    labels = next_token_labels(torch.randint(0, V, (2, 5)))
    kw = dict(alpha=0.5, temperature=2.0, direction=direction, reduction="token")
    ours = topk_kd_loss(s, vals, idx, rest, labels, **kw)
    ref = naive_topk_loss(s, vals, idx, rest, labels, 0.5, 2.0, direction, "token")
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    (g1,) = torch.autograd.grad(ours, s)
    (g2,) = torch.autograd.grad(ref, s)
    assert torch.allclose(g1, g2, atol=1e-6, rtol=1e-4)


def test_topk_loss_accepts_bf16_logits():
    torch.manual_seed(3)
    s = torch.randn(2, 4, 9).to(torch.bfloat16).requires_grad_(True)
    logp = F.log_softmax(torch.randn(2, 4, 9), -1)
    vals, idx = logp.topk(4, dim=-1)
    rest = torch.logsumexp(logp.scatter(-1, idx, float("-inf")), -1)
    labels = next_token_labels(torch.randint(0, 9, (2, 4)))
    loss = topk_kd_loss(s, vals, idx, rest, labels, alpha=0.5, temperature=1.0)
    loss.backward()
    assert s.grad.dtype == torch.bfloat16 and torch.isfinite(s.grad.float()).all()
    ref = naive_topk_loss(s.detach().float(), vals, idx, rest, labels, 0.5, 1.0, "forward", "batchmean")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
