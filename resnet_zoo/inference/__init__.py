"""Running models: the fast path and the runtimes, predict and extract, images in, and the
recipe, export and bench built on them.

- :mod:`.images`: image files in (found, read, their errors kept) and each weights' preprocessing.
- :mod:`.model_view`: ``ModelView``, the base of every wrapper that runs a model.
- :mod:`.runtimes`: onnxruntime and OpenVINO behind the same interface; int8.
- :mod:`.torch_path`: the torch fast path (batch norm folded, channels-last, bf16 on oneDNN).
- :mod:`.auto`: ``optimize_for_inference``: the torch fast path, a runtime, or the fastest of
  them here (``backend="auto"``), above both.
- :mod:`.predict`: ``predict`` and ``extract_features`` over image files, on any of them.
- :mod:`.timing`, :mod:`.bench`: images per second, and resnet_zoo's paths beside torchvision's.
- :mod:`.recipe`: ``ModelRecipe``, a model for inference as data; :mod:`.export`: ONNX, TorchScript.
"""

from .auto import optimize_for_inference
from .predict import PooledFeatures, Prediction, extract_features, predict
from .torch_path import InferenceModel, fold_batch_norm

__all__ = [
    "InferenceModel",
    "PooledFeatures",
    "Prediction",
    "extract_features",
    "fold_batch_norm",
    "optimize_for_inference",
    "predict",
]
