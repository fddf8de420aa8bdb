"""Training-step time of ResNet-50 and a U-Net in scenic_eqx, Flax linen and PyTorch eager.

The networks (the same in each):

- `resnet50`: ResNet-50 v1.5 (He et al. 2016; the stride in the 3x3 convolution of a
  bottleneck), ImageNet stem, BatchNorm in training mode (momentum 0.9, epsilon 1e-5),
  64x64x3 inputs (its last stage at 2x2), 10 classes, batch 16, SGD with momentum 0.9,
  softmax cross-entropy.
- `unet`: `nn.UNet`'s network (Ronneberger et al. 2015, padded convolutions, GroupNorm
  with 8 groups, 2x2 max pool, 2x2 stride-2 transposed convolutions), 4 levels of 32 to
  256 channels, 64x64x3 inputs, 5 classes per pixel, batch 8, the same optimizer and
  per-pixel softmax cross-entropy.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'   # flax; torch==2.13.0 by hand
    .venv/bin/python benchmarks/convnet_step.py --model resnet50 --repeats 4 --steps 5

Implementations: `scenic_eqx_fit` (the model trained by `loops.fit`, timed from its own
throughput records, which end in a device sync and leave compilation out),
`scenic_eqx_fit_lax_conv` (the same with every convolution computed by
`lax.conv_general_dilated`, as before `nn.Conv2d` wrote some as matrix products),
`flax_linen` (a jitted step of the linen network of `linen_models.py`) and `torch`
(hand-written modules, eager). The driver runs each in a fresh process, alternating
implementations and their order, and prints the median and min-max seconds per step and
ratios of medians. `--worker NAME` runs one measurement and prints `seconds_per_step`.
"""

import argparse
import os
import sys
import time

from alternating import fit_seconds_per_step, run_alternating

MODELS = {  # batch, image size, classes
    "resnet50": (16, 64, 10),
    "unet": (8, 64, 5),
}
UNET_FEATURES, UNET_LEVELS, UNET_GROUPS = 32, 4, 8
IMPLS = ("scenic_eqx_fit", "scenic_eqx_fit_lax_conv", "flax_linen", "torch")
LEARNING_RATE, MOMENTUM = 0.01, 0.9


def _data(model: str):
    import numpy as np

    batch, size, classes = MODELS[model]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, size, size, 3), dtype=np.float32)
    shape = (batch,) if model == "resnet50" else (batch, size, size)
    return images, rng.integers(0, classes, shape).astype(np.int32)


def scenic_eqx_fit(model: str, steps: int) -> float:
    import jax
    import numpy as np
    import optax

    from scenic_eqx import loops, nn, tasks

    images, labels = _data(model)
    batch_size, _, classes = MODELS[model]
    key = jax.random.key(0)
    if model == "resnet50":  # fit makes its BatchNorm state
        net, task = nn.ResNet(classes, depth=50, key=key), tasks.ClassificationTask()
    else:
        net = nn.UNet(classes, 3, UNET_FEATURES, UNET_LEVELS, UNET_GROUPS, key=key)
        task = tasks.SegmentationTask()
    batch = {"inputs": images, "label": labels, "batch_mask": np.ones(batch_size, np.float32)}
    warmup = 2
    _, history = loops.fit(
        net, task, iter([batch] * (warmup + steps)), optimizer=optax.sgd(LEARNING_RATE, MOMENTUM),
        num_steps=warmup + steps, key=jax.random.key(1), log_every=warmup,
        progress=False,
    )  # fmt: skip
    return fit_seconds_per_step(history, warmup, batch_size)


def scenic_eqx_fit_lax_conv(model: str, steps: int) -> float:
    from scenic_eqx.nn import _conv2d

    _conv2d.as_product = lambda kernel, output, backend=None: False
    return scenic_eqx_fit(model, steps)


