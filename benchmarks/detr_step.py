"""Training-step time of DETR-R50 in scenic_eqx against the reference PyTorch formulation.

The network (the same in each): DETR (Carion et al. 2020) with pre-LN transformer blocks
as `nn.DETR`: a ResNet-50 v1.5 backbone with BatchNorm in training mode, a linear
projection to 256, 6 encoder and 6 decoder blocks (8 heads, MLP 2048, exact GELU, dropout
0.1), fixed 2-D sine-cosine positions, 100 learned queries, class and box heads on every
decoder block's output. Inputs 128x128 (a 4x4 grid of 16 tokens), batch 4, 91 classes,
1 to 10 boxes per image; AdamW 1e-4. The loss is DETR's: per image and per decoder
block, the Hungarian matching of queries to boxes (cost: 1 x class probability, 5 x L1,
2 x GIoU), then cross-entropy (no-object weight 0.1) + 5 x L1 + 2 x GIoU over the
matched pairs, normalised by the number of boxes.

    .venv/bin/python benchmarks/detr_step.py --repeats 3 --steps 5

Implementations: `scenic_eqx_fit` (`nn.DETR` and `tasks.DetectionTask()` trained by
`loops.fit`, timed from its throughput records; the default matcher, which on a CPU is
scipy's through a callback), `scenic_eqx_fit_jax_matcher` (the same with
`matcher="hungarian_jax"`, the on-device solver) and `torch` (the formulation of the
reference implementation, facebookresearch/detr's `SetCriterion` and `HungarianMatcher`,
written by hand here, eager, with scipy's `linear_sum_assignment` per image). The driver
runs each in a fresh process, alternating, and prints medians, ranges and ratios.
"""

import argparse
import time

import numpy as np
from alternating import fit_seconds_per_step, run_alternating

BATCH, IMAGE, CLASSES, QUERIES, MAX_BOXES = 4, 128, 91, 100, 10
DIM, HEADS, MLP, LAYERS, DROPOUT = 256, 8, 2048, 6, 0.1
COST_CLASS, COST_L1, COST_GIOU, EOS_COEF = 1.0, 5.0, 2.0, 0.1
IMPLS = ("scenic_eqx_fit", "scenic_eqx_fit_jax_matcher", "torch")


