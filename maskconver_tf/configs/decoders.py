"""Decoder configs: Model Garden's (ASPP, FPN, identity) plus ConvNeXt-UNet
and MaskConverFPN."""

import dataclasses
from typing import List

from official.modeling import hyperparams
from official.vision.configs import decoders


@dataclasses.dataclass
class ConvNeXtUNet(hyperparams.Config):
    """ConvNeXt-UNet pixel decoder; lists run coarsest level first.

    Defaults are the paper's ResNet-50 ConvNeXt-UNet (levels 5, 4, 3).
    `se_ratio` 0 turns squeeze-excitation off.
    """
    repeats: List[int] = dataclasses.field(default_factory=lambda: [18, 1, 1])
    filters: List[int] = dataclasses.field(
        default_factory=lambda: [384, 384, 384])
    kernel_sizes: List[int] = dataclasses.field(
        default_factory=lambda: [7, 7, 7])
    se_ratio: float = 0.0625
    layer_scale_init_value: float = 1e-6
    stochastic_depth_drop_rate: float = 0.0


@dataclasses.dataclass
class MaskConverFPN(hyperparams.Config):
    """MaskConver's FPN over levels min_level..max_level of the model config.

    num_filters: width of every lateral / post-hoc / extra conv and output.
    fusion_type: 'sum' adds the upsampled coarser feature to the lateral;
      'concat' stacks them (the post-hoc conv maps back to num_filters).
    use_separable_conv: SeparableConv2D instead of Conv2D for every conv.
    depthwise_kernel_size: post-hoc kernel when separable (else it is 3).
    use_keras_layer: Keras Add / Concatenate / UpSampling2D layers instead
      of raw ops (same numbers).
    use_layer_norm: LayerNorm instead of (Sync)BatchNorm on every output.

    Defaults are the reference config's.
    """
    num_filters: int = 256
    fusion_type: str = 'sum'
    use_separable_conv: bool = False
    depthwise_kernel_size: int = 7
    use_keras_layer: bool = False
    use_layer_norm: bool = True


@dataclasses.dataclass
class Decoder(decoders.Decoder):
    """Model Garden's decoder OneOf plus convnext_unet and maskconver_fpn."""
    convnext_unet: ConvNeXtUNet = dataclasses.field(default_factory=ConvNeXtUNet)
    maskconver_fpn: MaskConverFPN = dataclasses.field(
        default_factory=MaskConverFPN)
