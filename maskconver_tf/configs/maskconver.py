"""Model configs of MaskConver (single-scale and multi-scale) and named presets.

Model configs only: data, losses and trainer settings belong to the task
config, which wraps one of these. Named presets (`model_config_for`) give the
benchmarks and the experiment registry the same architectures:

- 'maskconver_mobilenet_mh_coco': the published mobile model (MobileNet-MH
  OS16 + depthwise ASPP + three sum-to-merge heads at stride 8; 201 COCO
  channels, K = 50, E = 256; 3,441,897 trainable parameters).
- 'maskconver_mobilenetv4_conv_small_coco' / '..._conv_medium_coco': the
  same model on Model Garden's MobileNetV4-Conv-S / -M trunks at OS16
  (2,527,017 / 8,525,209 trainable parameters).
- 'maskconver_r50_convnext_unet_coco': the paper's multi-scale model, the
  reference `multiscale_maskconver_resnetufpn_coco`: backbone `resnet_unet`
  (ResNet-50 + ConvNeXt-UNet top-down path) + decoder `maskconver_fpn`
  (levels 3-7), centers on every FPN level, mask features at stride 4.
- 'maskconver_shapes': the mobile architecture unchanged except for the 8
  channels of the built-in shapes set and a 128 px input.
"""

import dataclasses
from typing import List, Optional

from official.modeling import hyperparams
from official.vision.configs import common

from maskconver_tf.configs import backbones
from maskconver_tf.configs import decoders



@dataclasses.dataclass
class MaskConverHead(hyperparams.Config):
    """One dense head (class, center embedding or mask feature).

    Input = decoder[level], optionally fused with backbone[low_level] after a
    1x1 conv to `low_level_num_filters` ('sum' needs the decoder width to
    equal it; 'concat' stacks channels); 'pyramid_fusion' sums every decoder
    level resized to `level` instead (low_level unused). Output stride is
    that of the finer of the two levels (times `upsample_factor`^-1).
    """
    level: int = 4
    low_level: int = 3
    low_level_num_filters: int = 256
    feature_fusion: Optional[str] = 'sum'
    num_convs: int = 2
    num_filters: int = 256
    use_depthwise_convolution: bool = True
    depthwise_kernel_size: int = 7
    prediction_kernel_size: int = 1
    upsample_factor: int = 1
    use_layer_norm: bool = False


@dataclasses.dataclass
class MultiScaleMaskConverHead(hyperparams.Config):
    """Head shared over FPN levels min_level..max_level (norms per level)."""
    num_convs: int = 4
    num_filters: int = 256
    use_depthwise_convolution: bool = True
    depthwise_kernel_size: int = 7
    prediction_kernel_size: int = 1
    use_layer_norm: bool = True


@dataclasses.dataclass
class MaskEmbedding(hyperparams.Config):
    """Center embedding (+) class embedding -> MLP -> mask embedding.

    combination: 'product' (reference single-scale code) or 'sum' (paper,
      multi-scale code).
    use_class_embedding: False skips the class-embedding table (ablation).
    mlp_hidden_size: width of the MLP's first Dense; 0 = embedding_size.
    """
    use_class_embedding: bool = True
    combination: str = 'product'
    mlp_hidden_size: int = 0


@dataclasses.dataclass
class ProposalGenerator(hyperparams.Config):
    """Peak extraction; K = the model's num_instances."""
    peak_kernel_size: int = 3
    peak_error: float = 1e-6


@dataclasses.dataclass
class PanopticGenerator(hyperparams.Config):
    """Panoptic merge; output_size [] = the model input size.

    duplicate_iou_threshold: None (the reference) or the mask IoU above which
    a proposal repeating a better one is dropped, whatever its class
    (`post_processing.duplicate_proposals`).
    """
    output_size: List[int] = dataclasses.field(default_factory=list)
    object_mask_threshold: float = 0.01
    small_area_threshold: int = 256
    overlap_threshold: float = 0.7
    duplicate_iou_threshold: Optional[float] = None


