"""Which precision a model runs in, and why: the hardware-aware `auto` policy and its transforms.

`auto` picks the fastest precision whose scores agree with float32 (reranker: Spearman >= 0.99 and
max |dP(yes)| <= 0.01; embedder: mean cosine >= 0.999), as measured in docs/benchmarks.md
("Precision"):

- CUDA: bfloat16 (tensor cores; the yes/no head is float32 anyway);
- a CPU with native bf16 (AVX-512 BF16 or AMX): *mixed* bfloat16: the weights of every matmul of the
  decoder layers are stored in bf16 and multiplied in bf16, while the residual stream, the norms,
  rotary embeddings, attention and the yes-minus-no head stay float32. Plain bf16 (everything bf16)
  is as fast and within the bar too, but moved P(yes) 3x more (0.0034 vs 0.0010). The embedder's `auto`
  there is plain bf16 (`embedder_plan`): faster than mixed, cosine to float32 >= 0.9999;
- any other CPU (AVX2 only: AMD EPYC before Zen 4, older Intel): float32, since torch emulates bf16
  there, about 8x slower than float32.

An explicit dtype (`--dtype`, PATENTRANK_DTYPE) always wins over `auto`. `int8` is opt-in (`auto` never
picks it): ONNX Runtime dynamic INT8 on CPU for the reranker (onnx_int8.py) and the embedder
(onnx_embedder.py), exported once and cached beside the model folder (onnx_export.py).
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("patentrank")

# Linear layers whose weights stay float32 in mixed mode: the output layer is never used by the yes/no
# scorer (it applies two rows in float32), and embeddings are a lookup, not a matmul.
_KEEP_FLOAT32 = ("lm_head", "embed_tokens")


def cpu_bf16_isa() -> str | None:
    """The CPU's native bf16 instruction set ('AMX-BF16' or 'AVX512-BF16'), or None where torch would
    emulate bf16 (AVX2-only CPUs). Asks torch, which also checks that the OS enables the state.
    PATENTRANK_CPU_BF16=0 makes it None (then `auto` is float32, as on an AVX2-only CPU)."""
    if os.environ.get("PATENTRANK_CPU_BF16", "").strip().lower() in ("0", "false", "no", "off"):
        return None
    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX-BF16"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return None


@dataclass(frozen=True, slots=True)
class PrecisionPlan:
    """How to load and run one model: `load_dtype` for `from_pretrained`, then `mixed_bf16` linears.

    Example:
        >>> plan = PrecisionPlan(torch.float32, mixed_bf16=True, name="bfloat16-mixed", reason="demo")
        >>> plan.label
        'bfloat16-mixed'
    """

    load_dtype: torch.dtype
    mixed_bf16: bool = False
    name: str = "float32"
    reason: str = ""
    backend: str = "torch"  # or "onnx-int8" (models/onnx_int8.py)

    @property
    def label(self) -> str:
        return self.name

    def describe(self) -> dict[str, str]:
        """What /health and the benchmark report."""
        return {"dtype": self.name, "dtype_reason": self.reason}


_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _int8_cpu_caveat() -> str:
    """What to know about INT8 on this CPU: without VNNI it was measured slower than float32."""
    from patentrank.models.onnx_export import cpu_has_vnni

    if cpu_has_vnni():
        return ""
    caveat = (
        "; this CPU has no VNNI (AVX2 only): 7-bit weights, and INT8 measured 0.7x float32's speed on such "
        "a CPU (docs/benchmarks.md), so --dtype float32 is likely faster here"
    )
    log.warning("dtype int8%s", caveat)
    return caveat


def plan_precision(requested: str | torch.dtype | None, device: torch.device) -> PrecisionPlan:
    """The plan for `requested` ('auto'/None, 'float32', 'bfloat16', 'bfloat16-mixed', 'float16' or a
    torch dtype) on `device`. Explicit values are taken as given (loading.resolve_dtype validates them).

    Example:
        >>> plan_precision("float32", torch.device("cpu")).reason
        'asked for explicitly (dtype=float32)'
        >>> plan_precision("auto", torch.device("cuda")).name
        'bfloat16'
    """
    if isinstance(requested, torch.dtype):
        return PrecisionPlan(requested, name=_NAMES.get(requested, str(requested)),
                             reason=f"asked for explicitly (dtype={requested})")  # fmt: skip
    if requested == "int8":
        reason = "asked for explicitly (dtype=int8): ONNX Runtime dynamic INT8"
        if device.type == "cpu":
            reason += _int8_cpu_caveat()
        return PrecisionPlan(torch.float32, name="int8", reason=reason, backend="onnx-int8")
    if requested == "bfloat16-mixed":
        reason = "asked for explicitly (dtype=bfloat16-mixed)"
        return PrecisionPlan(torch.float32, True, "bfloat16-mixed", reason)
    if requested not in (None, "auto"):
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[requested]
        return PrecisionPlan(dtype, name=requested, reason=f"asked for explicitly (dtype={requested})")
    if device.type == "cuda":
        return PrecisionPlan(torch.bfloat16, name="bfloat16", reason="auto: CUDA GPU (bf16 tensor cores)")
    isa = cpu_bf16_isa()
    if isa is None:
        capability = torch.backends.cpu.get_cpu_capability()
        return PrecisionPlan(
            torch.float32,
            name="float32",
            reason=f"auto: CPU has no native bf16 ({capability}); emulated bf16 is ~8x slower than float32",
        )
    return PrecisionPlan(
        torch.float32,
        mixed_bf16=True,
        name="bfloat16-mixed",
        reason=f"auto: CPU has {isa}: bf16 matmuls, float32 residual stream, norms, attention and head",
    )


class Bf16Linear(nn.Module):
    """A Linear whose weight is stored and multiplied in bf16, taking and returning the caller's dtype,
    so the model around it (residual stream, norms, attention) stays float32."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        bias = linear.bias
        self.bias = None
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)


