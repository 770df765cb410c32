"""The peers ``resnet-zoo bench --peers`` and ``benchmarks/peers.py`` time beside resnet_zoo:
what a user would pick instead, each as its documentation runs it. Shipped in the package (an
installed wheel runs ``bench --peers`` as a clone does); each peer is imported only when timed,
and one that is not installed (``pip install 'resnet_zoo[runtimes]'``) gets a row saying so.

- onnxruntime: the reference model (torchvision's, where it has the architecture) exported to
  ONNX, in a default ``InferenceSession`` on the CPU provider;
- OpenVINO: the same ONNX file, ``Core().compile_model(path, "CPU")`` (OpenVINO picks bf16
  itself where the CPU has it: the row says what ran; and f32 when float32 is timed);
- ``torch.compile`` of the reference model (its compile time in the row's note).

``peer_paths(wanted)`` gives the hook :func:`resnet_zoo.inference.bench.iter_bench` takes as ``peers``.
The ONNX file lives in a temporary directory only while the sessions are built: nothing is
left behind.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from ..errors import ConfigError
from .bench import ExtraPaths, PeerHook
from .export import export_model

__all__ = ["PEERS", "peer_paths"]

PEERS = ("onnxruntime", "openvino", "torch.compile")


def peer_paths(wanted: Sequence[str] = PEERS) -> PeerHook:
    """The hook timing the ``wanted`` peers (some of :data:`PEERS`)."""
    chosen_peers = {wanted} if isinstance(wanted, str) else set(wanted)
    if not chosen_peers or chosen_peers - set(PEERS):
        raise ConfigError(f"peers must be some of {list(PEERS)}, got {sorted(chosen_peers)}")

    def hook(reference: torch.nn.Module, x: torch.Tensor, chosen: Sequence[torch.dtype]) -> ExtraPaths:
        extra = ExtraPaths()
        have = {name: importlib.util.find_spec(name) is not None for name in ("onnxruntime", "openvino")}
        runtimes = sorted(chosen_peers & {"onnxruntime", "openvino"})
        extra.missing += [f"{name} (peer)" for name in runtimes if not have[name]]
        if any(have[name] for name in runtimes):
            with tempfile.TemporaryDirectory(prefix="resnet_zoo-bench-") as d:
                onnx_path = export_model(
                    reference.eval(),
                    Path(d) / "peer.onnx",
                    format="onnx",
                    input_size=x.shape[-1],
                    img_channels=x.shape[1],
                )
                if "onnxruntime" in chosen_peers and have["onnxruntime"]:
                    _onnxruntime(extra, onnx_path)
                if "openvino" in chosen_peers and have["openvino"]:
                    _openvino(extra, onnx_path, with_fp32=torch.float32 in chosen)
        if "torch.compile" in chosen_peers:
            start = time.perf_counter()
            compiled = torch.compile(reference.eval())
            with torch.inference_mode():
                compiled(x)
            label = "torch.compile fp32 (peer)"
            extra.notes[label] = f"compile {time.perf_counter() - start:.0f} s"
            extra.paths.append((label, compiled, torch.float32))
        return extra

    return hook


def _onnxruntime(extra: ExtraPaths, onnx_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    extra.paths.append(
        ("onnxruntime fp32 (peer)", lambda t, s=session: s.run(None, {"images": t.numpy()})[0], torch.float32)
    )


def _openvino(extra: ExtraPaths, onnx_path: Path, *, with_fp32: bool) -> None:
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_path), "CPU")
    # OpenVINO picks its precision itself (bf16 where the CPU has it): label what ran.
    precision = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
    bf16 = "bf16" in precision or "bfloat16" in precision
    request = compiled.create_infer_request()
    extra.paths.append(
        (
            f"openvino {'bf16' if bf16 else 'fp32'} (peer)",
            lambda t, r=request: r.infer({0: t.numpy()}),
            torch.bfloat16 if bf16 else torch.float32,
        )
    )
    if bf16 and with_fp32:  # and as a user asking for float32 runs it
        compiled32 = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        request32 = compiled32.create_infer_request()
        extra.paths.append(("openvino fp32 (peer)", lambda t, r=request32: r.infer({0: t.numpy()}), torch.float32))