def _default_norm_activation():
    return common.NormActivation(activation='relu', use_sync_bn=False,
                                 norm_momentum=0.99, norm_epsilon=0.001)


@dataclasses.dataclass
class MaskConverModel(hyperparams.Config):
    """Single-scale MaskConver; defaults = the reference mobile model.

    num_classes: class channels (channel 0 = void), from the dataset
      descriptor (201 for raw COCO ids).
    num_instances: K, proposals / ground-truth slots per image.
    level: log2 of the head output stride (stride 8 -> 3); the data pipeline
      builds center targets at this stride.
    min_level / max_level: levels a multi-level decoder (FPN) produces.
    """
    input_size: List[int] = dataclasses.field(
        default_factory=lambda: [640, 640, 3])
    num_classes: int = 201
    num_instances: int = 50
    embedding_size: int = 256
    level: int = 3
    min_level: int = 3
    max_level: int = 4
    backbone: backbones.Backbone = dataclasses.field(
        default_factory=lambda: backbones.Backbone(type='mobilenet_trunk'))
    decoder: decoders.Decoder = dataclasses.field(
        default_factory=lambda: decoders.Decoder(
            type='aspp',
            aspp=decoders.decoders.ASPP(
                level=4, dilation_rates=[6, 12, 18], num_filters=256,
                use_depthwise_convolution=True)))
    class_head: MaskConverHead = dataclasses.field(
        default_factory=MaskConverHead)
    center_head: MaskConverHead = dataclasses.field(
        default_factory=MaskConverHead)
    mask_feature_head: MaskConverHead = dataclasses.field(
        default_factory=MaskConverHead)
    mask_embedding: MaskEmbedding = dataclasses.field(
        default_factory=MaskEmbedding)
    proposal_generator: ProposalGenerator = dataclasses.field(
        default_factory=ProposalGenerator)
    panoptic_generator: PanopticGenerator = dataclasses.field(
        default_factory=PanopticGenerator)
    norm_activation: common.NormActivation = dataclasses.field(
        default_factory=_default_norm_activation)


@dataclasses.dataclass
class MultiScaleMaskConverModel(hyperparams.Config):
    """Multi-scale MaskConver: centers on levels min_level..max_level.

    backbone -> decoder (levels min_level..max_level) -> class / center heads
    shared over the decoder levels; the mask-feature head reads (backbone,
    decoder) features like the single-scale heads. Defaults are the
    reference `multiscale_maskconver_resnetufpn_coco` model (ResNet-50
    ConvNeXt-UNet, MaskConverFPN concat 256, mask features by pyramid fusion
    at level 2, frozen backbone BatchNorm, gelu, norm momentum 0).
    """
    input_size: List[int] = dataclasses.field(
        default_factory=lambda: [1280, 1280, 3])
    num_classes: int = 201
    num_instances: int = 256
    embedding_size: int = 256
    min_level: int = 3
    max_level: int = 7
    backbone: backbones.Backbone = dataclasses.field(
        default_factory=lambda: backbones.Backbone(
            type='resnet_unet', resnet_unet=backbones.ResNetUNet(
                model_id=50, stochastic_depth_drop_rate=0.1,
                bn_trainable=False)))
    decoder: decoders.Decoder = dataclasses.field(
        default_factory=lambda: decoders.Decoder(
            type='maskconver_fpn', maskconver_fpn=decoders.MaskConverFPN(
                num_filters=256, use_separable_conv=True,
                fusion_type='concat')))
    class_head: MultiScaleMaskConverHead = dataclasses.field(
        default_factory=MultiScaleMaskConverHead)
    center_head: MultiScaleMaskConverHead = dataclasses.field(
        default_factory=MultiScaleMaskConverHead)
    mask_feature_head: MaskConverHead = dataclasses.field(
        default_factory=lambda: MaskConverHead(
            level=2, low_level=2, low_level_num_filters=48,
            feature_fusion='pyramid_fusion', num_convs=4,
            use_layer_norm=True))
    mask_embedding: MaskEmbedding = dataclasses.field(
        default_factory=lambda: MaskEmbedding(combination='sum',
                                              mlp_hidden_size=1024))
    proposal_generator: ProposalGenerator = dataclasses.field(
        default_factory=ProposalGenerator)
    panoptic_generator: PanopticGenerator = dataclasses.field(
        default_factory=lambda: PanopticGenerator(
            object_mask_threshold=0.2, small_area_threshold=16,
            overlap_threshold=0.75))
    norm_activation: common.NormActivation = dataclasses.field(
        default_factory=lambda: common.NormActivation(
            activation='gelu', use_sync_bn=True, norm_momentum=0.0,
            norm_epsilon=0.001))


