"""DETR: Carion et al. 2020, "End-to-End Object Detection with Transformers".

A ResNet backbone's last feature map, projected to `dim` channels, is read as a grid of
tokens by a transformer encoder; a decoder turns a fixed set of learned object queries
into one box and one class distribution each (a class for "no object" included). Every
decoder block's output goes through the same heads, for the auxiliary losses.

Differences from the paper's code: the transformer is pre-LN (the paper's
`--pre_norm` option; the post-LN default is harder to train from scratch), and the
position encoding is the fixed 2-D sine-cosine table of `posemb_sincos_2d` over token
indices rather than over coordinates normalised to the image. The backbone's BatchNorm
trains with the model unless `backbone_frozen_batch_norm` freezes its statistics, as the
paper does (it also fixes their scale and shift: a config's `frozen_parameters`). Images
of different sizes come padded to one size; with `mask_zero_padding` the padding (pixels
exactly 0 in every channel, as the `coco/2017` pipeline pads) is masked out of every
attention, as the paper's pixel mask does.

Outputs of one image (`num_queries` boxes, `num_classes + 1` logits, the last one
"no object"):

    pred_logits       [queries, num_classes + 1]   the last decoder block
    pred_boxes        [queries, 4]                 (cx, cy, w, h) in [0, 1] of the image;
                                                   float32 even in bfloat16 compute
    aux_pred_logits   [layers - 1, queries, num_classes + 1]   the earlier blocks
    aux_pred_boxes    [layers - 1, queries, 4]

Reference: https://arxiv.org/abs/2005.12872.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._batch_norm import freeze_batch_norm
from ._decoder import Decoder
from ._detr_backbone import check_detr_backbone, detr_backbone
from ._encoder import EncoderBlock
from ._input_checks import check_image
from ._layer_norm import LayerNorm
from ._linear import dense
from ._position_embedding import posemb_sincos_2d
from ._resnet import ResNet
from ._statistics_dtype import statistics_dtype

_State = eqx.nn.State


class DETR(eqx.Module):
    """The DETR detector, acting on one image; see the module docstring for the outputs.

    Arguments:
        num_classes: number of object classes; the class head has one more logit, the
            last, for "no object".
        num_queries: number of object queries, i.e. of predicted boxes (100 in the paper).
        dim: token size of the transformer (256).
        num_heads: attention heads (8).
        mlp_dim: hidden size of the transformer's MLPs (2048).
        num_encoder_layers: encoder blocks (6).
        num_decoder_layers: decoder blocks (6); each gives a set of predictions.
        dropout_rate: dropout in the transformer (0.1).
        backbone_depth: depth of the ResNet backbone (50), see `RESNET_VARIANTS`.
        backbone_width: base width of the backbone (64).
        backbone_stem: `"imagenet"` (32x downsampling) or `"cifar"` (8x, small images).
        in_channels: channels of the input image.
        backbone_weights: optional path of a ResNet classifier checkpoint (timm or
            transformers `.safetensors`, see `load_weights`) for the backbone, without
            its head: DETR starts from an ImageNet-trained ResNet. Read by
            `detr_backbone`; pass `backbone` instead to load it outside the detector.
        backbone: optional built backbone, a headless `ResNet` (`detr_backbone(...)`,
            pretrained or not) of the depth, width, input channels and stem above; used
            as is, without `backbone_weights`. By default the detector builds
            `detr_backbone(backbone_depth, backbone_width, in_channels, backbone_stem)`.
        mask_zero_padding: treat pixels that are exactly 0 in every channel as padding:
            no token whose backbone cell is all padding is attended to. Right for
            inputs padded with zeros after normalisation (a normalised photo pixel is
            never exactly 0); wrong for images with true black pixels in [0, 1].
        backbone_frozen_batch_norm: freeze the backbone's BatchNorm statistics
            (`freeze_batch_norm`): normalise with the running (ImageNet) statistics in
            training too and never update them, as the paper does; applies to a given
            `backbone` too.
        key: PRNG key for initialisation (keyword only).

    Called as `model(x, state, *, key=None) -> (outputs, state)` inside
    `jax.vmap(..., axis_name="batch", in_axes=(0, None), out_axes=(0, None))` (the
    backbone's BatchNorm); build the state with `eqx.nn.State(model)`.
    """

    backbone: ResNet
    input_projection: eqx.nn.Linear
    encoder_blocks: tuple[EncoderBlock, ...]
    encoder_norm: LayerNorm
    decoder: Decoder
    query_embedding: Float[Array, "queries dim"]
    class_head: eqx.nn.Linear
    box_head: eqx.nn.MLP
    mask_zero_padding: bool = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        num_queries: int = 100,
        dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dropout_rate: float = 0.1,
        backbone_depth: int = 50,
        backbone_width: int = 64,
        backbone_stem: str = "imagenet",
        in_channels: int = 3,
        backbone_weights: str | None = None,
        mask_zero_padding: bool = False,
        backbone_frozen_batch_norm: bool = False,
        *,
        backbone: ResNet | None = None,
        key: PRNGKeyArray,
    ):
        for name, value in (
            ("num_classes", num_classes),
            ("num_queries", num_queries),
            ("num_encoder_layers", num_encoder_layers),
            ("num_decoder_layers", num_decoder_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` (={value!r}) must be a positive integer.")
        k_backbone, k_projection, k_encoder, k_decoder, k_query, k_class, k_box = jax.random.split(key, 7)
        described = dict(
            depth=backbone_depth, width=backbone_width, in_channels=in_channels, stem=backbone_stem
        )
        if backbone is None:
            backbone = detr_backbone(**described, weights=backbone_weights, key=k_backbone)
        elif backbone_weights is not None:
            raise ValueError(
                "Pass either `backbone` (built, with its weights) or `backbone_weights`, not both. "
                f"Received: backbone_weights={backbone_weights!r}."
            )
        else:
            check_detr_backbone(backbone, **described)
        self.backbone = freeze_batch_norm(backbone) if backbone_frozen_batch_norm else backbone
        channels = backbone_width * 8 * self.backbone.stages[-1].blocks[-1].expansion
        self.input_projection = eqx.nn.Linear(channels, dim, key=k_projection)
        self.encoder_blocks = tuple(
            EncoderBlock(dim, num_heads, mlp_dim, dropout_rate=dropout_rate, key=block_key)
            for block_key in jax.random.split(k_encoder, num_encoder_layers)
        )
        self.encoder_norm = LayerNorm(dim)
        self.decoder = Decoder(
            num_decoder_layers,
            dim,
            num_heads,
            mlp_dim,
            dropout_rate=dropout_rate,
            key=k_decoder,
        )
        # Unit normal, as torch's nn.Embedding that DETR uses for its queries.
        self.query_embedding = jax.random.normal(k_query, (num_queries, dim))
        self.class_head = eqx.nn.Linear(dim, num_classes + 1, key=k_class)
        self.box_head = eqx.nn.MLP(dim, 4, dim, 2, activation=jax.nn.relu, key=k_box)
        self.mask_zero_padding = mask_zero_padding

    def memory(
        self,
        x: Float[Array, "height width channels"],
        state: _State,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "tokens dim"], Float[Array, "tokens dim"], Bool[Array, " tokens"] | None, _State]:
        """The encoder's output tokens, their position encoding, which tokens hold image
        (`None` without `mask_zero_padding`) and the updated state."""
        features, state = self.backbone.features(x, state)
        grid = features[f"stage_{len(self.backbone.stages)}"]
        height, width, _ = grid.shape
        tokens = dense(self.input_projection, grid.reshape(height * width, -1))
        pos = jnp.asarray(posemb_sincos_2d(height, width, tokens.shape[-1]), tokens.dtype)
        valid = self._valid_tokens(x, height, width) if self.mask_zero_padding else None
        mask = None if valid is None else jnp.broadcast_to(valid[None], (len(valid),) * 2)
        keys = [None] * len(self.encoder_blocks)
        if key is not None:
            keys = list(jax.random.split(key, len(self.encoder_blocks)))
        for block, block_key in zip(self.encoder_blocks, keys):
            tokens = block(tokens, mask, pos=pos, key=block_key)
        return self.encoder_norm(tokens), pos, valid, state

    @staticmethod
    def _valid_tokens(
        x: Float[Array, "height width channels"], height: int, width: int
    ) -> Bool[Array, " tokens"]:
        """Tokens of a `height x width` grid whose cell of `x` holds a non-padding pixel."""
        image = jnp.any(x != 0, axis=-1)
        # The backbone's output is ceil(size / stride): pad the pixel grid to whole cells.
        cell_y, cell_x = -(-x.shape[0] // height), -(-x.shape[1] // width)
        image = jnp.pad(image, ((0, cell_y * height - x.shape[0]), (0, cell_x * width - x.shape[1])))
        return image.reshape(height, cell_y, width, cell_x).any(axis=(1, 3)).reshape(-1)

    def __call__(
        self,
        x: Float[Array, "height width channels"],
        state: _State,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[dict[str, Float[Array, "..."]], _State]:
        """Predictions of every decoder block for one image, and the updated state.

        Arguments:
            x: the image, channels last.
            state: the backbone's BatchNorm state.
            key: PRNG key for dropout; only needed in training with dropout.

        Returns:
            `(outputs, state)`; `outputs` as in the module docstring.
        """
        check_image(x, model="DETR", in_channels=self.backbone.stem.conv.weight.shape[1])
        encoder_key, decoder_key = (None, None) if key is None else jax.random.split(key)
        memory, pos, valid, state = self.memory(x, state, key=encoder_key)
        queries = self.query_embedding.astype(memory.dtype)
        hidden = self.decoder.intermediates(
            jnp.zeros_like(queries),
            memory,
            memory_mask=valid,
            query_pos=queries,
            memory_pos=pos,
            key=decoder_key,
        )
        logits = jax.vmap(lambda h: dense(self.class_head, h))(hidden)
        # Boxes in float32, the sigmoid too: near 1, bfloat16 steps by 2**-8 (3 pixels of
        # an 800-pixel image), while rounding the sigmoid's input to bfloat16 moves a box
        # by at most ~2**-11.
        box_logits = jax.vmap(jax.vmap(self.box_head))(hidden)
        box_logits = box_logits.astype(statistics_dtype(box_logits.dtype))
        boxes = jax.nn.sigmoid(box_logits)
        outputs = {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "aux_pred_logits": logits[:-1],
            "aux_pred_boxes": boxes[:-1],
        }
        return outputs, state
