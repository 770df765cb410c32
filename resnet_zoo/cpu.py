"""What this CPU computes fast: float32, bfloat16 and int8, from torch's own probes.

The answer decides which inference dtypes are offered. bfloat16 is fast only with native
bf16 dot products (AVX512-BF16 or AMX); without them oneDNN either refuses bf16 (AVX2 only)
or emulates it at a fraction of float32's speed (AVX-512 without BF16). int8 is fast with
VNNI dot products (AVX512-VNNI, AVX-VNNI) or AMX.

Every other module asks :func:`cpu_capabilities` (cached) rather than probing itself, so a
test can patch one place to play either kind of CPU.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import asdict, dataclass

import torch

from .errors import ConfigError

__all__ = [
    "CpuCapabilities",
    "DTYPE_NAMES",
    "best_dtype",
    "cpu_capabilities",
    "detect",
    "resolve_dtype",
    "supported_dtypes",
]

# The dtypes inference accepts, by the names the CLI and JSON use.
DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _probe(name: str) -> bool:
    """One of torch's private ``torch.cpu._is_*_supported`` probes; False where it is absent."""
    fn = getattr(torch.cpu, name, None)
    try:
        return bool(fn()) if fn is not None else False
    except Exception:  # a probe that cannot run (an old or unusual build) answers "no"
        return False


def _cpuinfo_model() -> tuple[str, str]:
    """(model name, "family F model M") from /proc/cpuinfo, or the platform's word for it."""
    name, family, model = "", "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key == "cpu family" and not family:
                    family = value.strip()
                elif key == "model" and not model:
                    model = value.strip()
                elif not line.strip() and name:
                    break
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), (
        f"family {family} model {model}" if family and model else ""
    )


@dataclass(frozen=True)
class CpuCapabilities:
    """What torch reports about this CPU, and what follows for each dtype."""

    model_name: str
    family_model: str
    cores: int
    threads: int
    torch_version: str
    isa: str  # torch.backends.cpu.get_cpu_capability(): "AVX2", "AVX512", "DEFAULT", ...
    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx: bool  # AMX tiles (bf16 and int8 matrix units)
    vnni: bool  # AVX512-VNNI / AVX-VNNI int8 dot products
    onednn: bool  # torch built with oneDNN (mkldnn)
    onednn_bf16: bool  # oneDNN accepts bf16 here at all (natively or emulated)

    @property
    def fast_bf16(self) -> bool:
        return self.onednn_bf16 and (self.avx512_bf16 or self.amx)

    @property
    def fast_int8(self) -> bool:
        return self.vnni or self.amx

    def why(self, dtype: str) -> str:
        """One phrase: what makes ``dtype`` fast here, or why it is not."""
        if dtype == "float32":
            vec = "AVX-512" if self.avx512 else ("AVX2" if self.avx2 else self.isa)
            return f"{vec} FMA" + (" through oneDNN" if self.onednn else "")
        if dtype == "bfloat16":
            if self.fast_bf16:
                return "AMX tiles" if self.amx else "AVX512-BF16 dot products"
            if not self.onednn_bf16:
                return "no bf16 support in oneDNN on this CPU (needs AVX512-BF16 or AMX for speed)"
            return "emulated: no AVX512-BF16 or AMX, slower than float32"
        if dtype == "int8":
            if self.fast_int8:
                return "AMX tiles" if self.amx else "VNNI dot products"
            return "no VNNI or AMX: int8 would be no faster than float32"
        raise ConfigError(f"unknown dtype {dtype!r}: one of float32, bfloat16, int8")

    def is_fast(self, dtype: str) -> bool:
        return {"float32": True, "bfloat16": self.fast_bf16, "int8": self.fast_int8}[dtype]

    @property
    def kind(self) -> str:
        """A short label of the CPU and its fastest units, e.g. "AMD EPYC, family 26 model 2
        (AVX512, AVX512-BF16)" (family and model when /proc/cpuinfo gives them)."""
        units = [self.isa]
        if self.amx:
            units.append("AMX")
        elif self.avx512_bf16:
            units.append("AVX512-BF16")
        fm = f", {self.family_model}" if self.family_model else ""
        return f"{self.model_name}{fm} ({', '.join(units)})"

    @property
    def slug(self) -> str:
        """A file-name key of the CPU, e.g. "amd-epyc-f25m17_avx512-bf16" (Zen 4),
        "amd-epyc-f26m2_avx512-bf16" (Zen 5), "intel-xeon-processor_amx".

        Family and model are part of it when /proc/cpuinfo gives them: two CPUs of one brand and
        instruction set (Zen 4 and Zen 5 both read "AMD EPYC" with AVX512-BF16) run at other
        speeds, and one's figures must never overwrite the other's.
        """
        name = re.sub(r"\((r|tm)\)", "", self.model_name.lower())
        name = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
        fm = re.fullmatch(r"family (\d+) model (\d+)", self.family_model or "")
        if fm:
            name += f"-f{fm[1]}m{fm[2]}"
        tier = "amx" if self.amx else ("avx512-bf16" if self.avx512_bf16 else self.isa.lower())
        return name + "_" + tier

    def describe(self) -> str:
        """One line for the record next to a measured figure."""
        fm = f", {self.family_model}" if self.family_model else ""
        fast = ", ".join(d for d in ("float32", "bfloat16", "int8") if self.is_fast(d))
        return (
            f"{self.model_name}{fm}, {self.cores} cores, torch ISA {self.isa}, fast: {fast}; "
            f"torch {self.torch_version}, {self.threads} threads"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            fast_bf16=self.fast_bf16,
            fast_int8=self.fast_int8,
            kind=self.kind,
            auto_dtype=str(best_dtype(self)).replace("torch.", ""),
        )
        return d


