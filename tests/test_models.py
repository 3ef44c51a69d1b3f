"""Model presets: the papers' parameter counts (meta device), configs, the --count CLI."""

from __future__ import annotations

import pytest
import torch

from babydistill.common import UserError
from babydistill.config import DEFAULT_CONFIG, load_yaml
from babydistill.config.presets import main, preset_parameters
from babydistill.models.build import build_model, count_parameters

PAPER = {"llama-58M": 58e6, "llama-360M": 360e6, "gpt2-705M": 705e6, "smollama-345M": 345e6}


@pytest.fixture(scope="module")
def presets():
    return load_yaml(DEFAULT_CONFIG)["models"]


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_parameter_counts_within_one_percent(presets, name):
    n = preset_parameters(presets[name], 16000)
    assert abs(n - PAPER[name]) / PAPER[name] < 0.01, n


def _every_preset():
    from babydistill.config import REPO_ROOT as REPO

    for f in ("config.yaml", "workflow/demo.yaml", "workflow/laptop.yaml"):
        for name, preset in load_yaml(REPO / f)["models"].items():
            for extra in ({}, {"tie_word_embeddings": preset["arch"] == "llama"}):
                yield pytest.param({**preset, **extra}, id=f"{f}:{name}:{extra or 'default'}")


@pytest.mark.parametrize("preset", list(_every_preset()))
def test_the_shape_formula_counts_exactly_what_is_built(preset):
    """preset_parameters is torch-free (config.py sizes jobs with it at parse time) and must
    equal the built model's count, tied embeddings and all."""
    with torch.device("meta"):
        built = count_parameters(build_model(preset, 16000))
    assert preset_parameters(preset, 16000) == built


def test_embeddings_tied_by_arch_and_overridable(presets):
    with torch.device("meta"):
        llama = build_model(presets["llama-58M"], 16000)
        gpt2 = build_model(presets["gpt2-705M"], 16000)
        tied = build_model({**presets["llama-58M"], "tie_word_embeddings": True}, 16000)
    assert llama.lm_head.weight is not llama.model.embed_tokens.weight
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert count_parameters(llama) - count_parameters(tied) == 16000 * 512


def test_roberta_presets_exact_counts(presets):
    """The WML reference (roberta-base's shapes, positions seq_length + 2) counted by hand:
    12 layers x (4 (768^2 + 768) + 2 768 x 3072 + 3072 + 9 x 768) = 85,054,464; embeddings
    (16000 + 1 mask) x 768 + 130 x 768 positions + 768 (one type) + 1536 (norm) = 12,390,912;
    the MLM head 768^2 + 768 + 1536 + 16001 (bias; decoder tied) = 608,129."""
    from babydistill.config import REPO_ROOT

    assert preset_parameters(presets["roberta-98M"], 16000) == 98_053_505
    demo = load_yaml(REPO_ROOT / "workflow" / "demo.yaml")["models"]
    tiny = demo["roberta-tiny"]
    # 4 x (4 (128^2 + 128) + 2 x 128 x 256 + 256 + 9 x 128) + 16001 x 128 + 130 x 128 + 3 x 128
    # + 128^2 + 3 x 128 + 16001
    assert preset_parameters(tiny, 16000) == 2_627_841
    with torch.device("meta"):
        assert count_parameters(build_model(tiny, 16000)) == 2_627_841


def test_roberta_is_a_masked_lm_with_a_mask_row_and_roberta_base_settings(presets):
    from transformers import RobertaForMaskedLM

    from babydistill.models.build import embedding_rows, mask_token_id

    with torch.device("meta"):
        m = build_model(presets["roberta-98M"], 16000)
    c = m.config
    assert isinstance(m, RobertaForMaskedLM) and c.vocab_size == 16001
    assert embedding_rows(presets["roberta-98M"], 16000) == 16001 and mask_token_id(16000) == 16000
    assert embedding_rows(presets["llama-58M"], 16000) == 16000  # causal ids untouched
    assert (c.pad_token_id, c.bos_token_id, c.eos_token_id) == (0, 1, 2)
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size,
            c.max_position_embeddings) == (768, 12, 12, 3072, 130)
    assert (c.type_vocab_size, c.layer_norm_eps, c.hidden_act) == (1, 1e-5, "gelu")
    assert (c.hidden_dropout_prob, c.attention_probs_dropout_prob) == (0.1, 0.1)
    assert m.lm_head.decoder.weight is m.roberta.embeddings.word_embeddings.weight
    torch.manual_seed(0)
    small = build_model({"arch": "roberta", "hidden_size": 32, "num_layers": 1, "num_heads": 4,
                         "intermediate_size": 48, "max_position_embeddings": 18}, 50)
    ids = torch.randint(3, 51, (2, 16))  # the mask id (50) included
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = small(input_ids=ids, labels=labels)
    assert out.logits.shape == (2, 16, 51) and torch.isfinite(out.loss)