# Named presets ---------------------------------------------------------------
def maskconver_mobilenet_coco(
        image_size: int = 640,
        model_id: str = 'MobileNetMultiAVGSeg') -> MaskConverModel:
    """The published mobile model on any Model Garden MobileNet spec.

    Only `backbone.mobilenet_trunk.model_id` changes (output stride 16): the
    ASPP reads the trunk's level-4 endpoint (stride 16) and the heads fuse
    its level-3 one (stride 8) through their own 1x1 convs, so any spec with
    endpoints at strides 8 and 16 fits without other changes.
    """
    model = MaskConverModel(input_size=[image_size, image_size, 3])
    model.backbone.mobilenet_trunk.model_id = model_id
    return model


def maskconver_mobilenet_mh_coco(image_size: int = 640) -> MaskConverModel:
    """The published mobile model (256 or 640 px)."""
    return maskconver_mobilenet_coco(image_size)


def maskconver_mobilenetv4_conv_small_coco(
        image_size: int = 640) -> MaskConverModel:
    """The mobile model on MobileNetV4-Conv-Small (issue #17)."""
    return maskconver_mobilenet_coco(image_size, 'MobileNetV4ConvSmall')


def maskconver_mobilenetv4_conv_medium_coco(
        image_size: int = 640) -> MaskConverModel:
    """The mobile model on MobileNetV4-Conv-Medium (issue #17)."""
    return maskconver_mobilenet_coco(image_size, 'MobileNetV4ConvMedium')


def maskconver_r50_convnext_unet_coco(
        image_size: int = 1280) -> MultiScaleMaskConverModel:
    """ResNet-50 ConvNeXt-UNet multi-scale model (reference input 1280 px)."""
    return MultiScaleMaskConverModel(input_size=[image_size, image_size, 3])


def maskconver_shapes(image_size: int = 128) -> MaskConverModel:
    """Mobile architecture on the shapes set (8 channels).

    Widths are kept at the reference values so shapes runs exercise exactly
    the network the COCO numbers describe; only the class channels change.
    """
    return MaskConverModel(input_size=[image_size, image_size, 3],
                           num_classes=8)


_PRESETS = {
    'maskconver_mobilenet_mh_coco': (maskconver_mobilenet_mh_coco, 'coco'),
    'maskconver_mobilenetv4_conv_small_coco': (
        maskconver_mobilenetv4_conv_small_coco, 'coco'),
    'maskconver_mobilenetv4_conv_medium_coco': (
        maskconver_mobilenetv4_conv_medium_coco, 'coco'),
    'maskconver_r50_convnext_unet_coco': (maskconver_r50_convnext_unet_coco,
                                          'coco'),
    'maskconver_shapes': (maskconver_shapes, 'shapes'),
}


def preset_names() -> List[str]:
    return sorted(_PRESETS)


def model_config_for(name: str, image_size: Optional[int] = None):
    """Returns the model config of a named preset (optionally resized)."""
    if name not in _PRESETS:
        raise KeyError(f'unknown model preset {name!r}; known: {preset_names()}')
    fn = _PRESETS[name][0]
    return fn() if image_size is None else fn(image_size)


def dataset_for(name: str) -> str:
    """The dataset descriptor spec ('coco' / 'shapes') a preset is built for."""
    if name not in _PRESETS:
        raise KeyError(f'unknown model preset {name!r}; known: {preset_names()}')
    return _PRESETS[name][1]
