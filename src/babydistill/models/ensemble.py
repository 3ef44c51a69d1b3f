"""The logit-averaged ensemble as a model class: what loads and runs a saved ensemble folder.

:class:`EnsembleConfig` and :class:`EnsembleForCausalLM` are the model the
``python -m babydistill.distill.ensemble`` stage writes (that module's docstring shows the
folder). The forward pass returns the mean of the members' RAW logits (float32), the same
ensemble the distillation losses use (babydistill.distill.losses.average_logits).

It is a generation-capable model too (``GenerationMixin``): ``model.generate(...)`` and
``pipeline("text-generation", model=DIR, trust_remote_code=True)`` work. It keeps no
key/value cache (each step runs the members on the whole sequence, which is cheap at the
papers' 128-256-token contexts) and gives the members position ids from the attention
mask, so left-padded batches generate as unpadded ones do.

The two classes below are written into the folder as source (:func:`model_code`, through
``inspect.getsource``), so they import nothing but torch and transformers: the folder works
without babydistill. babydistill itself never runs that copy: :func:`register_auto_classes`
makes the Auto classes load the folder with the classes of this module, no
``trust_remote_code`` needed. The evaluation (a lower layer than the stage that builds
ensembles) loads them from here.
"""

from __future__ import annotations

import inspect
import os

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

CODE_FILE = "modeling_babydistill_ensemble.py"


class EnsembleConfig(PretrainedConfig):
    """Names the member sub-folders; shared vocabulary / special ids / context copied in."""

    model_type = "babydistill_ensemble"

    def __init__(self, members=None, vocab_size=None, max_position_embeddings=None, use_cache=False, **kwargs):
        self.members = list(members or [])
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.use_cache = use_cache  # no key/value cache (generate reads this)
        super().__init__(**kwargs)


class EnsembleForCausalLM(PreTrainedModel, GenerationMixin):
    """Mean of the members' raw logits. Weights live in the member sub-folders."""

    config_class = EnsembleConfig
    base_model_prefix = "ensemble"
    main_input_name = "input_ids"
    _no_split_modules: list = []
    _supports_cache_class = False  # no key/value cache: every step sees the whole sequence

    def __init__(self, config, members=None):
        super().__init__(config)
        self.members = torch.nn.ModuleList(members or [])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, config=None, **kwargs):
        # Members are ordinary HF models in sub-folders; only the dtype is passed on (hub
        # and device-placement kwargs from callers such as lm-eval do not apply here).
        path = os.fspath(pretrained_model_name_or_path)
        if not isinstance(config, EnsembleConfig):
            config = EnsembleConfig.from_pretrained(path)
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        member_kwargs = {} if dtype in (None, "auto") else {"dtype": dtype}
        members = [AutoModelForCausalLM.from_pretrained(os.path.join(path, m), **member_kwargs)
                   for m in config.members]
        model = cls(config, members)
        if os.path.isfile(os.path.join(path, "generation_config.json")):
            from transformers import GenerationConfig

            model.generation_config = GenerationConfig.from_pretrained(path)
        model.eval()
        return model

    @classmethod
    def _supports_default_dynamic_cache(cls):  # generate must not build a cache for us
        return False

    def get_input_embeddings(self):
        return self.members[0].get_input_embeddings()

    def tie_weights(self, *args, **kwargs):  # members handle their own ties
        pass

    def get_output_embeddings(self):
        return self.members[0].get_output_embeddings()

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        # No cache: the whole sequence every step (generate's cache arguments are dropped).
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids=None, attention_mask=None, labels=None, position_ids=None, **kwargs):
        if position_ids is None and attention_mask is not None:
            # left padding (batched generation): positions count real tokens only
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        logits = torch.stack([
            m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
              use_cache=False).logits.float()
            for m in self.members
        ]).mean(dim=0)
        loss = None
        if labels is not None:  # HF convention: labels are the inputs, shifted here
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)


def register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModelForCausalLM`` load a saved ensemble with THIS code.

    Once registered, ``from_pretrained(DIR)`` without ``trust_remote_code`` finds the
    ensemble's model_type here and never imports the code file in DIR: the evaluation
    scores ensembles without running code from a results folder.
    """
    from transformers import AutoConfig

    AutoConfig.register(EnsembleConfig.model_type, EnsembleConfig, exist_ok=True)
    AutoModelForCausalLM.register(EnsembleConfig, EnsembleForCausalLM, exist_ok=True)


def model_code() -> str:
    """The self-contained source written next to the saved ensemble."""
    header = (
        '"""babydistill logit-averaged ensemble (generated by babydistill.ensemble)."""\n\n'
        "import os\n\nimport torch\nimport torch.nn.functional as F\n"
        "from transformers import AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel\n"
        "from transformers.modeling_outputs import CausalLMOutputWithPast\n\n\n"
    )
    return header + inspect.getsource(EnsembleConfig) + "\n\n" + inspect.getsource(EnsembleForCausalLM)


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "models.ensemble", "every stage that trains, distils or scores a model")