def test_roberta_positions_must_hold_a_chunk_after_the_padding_id():
    """RoBERTa's positions start at pad + 1: a chunk of seq_length needs seq_length + 1."""
    from babydistill.config.specs import ModelPreset

    p = {"arch": "roberta", "hidden_size": 32, "num_layers": 1, "num_heads": 4,
         "intermediate_size": 48, "max_position_embeddings": 16}
    ModelPreset.from_json({**p, "max_position_embeddings": 17}, "m", seq_length=16)
    with pytest.raises(UserError, match=r"^m.max_position_embeddings: 16 is less than "
                                        r"data.seq_length 16 \+ 1 \(arch roberta's positions"):
        ModelPreset.from_json(p, "m", seq_length=16)
    ModelPreset.from_json({**p, "arch": "gpt2"}, "m", seq_length=16)  # causal: as before


def test_tiny_model_config_and_forward():
    torch.manual_seed(0)
    m = build_model({"arch": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 4,
                     "num_kv_heads": 2, "intermediate_size": 48,
                     "max_position_embeddings": 16}, 50)
    c = m.config
    assert (c.pad_token_id, c.bos_token_id, c.eos_token_id) == (0, 1, 2)
    assert c.num_key_value_heads == 2 and c._attn_implementation == "sdpa"
    ids = torch.randint(3, 50, (2, 16))
    out = m(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 16, 50) and torch.isfinite(out.loss)


def test_gpt2_dropout_defaults_to_transformers_and_can_be_switched_off():
    gpt2 = {"arch": "gpt2", "hidden_size": 32, "num_layers": 1, "num_heads": 4,
            "max_position_embeddings": 16}
    c = build_model(gpt2, 50).config
    assert (c.resid_pdrop, c.embd_pdrop, c.attn_pdrop) == (0.1, 0.1, 0.1)  # what BL's 705M ran
    torch.manual_seed(0)
    m = build_model({**gpt2, "dropout": 0.0}, 50).train()
    assert (m.config.resid_pdrop, m.config.embd_pdrop, m.config.attn_pdrop) == (0.0, 0.0, 0.0)
    ids = torch.randint(3, 50, (2, 16))
    assert torch.equal(m(input_ids=ids).logits, m(input_ids=ids).logits)  # no noise in train mode
    noisy = build_model({**gpt2, "dropout": 0.5}, 50).train()
    assert not torch.equal(noisy(input_ids=ids).logits, noisy(input_ids=ids).logits)


@pytest.mark.parametrize("preset,match", [
    ({"arch": "rnn", "hidden_size": 32, "num_layers": 1, "num_heads": 4},
     r"^m: arch: 'rnn' is not valid \(not one of \['llama', 'gpt2', 'roberta'\]\)$"),
    ({"arch": "gpt2"}, "^m: .*'hidden_size' is a required property"),
    ({"arch": "llama", "hidden_size": 30, "num_layers": 1, "num_heads": 4,
      "intermediate_size": 8, "max_position_embeddings": 8}, "m.num_heads: 4 does not divide"),
    ({"arch": "gpt2", "hidden_size": 32, "num_layers": 0, "num_heads": 4,
      "max_position_embeddings": 8}, "^m: num_layers: 0 is not valid"),
    ({"arch": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 3,
      "intermediate_size": 8, "max_position_embeddings": 8}, "m.num_kv_heads: 3 does not divide"),
    ({"arch": "gpt2", "hidden_size": 32, "num_layers": 1, "num_heads": 4,
      "max_position_embeddings": 8, "dropout": 1.0}, r"^m: dropout: 1.0 is not valid"),
    ({"arch": "roberta", "hidden_size": 32, "num_layers": 1, "num_heads": 4,
      "max_position_embeddings": 8}, "^m: arch roberta needs 'intermediate_size'$"),
])
def test_bad_presets(preset, match):
    with pytest.raises(UserError, match=match) as e:
        build_model(preset, 100, name="m")
    assert "\n" not in str(e.value)


def test_count_cli(capsys):
    n = main(["--count", "gpt2-705M", "--vocab-size", "16000"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert int(last) == n and abs(n - 705e6) / 705e6 < 0.01
    demo = DEFAULT_CONFIG.parent / "workflow" / "demo.yaml"
    main(["--count", "llama-tiny", "--config", str(demo)])  # vocab from the config
    small = int(capsys.readouterr().out.strip().splitlines()[-1])
    assert small < 2e6
    with pytest.raises(SystemExit) as e:
        main(["--count", "nope"])
    assert e.value.code == 2 and "models.nope: no such preset" in capsys.readouterr().err


def test_teachers_whose_config_disagrees_with_their_weights_are_one_line(tmp_path):
    """Issue 27 #7 for teacher_cache and distill (load_teachers): a config.json vocab_size
    that is not the embedding's was a RuntimeError traceback from transformers."""
    import json

    from babydistill.models.build import load_teachers

    preset = {"arch": "gpt2", "hidden_size": 8, "num_layers": 1, "num_heads": 2,
              "max_position_embeddings": 16}
    build_model(preset, 50).save_pretrained(tmp_path / "t")
    assert load_teachers([tmp_path / "t"])[0].config.vocab_size == 50
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    (tmp_path / "t" / "config.json").write_text(json.dumps({**cfg, "vocab_size": 60}))
    with pytest.raises(UserError, match=r"t/config\.json: vocab_size 60, but the weights' "
                                        r"embedding has 50 rows"):
        load_teachers([tmp_path / "t"])