def _onednn_bf16() -> bool:
    """oneDNN's own answer: does it take bf16 here at all (avx512bw/vl/dq or avx_ne_convert)?"""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def detect() -> CpuCapabilities:
    """Ask torch about this CPU now (uncached; :func:`cpu_capabilities` caches it)."""
    name, family_model = _cpuinfo_model()
    onednn = torch.backends.mkldnn.is_available()
    onednn_bf16 = onednn and _onednn_bf16()
    return CpuCapabilities(
        model_name=name,
        family_model=family_model,
        cores=os.cpu_count() or 1,
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        isa=torch.backends.cpu.get_cpu_capability(),
        avx2=_probe("_is_avx2_supported"),
        avx512=_probe("_is_avx512_supported"),
        avx512_bf16=_probe("_is_avx512_bf16_supported"),
        amx=_probe("_is_amx_tile_supported"),
        vnni=_probe("_is_vnni_supported"),
        onednn=onednn,
        onednn_bf16=onednn_bf16,
    )


@functools.lru_cache(maxsize=1)
def cpu_capabilities() -> CpuCapabilities:
    """This CPU's capabilities, probed once per process."""
    return detect()


def best_dtype(caps: CpuCapabilities | None = None) -> torch.dtype:
    """The fastest inference dtype here: bfloat16 with native bf16 units, else float32."""
    caps = caps or cpu_capabilities()
    return torch.bfloat16 if caps.fast_bf16 else torch.float32


def resolve_dtype(dtype: torch.dtype | str, *, on_cpu: bool = True) -> torch.dtype:
    """``"auto"`` -> the fastest dtype here; a name or torch dtype -> itself, checked against this CPU.

    Raises :class:`ConfigError` at once for a dtype this CPU cannot run fast, saying why and
    what to use instead: a slow bf16 path would otherwise crash in oneDNN or run for minutes.
    With ``on_cpu=False`` (a model on an accelerator) the CPU is not asked and "auto" is float32.
    """
    if isinstance(dtype, str):
        if dtype == "auto":
            return best_dtype() if on_cpu else torch.float32
        if dtype not in DTYPE_NAMES:
            raise ConfigError(f"dtype must be 'auto' or one of {sorted(DTYPE_NAMES)}, got {dtype!r}")
        dtype = DTYPE_NAMES[dtype]
    if dtype not in DTYPE_NAMES.values():
        raise ConfigError(f"dtype must be 'auto', torch.float32 or torch.bfloat16, got {dtype!r}")
    caps = cpu_capabilities() if on_cpu else None
    if caps is not None and dtype == torch.bfloat16 and not caps.fast_bf16:
        raise ConfigError(
            f"bfloat16 is not fast on this CPU ({caps.model_name}, torch ISA {caps.isa}): "
            f"{caps.why('bfloat16')}. Use dtype=torch.float32, or dtype='auto' to pick the "
            "fastest dtype this CPU supports (see `resnet-zoo info --cpu`)"
        )
    return dtype


def supported_dtypes() -> tuple[torch.dtype, ...]:
    """Every inference dtype that is fast here, float32 first."""
    return tuple(
        d for d in DTYPE_NAMES.values() if d == torch.float32 or (d == torch.bfloat16 and cpu_capabilities().fast_bf16)
    )