def flax_linen(model: str, steps: int) -> float:
    import jax
    import jax.numpy as jnp
    import optax

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import linen_models

    images, labels = map(jnp.asarray, _data(model))
    classes = MODELS[model][2]
    net = linen_models.ResNet(classes, 50) if model == "resnet50" else linen_models.UNet(classes)
    variables = net.init(jax.random.key(0), images[:1], train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})
    optimizer = optax.sgd(LEARNING_RATE, MOMENTUM)

    def loss_fn(params, stats, images, labels):
        if stats:
            logits, updates = net.apply(
                {"params": params, "batch_stats": stats}, images, train=True, mutable=["batch_stats"]
            )
            stats = updates["batch_stats"]
        else:
            logits = net.apply({"params": params}, images, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), stats

    def step(params, stats, opt_state, images, labels):
        grads, stats = jax.grad(loss_fn, has_aux=True)(params, stats, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    state = (params, stats, optimizer.init(params))
    for _ in range(2):
        state = step(*state, images, labels)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state = step(*state, images, labels)
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / steps


def _torch_resnet50(classes: int | None):
    """ResNet-50 v1.5 in torch; `classes=None`: the last feature map (a DETR backbone)."""
    from torch import nn as tnn

    def conv(c_in, c_out, kernel, stride=1):
        return tnn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)

    class Bottleneck(tnn.Module):
        def __init__(self, c_in, width, stride):
            super().__init__()
            self.conv1, self.bn1 = conv(c_in, width, 1), tnn.BatchNorm2d(width, momentum=0.1)
            self.conv2, self.bn2 = conv(width, width, 3, stride), tnn.BatchNorm2d(width, momentum=0.1)
            self.conv3, self.bn3 = conv(width, 4 * width, 1), tnn.BatchNorm2d(4 * width, momentum=0.1)
            self.shortcut = None
            if c_in != 4 * width or stride != 1:
                self.shortcut = tnn.Sequential(conv(c_in, 4 * width, 1, stride), tnn.BatchNorm2d(4 * width))

        def forward(self, x):
            y = self.bn1(self.conv1(x)).relu()
            y = self.bn2(self.conv2(y)).relu()
            y = self.bn3(self.conv3(y))
            return (y + (x if self.shortcut is None else self.shortcut(x))).relu()

    layers = [conv(3, 64, 7, 2), tnn.BatchNorm2d(64), tnn.ReLU(), tnn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for i, blocks in enumerate((3, 4, 6, 3)):
        for j in range(blocks):
            layers.append(Bottleneck(c_in, 64 * 2**i, 2 if i > 0 and j == 0 else 1))
            c_in = 4 * 64 * 2**i
    if classes is not None:
        layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c_in, classes)]
    return tnn.Sequential(*layers)


def _torch_unet(classes: int):
    import torch
    from torch import nn as tnn

    def double_conv(c_in, c_out):
        return tnn.Sequential(
            tnn.Conv2d(c_in, c_out, 3, padding=1, bias=False), tnn.GroupNorm(UNET_GROUPS, c_out), tnn.ReLU(),
            tnn.Conv2d(c_out, c_out, 3, padding=1, bias=False), tnn.GroupNorm(UNET_GROUPS, c_out), tnn.ReLU(),
        )  # fmt: skip

    class UNet(tnn.Module):
        def __init__(self):
            super().__init__()
            features = [UNET_FEATURES * 2**i for i in range(UNET_LEVELS)]
            self.encoder = tnn.ModuleList(double_conv(a, b) for a, b in zip([3, *features[:-1]], features))
            deep = features[::-1]
            self.upsample = tnn.ModuleList(tnn.ConvTranspose2d(a, b, 2, 2) for a, b in zip(deep, deep[1:]))
            self.decoder = tnn.ModuleList(double_conv(2 * b, b) for b in deep[1:])
            self.head = tnn.Conv2d(UNET_FEATURES, classes, 1)

        def forward(self, x):
            skips = []
            for level, unit in enumerate(self.encoder):
                x = unit(tnn.functional.max_pool2d(x, 2) if level else x)
                skips.append(x)
            skips.pop()
            for up, unit in zip(self.upsample, self.decoder):
                x = unit(torch.cat([skips.pop(), up(x)], dim=1))
            return self.head(x)

    return UNet()


def torch(model: str, steps: int) -> float:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    classes = MODELS[model][2]
    net = _torch_resnet50(classes) if model == "resnet50" else _torch_unet(classes)
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    images_np, labels_np = _data(model)
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(labels_np).long()

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet50")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(globals()[args.worker](args.model, args.steps))
        return
    run_alternating(
        __file__,
        args.impls.split(","),
        args.repeats,
        ["--model", args.model, "--steps", str(args.steps)],
        f"{args.model} ({args.steps} steps each)",
    )


if __name__ == "__main__":
    main()
