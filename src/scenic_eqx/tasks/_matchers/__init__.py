"""Bipartite matchers: a cost `[batch, n, m]` in, index pairs `[batch, 2, min(n, m)]` out."""

from ._greedy import greedy_matcher as greedy_matcher
from ._hungarian import hungarian_matcher as hungarian_matcher
from ._hungarian_jax import hungarian_jax_matcher as hungarian_jax_matcher
from ._sinkhorn import sinkhorn_matcher as sinkhorn_matcher
