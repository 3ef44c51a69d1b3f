"""The masked-LM objective (issue 23 item 2): masking as the WML authors', seeded per chunk
and step, the eval loss over masked positions, a pretrain run of arch roberta end to end."""

from __future__ import annotations

import csv

import pytest
import torch

from babydistill.models.build import build_model
from babydistill.train.masked_lm import MaskedLMObjective, Masker, mask_seed
from babydistill.train.trainer import Trainer

from test_pretrain import TRAIN, args, tiny_corpus
from test_train import SPEC, VOCAB, data

torch.set_num_threads(1)

ROBERTA = {"arch": "roberta", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
           "intermediate_size": 64, "max_position_embeddings": 34}  # dropout 0.1 (default)


def authors_mask(x: torch.Tensor, mask_token_id: int, vocab_size: int, generator):
    """AI-DA-STC/generative-ai-research-babylm@701a0c8 src/WML_distill/utils.py, get_batch's
    MLM branch, transcribed (its torch.rand/randint given a generator)."""
    masked_x, labels = x.clone(), x.clone()
    mask = torch.rand(x.shape, generator=generator) < 0.15
    rand = torch.rand(x.shape, generator=generator)
    masked_x[mask & (rand < 0.8)] = mask_token_id
    random_tokens = torch.randint(vocab_size, x.shape, generator=generator)
    pick = mask & (rand >= 0.8) & (rand < 0.9)
    masked_x[pick] = random_tokens[pick]
    labels[~mask] = -100
    return masked_x, labels


def shares(ids, inputs, labels, mask_id):
    """(chosen fraction, and of the chosen: masked, randomised, kept), plus checks that
    hold for any masking: labels are the ids where chosen, -100 and untouched elsewhere."""
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])
    n = chosen.sum().item()
    as_mask = (inputs[chosen] == mask_id).sum().item()
    kept = (inputs[chosen] == ids[chosen]).sum().item()
    return n / ids.numel(), as_mask / n, (n - as_mask - kept) / n, kept / n


def test_masking_rates_are_the_authors_15_and_80_10_10():
    vocab = 1000  # the mask is id 1000; random tokens come from all 1001 ids
    ids = torch.randint(3, vocab, (400, 128), generator=torch.Generator().manual_seed(0))
    inputs, labels = Masker(vocab).mask(ids, [mask_seed(1, r) for r in range(len(ids))])
    ours = shares(ids, inputs, labels, vocab)
    theirs = shares(ids, *authors_mask(ids, vocab, vocab + 1, torch.Generator().manual_seed(0)),
                    vocab)
    for name, got, want, tol in zip(("chosen", "mask", "random", "kept"), ours, theirs,
                                    (0.005, 0.02, 0.015, 0.015)):
        assert got == pytest.approx(want, abs=tol), (name, ours, theirs)
    assert ours[0] == pytest.approx(0.15, abs=0.005) and ours[1] == pytest.approx(0.8, abs=0.015)
    replaced = inputs[(labels != -100) & (inputs != ids) & (inputs != vocab)]
    assert replaced.min() >= 0 and replaced.max() <= vocab and replaced.unique().numel() > 500


def test_masks_are_fixed_by_seed_step_and_chunk_not_by_the_batch():
    obj = MaskedLMObjective(torch.nn.Linear(1, 1), vocab_size=64, seed=3)
    ids = torch.randint(3, 64, (6, 32), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "chunk_index": torch.arange(10, 16)}
    a = obj.prepare(batch, 0)
    assert torch.equal(batch["input_ids"], ids)  # the batch itself is left as it was
    alone = obj.prepare({"input_ids": ids[4:5], "chunk_index": torch.tensor([14])}, 0)
    assert torch.equal(alone["input_ids"], a["input_ids"][4:5])
    assert torch.equal(alone["labels"], a["labels"][4:5])
    assert torch.equal(obj.prepare(batch, 0)["labels"], a["labels"])  # no hidden RNG stream
    torch.manual_seed(123)  # nor the global one
    assert torch.equal(obj.prepare(batch, 0)["labels"], a["labels"])
    assert not torch.equal(obj.prepare(batch, 1)["labels"], a["labels"])  # a new mask each step
    eval_mask = obj.masked(batch, None)[1]
    assert not torch.equal(eval_mask, a["labels"]) and torch.equal(obj.masked(batch, None)[1], eval_mask)
    other = MaskedLMObjective(torch.nn.Linear(1, 1), vocab_size=64, seed=4)
    assert not torch.equal(other.masked(batch, None)[1], eval_mask)


def test_the_loss_is_the_authors_cross_entropy_on_masked_positions_only():
    obj = mlm_objective()
    ids = torch.randint(3, VOCAB, (4, 16), generator=torch.Generator().manual_seed(2))
    batch = obj.prepare({"input_ids": ids, "chunk_index": torch.arange(4)}, 0)
    obj.model.eval()
    loss, _ = obj.loss(batch)
    logits = obj.model(input_ids=batch["input_ids"]).logits
    want = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)),
                                             batch["labels"].view(-1), ignore_index=-100)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    hf = obj.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    assert loss.item() == pytest.approx(hf.item(), rel=1e-6)
    none = {**batch, "labels": torch.full_like(ids, -100)}
    assert obj.loss(none)[0].item() == 0.0  # nothing masked: 0, not NaN
    with pytest.raises(ValueError, match="prepare"):
        obj.loss({"input_ids": ids})


