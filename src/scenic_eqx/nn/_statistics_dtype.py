"""The dtype that precision-sensitive arithmetic runs in: at least float32.

Normalisation statistics, attention logits and softmax, and stochastic-depth draws lose
too much in bfloat16 or float16 (a bfloat16 mean of 1,024 values keeps 8 bits), so
half-precision inputs are computed in float32 and the result cast back; float32 and
float64 inputs stay as they are. Written out rather than `jnp.promote_types(dtype,
float32)`, which refuses to mix widths under strict dtype promotion.
"""

import jax.numpy as jnp
import numpy as np


def statistics_dtype(dtype: np.dtype | type) -> np.dtype:
    """float32 for a floating `dtype` narrower than 32 bits, else `dtype` itself."""
    dtype = np.dtype(dtype)
    return np.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else dtype
