"""Backbone configs: Model Garden's, plus the two MaskConver needs.

`mobilenet_trunk` is a Model Garden MobileNet without its classification tail
(built by `maskconver_tf.modeling.backbones.mobilenet_trunk`); `resnet_unet`
gives Model Garden's registered ResNet-UNet builder the config dataclass the
wheel does not ship.
"""

import dataclasses
from typing import List, Optional

from official.modeling import hyperparams
from official.vision.configs import backbones


@dataclasses.dataclass
class MobileNetTrunk(backbones.MobileNet):
    """Model Garden MobileNet fields; defaults = the reference "MobileNet-MH"."""
    model_id: str = 'MobileNetMultiAVGSeg'
    output_stride: Optional[int] = 16


@dataclasses.dataclass
class ResNetUNet(hyperparams.Config):
    """Fields read by Model Garden's `resnet_unet` backbone builder."""
    model_id: int = 50
    depth_multiplier: float = 1.0
    stem_type: str = 'v0'
    resnetd_shortcut: bool = False
    replace_stem_max_pool: bool = False
    se_ratio: float = 0.0
    stochastic_depth_drop_rate: float = 0.0
    scale_stem: bool = True
    bn_trainable: bool = True
    classification_output: bool = False
    upsample_repeats: List[int] = dataclasses.field(
        default_factory=lambda: [18, 1, 1])
    upsample_filters: List[int] = dataclasses.field(
        default_factory=lambda: [384, 384, 384])
    upsample_kernel_sizes: List[int] = dataclasses.field(
        default_factory=lambda: [7, 7, 7])


@dataclasses.dataclass
class Backbone(backbones.Backbone):
    """Model Garden's backbone OneOf plus `mobilenet_trunk` and `resnet_unet`."""
    mobilenet_trunk: MobileNetTrunk = dataclasses.field(
        default_factory=MobileNetTrunk)
    resnet_unet: ResNetUNet = dataclasses.field(default_factory=ResNetUNet)