def mlm_objective(seed=0):
    torch.manual_seed(seed)
    return MaskedLMObjective(build_model(ROBERTA, VOCAB), VOCAB, seed=SPEC["seed"])


def test_eval_loss_is_the_mean_over_masked_positions_whatever_eval_batch_size():
    tr, ev = data()
    got = {}
    for bs in (7, 40):
        t = Trainer({**SPEC, "eval_batch_size": bs}, mlm_objective(), tr, ev)
        got[bs] = t.evaluate()["model"]
    assert got[7] == pytest.approx(got[40], rel=1e-5)
    # by hand: one pass over the whole eval set, CE summed over masked positions
    obj = mlm_objective()
    obj.model.eval()
    batch = next(ev.batches(0, len(ev)))
    inputs, labels = obj.masked(batch, None)
    with torch.no_grad():
        logits = obj.model(input_ids=inputs).logits
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                           ignore_index=-100, reduction="sum")
    assert got[40] == pytest.approx(ce.item() / (labels != -100).sum().item(), rel=1e-5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("corpus"))


def mlm_spec(**train):
    return {"name": "tiny-mlm", "model": ROBERTA, "train": {**TRAIN, **train},
            "seq_length": 32, "eval_chunks": 16}


def test_roberta_pretrain_end_to_end_loads_as_a_masked_lm(corpus, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from babydistill.train import pretrain

    stage_tok = (corpus / "tok" / "tokenizer.json").read_bytes()
    summary = pretrain.main(args(corpus, tmp_path / "m", tmp_path / "ck", mlm_spec()))
    out = tmp_path / "m"
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForMaskedLM.from_pretrained(out).eval()
    vocab = summary["vocab_size"]
    assert (summary["objective"], summary["mask_token_id"], tok.mask_token_id) == ("mlm", vocab, vocab)
    assert model.config.vocab_size == len(tok) == vocab + 1
    assert (corpus / "tok" / "tokenizer.json").read_bytes() == stage_tok
    from babydistill.common import UserError
    from babydistill.models.build import check_weights

    check_weights(out, vocab + 1, len(tok))  # RoBERTa's embedding is found and fits
    with pytest.raises(UserError, match=f"vocab_size {vocab}, but the weights' embedding has {vocab + 1} rows"):
        check_weights(out, vocab)
    with (out / "metrics.csv").open() as f:
        evals = [float(r["eval_loss"]) for r in csv.DictReader(f) if r["eval_loss"]]
    assert len(evals) == 2 and evals[-1] < evals[0]  # eval_every 0: once per epoch
    # it fills a masked word of the training text far better than chance
    ids = tok("the cat sat on a mat . a dog ran to the park")["input_ids"]
    losses = []
    for i in range(len(ids)):
        x = torch.tensor([ids[:i] + [tok.mask_token_id] + ids[i + 1:]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=x).logits[0, i], -1)
        losses.append(-logp[ids[i]].item())
    assert sum(losses) / len(losses) < 0.6 * torch.log(torch.tensor(float(len(tok)))).item()


def test_roberta_blimp_curve_scores_by_pseudo_log_likelihood(tmp_path):
    """blimp_every_epoch on a masked LM: the curve calls the fast scorer's masked path
    (eval.pll) with the stage's tokenizer plus the mask token, as the saved folder has it."""
    import json

    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from babydistill.eval.scorer import blimp_accuracy
    from test_train import CURVE, ROBERTA as TINY, objective, tiny_suite, train, word_tokenizer

    tok, suite = word_tokenizer(tmp_path / "tok"), tiny_suite(tmp_path / "suite")
    stage_tok = (tok / "tokenizer.json").read_bytes()
    tr, ev = data()
    summary = train(CURVE, objective(TINY), tr, ev, tmp_path / "out", tmp_path / "ck", tok,
                    blimp_suite=suite)
    curve = json.loads((tmp_path / "out" / "blimp_curve.json").read_text())
    spe = tr.num_batches(16)
    assert [(p["step"], p["module"]) for p in curve["points"]] == \
        [(0, "model"), (spe, "model"), (2 * spe, "model")]
    out = tmp_path / "out"
    want = blimp_accuracy(AutoModelForMaskedLM.from_pretrained(out), AutoTokenizer.from_pretrained(out),
                          suite)
    assert curve["points"][-1]["accuracy"] == want["accuracy"]
    assert curve["points"][-1]["categories"] == want["categories"]
    assert summary["blimp_eval_s"] > 0
    assert (tok / "tokenizer.json").read_bytes() == stage_tok  # the stage's files untouched
