"""Widths and depths of the variants the benchmarks use, without importing any framework.

Dosovitskiy et al. 2021, Table 1 (ViT-B/16); He et al. 2016, Table 1 (blocks per stage).
"""

VIT_B16 = {"patch_size": 16, "hidden_size": 768, "num_layers": 12, "num_heads": 12, "mlp_dim": 3072}
RESNET_STAGES = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3)}
