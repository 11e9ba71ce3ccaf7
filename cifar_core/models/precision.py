"""Which floating-point precision the matrix-heavy training layers compute in.

On a CPU with native bfloat16 matrix units (Intel AMX or AVX512-BF16) and no GPU, Keras's
``mixed_bfloat16`` policy (bfloat16 arithmetic, float32 weights and optimizer) trains dense
layers several times faster than float32; elsewhere float32 is the safe default. Each caller
names the environment variable that overrides the choice for its layers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cifar_core.errors import ConfigError

PRECISIONS = ("float32", "mixed_bfloat16")


def fast_precision(env_var: str) -> str:
    """``mixed_bfloat16`` where the CPU has bfloat16 matrix units and no GPU is visible, else
    ``float32``; the environment variable ``env_var`` (one of ``PRECISIONS``) overrides it."""
    chosen = os.environ.get(env_var)
    if chosen:
        if chosen not in PRECISIONS:
            raise ConfigError(f"{env_var}={chosen!r}: use float32 or mixed_bfloat16")
        return chosen
    return "mixed_bfloat16" if cpu_has_bfloat16() and not gpu_visible() else "float32"


def cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


def gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))
