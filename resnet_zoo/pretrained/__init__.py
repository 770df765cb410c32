"""Pretrained weights: what a spec means, reading it safely, fitting it to a model, saving.

One module per job; imports point down (nothing here imports the model classes, ``factory`` or
``cli``: the model classes pass a ``build(config)`` callable down instead):

- :mod:`.files`: safe reading (safetensors; ``torch.load(weights_only=True)`` for conversion).
- :mod:`.convert`: the only module that knows foreign key layouts (torchvision, timm,
  transformers, labml, CIFAR checkpoints), both ways.
- :mod:`.fit`: convert the layout, adapt the input conv, new head, strict load on meta; the
  loaders, ``WeightsSource`` + ``build`` -> model.
- :mod:`.resolve`: a spec (tag, ``hf-hub:``, file, directory) into one :class:`WeightsSource`.
- :mod:`.save`: ``config.json``, the weights and the model card.
- :mod:`.hub`: huggingface_hub (download, sha256, offline, upload; the pace a download keeps
  and the checks on what a Hub says); the only module that imports it.

The submodules ``fit`` and ``load`` are named after their main function; import those from
the submodule (``from resnet_zoo.pretrained.fit import load``).
"""

from ..manifest import PretrainedInfo
from .files import CONFIG_NAME, WEIGHTS_NAME, load_safetensors, read_checkpoint
from .fit import adapt_input_conv, from_pretrained
from .resolve import WeightsSource, parse_hf_hub, resolve, resolve_saved
from .save import config_document, model_card, push_to_hub, save_pretrained

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PretrainedInfo",
    "WeightsSource",
    "adapt_input_conv",
    "config_document",
    "from_pretrained",
    "load_safetensors",
    "model_card",
    "parse_hf_hub",
    "push_to_hub",
    "read_checkpoint",
    "resolve",
    "resolve_saved",
    "save_pretrained",
]
