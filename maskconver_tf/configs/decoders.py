"""Decoder configs: Model Garden's (ASPP, FPN, identity) plus ConvNeXt-UNet."""

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
class Decoder(decoders.Decoder):
    """Model Garden's decoder OneOf plus `convnext_unet`."""
    convnext_unet: ConvNeXtUNet = dataclasses.field(default_factory=ConvNeXtUNet)
