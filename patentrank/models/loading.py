"""Loading Hugging Face models by hub id or local folder, with clear errors instead of hangs."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from patentrank.errors import ModelLoadError
from patentrank.models import precision
from patentrank.models.precision import PrecisionPlan, plan_precision

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cuda' without a GPU is an error that says so."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


def resolve_precision(dtype: str | torch.dtype | None, device: torch.device) -> PrecisionPlan:
    """The precision plan for `dtype` on `device` (see models/precision.py for what `auto` picks and why).

    float16 is refused on CPU (very slow); int8 needs a CPU and ONNX Runtime; bfloat16 on a CPU without
    native bf16 is allowed (explicit wins) but warned about.

    Example:
        >>> resolve_precision("float32", torch.device("cpu")).name
        'float32'
    """
    if not isinstance(dtype, torch.dtype) and dtype not in (None, "auto", *_DTYPES, "bfloat16-mixed", "int8"):
        raise ModelLoadError(
            f"unknown dtype {dtype!r}; use one of auto, float32, bfloat16, bfloat16-mixed, float16, int8"
        )
    plan = plan_precision(dtype, device)
    if plan.backend == "onnx-int8" and device.type != "cpu":
        raise ModelLoadError("dtype int8 runs on CPU (ONNX Runtime); on a GPU use --dtype bfloat16 or auto")
    if plan.load_dtype == torch.float16 and device.type == "cpu":
        raise ModelLoadError("float16 on CPU is about 50x slower than bfloat16; use --dtype bfloat16")
    bf16_matmuls = plan.load_dtype == torch.bfloat16 or plan.mixed_bf16
    if bf16_matmuls and device.type == "cpu" and not cpu_has_fast_bf16():
        # Measured here: bf16 GEMM 8x slower than float32 on an AVX2-only CPU (docs/benchmarks.md).
        logging.getLogger("patentrank").warning(
            "this CPU has no native bfloat16 (%s): bfloat16 will be several times slower than float32",
            torch.backends.cpu.get_cpu_capability(),
        )
    return plan


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype to load weights in: `resolve_precision(...).load_dtype` (float32 for mixed bf16 and int8)."""
    return resolve_precision(dtype, device).load_dtype


def cpu_has_fast_bf16() -> bool:
    """Whether the CPU has native bf16 instructions (AVX-512 BF16 or AMX), as torch reports them."""
    return precision.cpu_bf16_isa() is not None  # looked up at call time, so tests can force it


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP check, because huggingface_hub retries an unreachable host for ~30 s."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def locate_model(model: str, role: str) -> tuple[str, bool]:
    """Return (name_or_path, local_files_only) after checking the model can be found at all.

    A local folder is used as is; a hub id is taken from the local cache when present and
    downloaded only when the hub answers, so an offline machine fails fast with advice.
    """
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{role} model folder {str(path)!r} has no config.json: "
                "give the folder that holds config.json, the weights and the tokenizer files"
            )
        return str(path), True
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelLoadError(f"{role} model folder {model!r} does not exist")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # a malformed id is reported below like any other miss
        cached = None
    if isinstance(cached, str):
        return model, True
    if _hub_reachable():
        return model, False
    raise ModelLoadError(
        f"{role} model {model!r} is not in the local Hugging Face cache and the hub cannot be "
        f"reached (offline?). Download it where the hub is reachable "
        f"(`hf download {model} --local-dir DIR`) and pass that folder instead: "
        f"PATENTRANK_{role.upper()}_MODEL=DIR, or `patentrank serve --{role}-model DIR`"
    )


def load_pretrained(loader: Any, model: str, role: str, **kwargs: Any) -> Any:
    """Call `loader.from_pretrained` with offline-aware arguments; any failure becomes ModelLoadError."""
    name, local_only = locate_model(model, role)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per weight shard is noise in a CLI or server log
    try:
        return loader.from_pretrained(name, local_files_only=local_only, trust_remote_code=False, **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # every loader failure must reach the user as one clear line
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"could not load {role} model {model!r}: {first_line}") from exc