def _data():
    """Images, `[cx, cy, w, h]` boxes in (0, 1), labels and the box mask."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((BATCH, IMAGE, IMAGE, 3), dtype=np.float32)
    centers = rng.uniform(0.25, 0.75, (BATCH, MAX_BOXES, 2))
    sizes = rng.uniform(0.05, 0.4, (BATCH, MAX_BOXES, 2))
    boxes = np.concatenate([centers, sizes], axis=-1).astype(np.float32)
    labels = rng.integers(0, CLASSES, (BATCH, MAX_BOXES)).astype(np.int32)
    counts = rng.integers(1, MAX_BOXES + 1, BATCH)
    box_mask = (np.arange(MAX_BOXES)[None] < counts[:, None]).astype(np.float32)
    return images, boxes, labels, box_mask


def scenic_eqx_fit(steps: int, matcher: str = "auto") -> float:
    import jax
    import optax

    from scenic_eqx import loops, nn, tasks

    images, boxes, labels, box_mask = _data()
    batch = {
        "inputs": images,
        "label": {"boxes": boxes, "labels": labels, "box_mask": box_mask},
        "batch_mask": np.ones(BATCH, np.float32),
    }
    model = nn.DETR(CLASSES, QUERIES, DIM, HEADS, MLP, LAYERS, LAYERS, DROPOUT, key=jax.random.key(0))
    warmup = 2
    _, history = loops.fit(
        model, tasks.DetectionTask(matcher=matcher), iter([batch] * (warmup + steps)),
        optimizer=optax.adamw(1e-4), num_steps=warmup + steps, key=jax.random.key(1),
        log_every=warmup, progress=False,
    )  # fmt: skip
    return fit_seconds_per_step(history, warmup, BATCH)


def scenic_eqx_fit_jax_matcher(steps: int) -> float:
    return scenic_eqx_fit(steps, matcher="hungarian_jax")


def _torch_detr():
    import torch
    from convnet_step import _torch_resnet50
    from torch import nn as tnn

    from scenic_eqx.nn import posemb_sincos_2d

    class Mlp(tnn.Sequential):
        def __init__(self):
            super().__init__(
                tnn.Linear(DIM, MLP),
                tnn.GELU(),
                tnn.Dropout(DROPOUT),
                tnn.Linear(MLP, DIM),
                tnn.Dropout(DROPOUT),
            )

    def attention():
        return tnn.MultiheadAttention(DIM, HEADS, dropout=0.0, batch_first=True)

    class EncoderBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.attention, self.norm2, self.mlp = (
                tnn.LayerNorm(DIM, 1e-6),
                attention(),
                tnn.LayerNorm(DIM, 1e-6),
                Mlp(),
            )
            self.dropout = tnn.Dropout(DROPOUT)

        def forward(self, x, pos):
            h = self.norm1(x)
            x = x + self.dropout(self.attention(h + pos, h + pos, h, need_weights=False)[0])
            return x + self.mlp(self.norm2(x))

    class DecoderBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.self_attention = tnn.LayerNorm(DIM, 1e-6), attention()
            self.norm2, self.cross_attention = tnn.LayerNorm(DIM, 1e-6), attention()
            self.norm3, self.mlp, self.dropout = tnn.LayerNorm(DIM, 1e-6), Mlp(), tnn.Dropout(DROPOUT)

        def forward(self, x, memory, query_pos, pos):
            h = self.norm1(x)
            q = h + query_pos
            x = x + self.dropout(self.self_attention(q, q, h, need_weights=False)[0])
            h = self.norm2(x)
            y = self.cross_attention(h + query_pos, memory + pos, memory, need_weights=False)[0]
            x = x + self.dropout(y)
            return x + self.mlp(self.norm3(x))

    class DETR(tnn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = _torch_resnet50(None)
            self.projection = tnn.Linear(2048, DIM)
            self.encoder = tnn.ModuleList(EncoderBlock() for _ in range(LAYERS))
            self.encoder_norm = tnn.LayerNorm(DIM, 1e-6)
            self.decoder = tnn.ModuleList(DecoderBlock() for _ in range(LAYERS))
            self.decoder_norm = tnn.LayerNorm(DIM, 1e-6)
            self.queries = tnn.Parameter(torch.randn(QUERIES, DIM))
            self.class_head = tnn.Linear(DIM, CLASSES + 1)
            self.box_head = tnn.Sequential(
                tnn.Linear(DIM, DIM), tnn.ReLU(), tnn.Linear(DIM, DIM), tnn.ReLU(), tnn.Linear(DIM, 4)
            )

        def forward(self, images):
            grid = self.backbone(images)  # [batch, 2048, h, w]
            tokens = self.projection(grid.flatten(2).transpose(1, 2))
            pos = torch.from_numpy(np.asarray(posemb_sincos_2d(grid.shape[2], grid.shape[3], DIM)))[None]
            for block in self.encoder:
                tokens = block(tokens, pos)
            memory = self.encoder_norm(tokens)
            query_pos = self.queries[None].expand(len(images), -1, -1)
            x, hidden = torch.zeros_like(query_pos), []
            for block in self.decoder:
                x = block(x, memory, query_pos, pos)
                hidden.append(self.decoder_norm(x))
            hidden = torch.stack(hidden)  # [layers, batch, queries, dim]
            return self.class_head(hidden), self.box_head(hidden).sigmoid()

    return DETR()


def _torch_set_loss(logits, boxes, targets):
    """DETR's `SetCriterion`: Hungarian matching per image, then CE + L1 + GIoU."""
    import torch
    import torch.nn.functional as F
    from scipy.optimize import linear_sum_assignment

    def xyxy(b):
        cx, cy, w, h = b.unbind(-1)
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

    def giou(a, b):
        a, b = xyxy(a), xyxy(b)
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        low, high = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
        inter = (high - low).clamp(min=0).prod(-1)
        union = area_a[:, None] + area_b[None] - inter
        low, high = torch.min(a[:, None, :2], b[None, :, :2]), torch.max(a[:, None, 2:], b[None, :, 2:])
        hull = (high - low).clamp(min=0).prod(-1)
        return inter / union - (hull - union) / hull

    num_boxes = max(sum(len(t["boxes"]) for t in targets), 1)
    empty_weight = torch.ones(CLASSES + 1)
    empty_weight[-1] = EOS_COEF
    total = 0.0
    for layer_logits, layer_boxes in zip(logits, boxes):  # the final block and the auxiliary ones
        with torch.no_grad():
            pairs = []
            for image_logits, image_boxes, target in zip(layer_logits, layer_boxes, targets):
                cost = (
                    COST_L1 * torch.cdist(image_boxes, target["boxes"], p=1)
                    - COST_CLASS * image_logits.softmax(-1)[:, target["labels"]]
                    - COST_GIOU * giou(image_boxes, target["boxes"])
                )
                pairs.append(tuple(map(torch.as_tensor, linear_sum_assignment(cost.numpy()))))
        classes = torch.full(layer_logits.shape[:2], CLASSES, dtype=torch.long)
        for i, ((query, target_index), target) in enumerate(zip(pairs, targets)):
            classes[i, query] = target["labels"][target_index]
        loss = F.cross_entropy(layer_logits.transpose(1, 2), classes, empty_weight)
        matched = torch.cat([layer_boxes[i, query] for i, (query, _) in enumerate(pairs)])
        target_boxes = torch.cat([t["boxes"][index] for t, (_, index) in zip(targets, pairs)])
        loss = loss + COST_L1 * F.l1_loss(matched, target_boxes, reduction="sum") / num_boxes
        loss = loss + COST_GIOU * (1 - torch.diag(giou(matched, target_boxes))).sum() / num_boxes
        total = total + loss
    return total


def torch(steps: int) -> float:
    import torch

    torch.manual_seed(0)
    model = _torch_detr()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images_np, boxes_np, labels_np, mask_np = _data()
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous()
    targets = [
        {"boxes": torch.from_numpy(b[m > 0]), "labels": torch.from_numpy(label[m > 0]).long()}
        for b, label, m in zip(boxes_np, labels_np, mask_np)
    ]

    def step():
        optimizer.zero_grad(set_to_none=True)
        _torch_set_loss(*model(images), targets).backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(globals()[args.worker](args.steps))
        return
    run_alternating(__file__, args.impls.split(","), args.repeats, ["--steps", str(args.steps)], "DETR-R50")


if __name__ == "__main__":
    main()
