"""Equinox modules: layers and the baseline model families, a name registry."""

from ._attention import (
    MultiHeadDotProductAttention as MultiHeadDotProductAttention,
    attend as attend,
    dot_product_attention_core as dot_product_attention_core,
)
from ._batch_norm import BatchNorm as BatchNorm, freeze_batch_norm as freeze_batch_norm
from ._bit import BIT_VARIANTS as BIT_VARIANTS, BiTResNet as BiTResNet
from ._clip import CLIP as CLIP, CLIP_VARIANTS as CLIP_VARIANTS
from ._clip_text import CLIPTextTransformer as CLIPTextTransformer
from ._clip_vision import CLIPVisionTransformer as CLIPVisionTransformer
from ._conv2d import Conv2d as Conv2d
from ._counted_flops import counted_forward_flops as counted_forward_flops
from ._decoder import Decoder as Decoder, DecoderBlock as DecoderBlock
from ._detr import DETR as DETR
from ._detr_backbone import detr_backbone as detr_backbone
from ._encoder import Encoder as Encoder, EncoderBlock as EncoderBlock
from ._encoder_decoder import (
    TRANSFORMER_VARIANTS as TRANSFORMER_VARIANTS,
    TransformerEncoderDecoder as TransformerEncoderDecoder,
)
from ._flops import forward_flops as forward_flops
from ._fully_connected import FullyConnected as FullyConnected
from ._group_norm import GroupNorm as GroupNorm
from ._layer_norm import LayerNorm as LayerNorm, normalize as normalize
from ._map_head import MAPHead as MAPHead
from ._mixer import MIXER_VARIANTS as MIXER_VARIANTS, MixerBlock as MixerBlock, MlpMixer as MlpMixer
from ._mlp_block import MlpBlock as MlpBlock, gelu as gelu, quick_gelu as quick_gelu
from ._patch_embedding import PatchEmbedding as PatchEmbedding
from ._per_dataset_heads import PerDatasetHeads as PerDatasetHeads
from ._position_embedding import (
    LearnedPositionEmbedding as LearnedPositionEmbedding,
    SinCos1DPositionEmbedding as SinCos1DPositionEmbedding,
    SinCos2DPositionEmbedding as SinCos2DPositionEmbedding,
    posemb_sincos_1d as posemb_sincos_1d,
    posemb_sincos_2d as posemb_sincos_2d,
)
from ._registry import (
    create as create,
    list_families as list_families,
    list_models as list_models,
    list_variants as list_variants,
    register as register,
)
from ._remat import REMAT_POLICIES as REMAT_POLICIES
from ._resnet import RESNET_VARIANTS as RESNET_VARIANTS, ResNet as ResNet
from ._simple_cnn import SimpleCNN as SimpleCNN
from ._stochastic_depth import StochasticDepth as StochasticDepth
from ._tubelet_embedding import TubeletEmbedding as TubeletEmbedding
from ._unet import UNet as UNet
from ._vit import VIT_VARIANTS as VIT_VARIANTS, ViT as ViT
from ._vivit import VIVIT_VARIANTS as VIVIT_VARIANTS, ViViT as ViViT
from ._vivit_init import vivit_from_vit as vivit_from_vit
from ._weight_standardized_conv import StdConv2d as StdConv2d
from ._weights import load_weights as load_weights