def mix_bf16_linears(model: nn.Module, skip_layers: frozenset[int] = frozenset()) -> int:
    """Replace the decoder's Linear layers by `Bf16Linear` in place (not those of `skip_layers`, by layer
    index, nor the output layer and embeddings); returns how many were replaced."""
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, nn.Linear) or child_name in _KEEP_FLOAT32:
                continue
            full = f"{name}.{child_name}" if name else child_name
            if _layer_index(full) in skip_layers:
                continue
            setattr(module, child_name, Bf16Linear(child))
            replaced += 1
    return replaced


def _layer_index(qualified_name: str) -> int | None:
    """The decoder layer number in a name like 'model.layers.3.mlp.up_proj', else None."""
    parts = qualified_name.split(".")
    for before, after in itertools.pairwise(parts):
        if before == "layers" and after.isdigit():
            return int(after)
    return None


def apply_plan(model: nn.Module, plan: PrecisionPlan) -> nn.Module:
    """Apply the part of `plan` that `from_pretrained(dtype=plan.load_dtype)` cannot express."""
    if plan.mixed_bf16:
        mix_bf16_linears(model)
    return model


def embedder_plan(plan: PrecisionPlan, device: torch.device) -> PrecisionPlan:
    """The embedder's plan. `auto` on a native-bf16 CPU is plain bfloat16: measured faster than mixed and
    still within the cosine bar (>= 0.9999 to float32 at 0.6B and e5-small, docs/benchmarks.md). int8 is
    the ONNX Runtime export of the transformer and pooling (models/onnx_embedder.py); prompts,
    truncation, MRL and the L2 norm stay the torch path's. `auto` never picks int8 (opt-in)."""
    if plan.mixed_bf16 and plan.reason.startswith("auto:"):
        reason = plan.reason.split(":")[1].strip() + ": bf16 (embeddings keep cosine >= 0.999 to float32)"
        return PrecisionPlan(torch.bfloat16, name="bfloat16", reason=f"auto: {reason}")
    if plan.backend == "onnx-int8":
        reason = f"{plan.reason}: the pooled vector; prompts, truncation, MRL and norm as in float32"
        return PrecisionPlan(torch.float32, name="int8", reason=reason, backend="onnx-int8")
    return plan
