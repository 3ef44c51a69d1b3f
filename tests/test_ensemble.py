"""ensemble.py: the saved ensemble loads offline through AutoModelForCausalLM and averages logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from babydistill.distill.ensemble import CODE_FILE, main as ensemble_main
from babydistill.models.build import build_model

torch.set_num_threads(1)
V = 40
PRESETS = [
    {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32,
     "max_position_embeddings": 64},
    {"arch": "gpt2", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "max_position_embeddings": 32},
]


def save_tokenizer(d):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, V)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(d)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    d = tmp_path_factory.mktemp("ens")
    dirs = []
    for i, p in enumerate(PRESETS):
        torch.manual_seed(i)
        build_model(p, V).save_pretrained(d / f"m{i}")
        save_tokenizer(d / f"m{i}")
        dirs.append(d / f"m{i}")
    return dirs


def test_loaded_ensemble_averages_member_logits(members, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "ens"
    ensemble_main(["--teacher", str(members[0]), "--teacher", str(members[1]), "--out", str(out)])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["auto_map"]["AutoModelForCausalLM"].endswith("EnsembleForCausalLM")
    assert cfg["max_position_embeddings"] == 32  # the shorter member's context
    code = (out / CODE_FILE).read_text()
    # the header names the stage as it always has (the folder stays byte-identical)
    assert "babydistill." not in code.replace("babydistill.ensemble", "") and "from ." not in code

    model = AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True)
    assert len(model.members) == 2
    ids = torch.randint(3, V, (2, 10))
    mems = [AutoModelForCausalLM.from_pretrained(str(m)) for m in members]
    with torch.no_grad():
        got = model(input_ids=ids).logits
        want = torch.stack([m(input_ids=ids).logits for m in mems]).mean(0)
        lab = model(input_ids=ids, labels=ids).loss
    assert torch.allclose(got, want, atol=1e-6)
    # and it is not just one member
    assert not torch.allclose(got, mems[0](input_ids=ids).logits, atol=1e-3)
    ref = torch.nn.functional.cross_entropy(want[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    assert lab.item() == pytest.approx(ref.item(), rel=1e-5)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.convert_tokens_to_ids("w7") == 7


def test_fresh_offline_process_loads_it(members, tmp_path):
    out = tmp_path / "ens"
    ensemble_main(["--teacher", str(members[1]), "--teacher", str(members[0]), "--out", str(out)])
    code = (
        "import torch, sys\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True, dtype=torch.float32)\n"
        "print(type(m).__name__, m(input_ids=torch.tensor([[3, 4, 5]])).logits.shape)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"EnsembleForCausalLM torch.Size([1, 3, {V}])" in r.stdout


def test_bad_members_one_line_error(members, tmp_path, capsys):
    torch.manual_seed(3)
    other = tmp_path / "other"
    build_model(PRESETS[0], V + 8).save_pretrained(other)
    for argv, msg in (
        (["--teacher", str(tmp_path / "missing")], "not a saved model directory"),
        (["--teacher", str(members[0]), "--teacher", str(other)], "vocab_size"),
    ):
        with pytest.raises(SystemExit) as e:
            ensemble_main([*argv, "--out", str(tmp_path / "x")])
        assert e.value.code == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_ensemble_generates_and_runs_in_a_text_generation_pipeline(members, tmp_path, monkeypatch):
    """generate() and pipeline("text-generation") work on the saved ensemble (offline), and
    greedy decoding follows the averaged logits step by step."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    out = tmp_path / "ens"
    ensemble_main(["--teacher", str(members[0]), "--teacher", str(members[1]), "--out", str(out)])
    model = AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.model_max_length == 32  # the shorter member's context

    prompt = torch.tensor([[1, 5, 9, 11]])
    with torch.no_grad():
        got = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6,
                             do_sample=False, eos_token_id=None)
        seq = prompt
        for _ in range(6):  # greedy by hand on the members' mean logits
            mems = [AutoModelForCausalLM.from_pretrained(str(m)) for m in members]
            logits = torch.stack([m(input_ids=seq).logits[:, -1] for m in mems]).mean(0)
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    assert got.tolist() == seq.tolist()

    # Left-padded batch: the padded row generates what it generates alone.
    batch = torch.tensor([[0, 0, 5, 9], [1, 5, 9, 11]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    with torch.no_grad():
        both = model.generate(batch, attention_mask=mask, max_new_tokens=4, do_sample=False, eos_token_id=None)
        alone = model.generate(batch[:1, 2:], attention_mask=mask[:1, 2:], max_new_tokens=4,
                               do_sample=False, eos_token_id=None)
    assert both[0, 4:].tolist() == alone[0, 2:].tolist()

    gen = pipeline("text-generation", model=str(out), trust_remote_code=True, device="cpu")
    text = gen("w5 w9 w11", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("w5 w9 w11") and len(text.split()) > 3


def test_ensemble_model_card(members, tmp_path):
    from babydistill.report import model_card
    out = tmp_path / "models" / "ens"
    (members[0] / "provenance.json").write_text('{"model": "m0"}')  # m0 made by the workflow
    (members[0] / "README.md").write_text("# m0\n")  # a member with a card (e.g. from the hub)
    try:
        ensemble_main(["--teacher", str(members[0]), "--teacher", str(members[1]), "--out", str(out)])
    finally:
        (members[0] / "provenance.json").unlink()
        (members[0] / "README.md").unlink()
    # the stage wrote provenance.json (no chained commands in the rule); the card is rule model_card's
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["spec"] == {} and prov["model_dir"] == str(out)
    # a member's provenance.json, or (made outside the workflow) the member folder itself
    assert list(prov["inputs"]) == [f"{members[0]}/provenance.json", str(members[1])]
    assert not (out / "README.md").exists()
    text = model_card.write_card(out, tmp_path / "card" / "README.md").read_text()
    assert "logit-averaged ensemble of 2 teachers (m0, m1)" in text and "trust_remote_code=True" in text
    assert prov["spec_sha256"] in text
    assert not (out / "member0" / "README.md").exists()  # no stale member cards inside


def test_tokenizer_loads_without_a_prompt_in_a_fresh_process(members, tmp_path):
    """transformers 5's AutoTokenizer reads config.json first; the ensemble's auto_map makes a
    plain call ask whether to run the folder's code. trust_remote_code=False asks nothing and
    gives the members' tokenizer (the README says so)."""
    out = tmp_path / "ens"
    ensemble_main(["--teacher", str(members[0]), "--teacher", str(members[1]), "--out", str(out)])
    code = ("import sys\nfrom transformers import AutoTokenizer\n"
            f"t = AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=False)\n"
            f"m = AutoTokenizer.from_pretrained({str(members[0])!r})\n"
            "s = 'w3 w7 w12'\nprint(t(s)['input_ids'] == m(s)['input_ids'], t(s)['input_ids'])\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("True [3, 7, 12]"), r.stdout
    assert "[y/N]" not in r.stdout + r.stderr
