"""Builds MaskConver models from their config dataclasses.

`build_maskconver_model` handles both `MaskConverModel` (single-scale) and
`MultiScaleMaskConverModel` configs. Backbones and decoders go through Model
Garden's factories, so any registered backbone / decoder works; importing
this module registers ours (`mobilenet_trunk`, `convnext_unet`,
`maskconver_fpn`).
"""

from typing import Optional

import tensorflow as tf
import tf_keras
from official.vision.modeling.backbones import factory as backbone_factory
from official.vision.modeling.decoders import factory as decoder_factory

from maskconver_tf.configs import maskconver as maskconver_cfg
from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.modeling import maskconver_model
from maskconver_tf.modeling import multiscale_maskconver_model
# Imported for their registrations (mobilenet_trunk, convnext_unet,
# maskconver_fpn; resnet_unet is Model Garden's).
from maskconver_tf.modeling.backbones import mobilenet_trunk  # noqa: F401
from maskconver_tf.modeling.decoders import convnext_unet  # noqa: F401
from maskconver_tf.modeling.decoders import maskconver_fpn  # noqa: F401
from maskconver_tf.modeling.heads import maskconver_head
from maskconver_tf.modeling.heads import multiscale_maskconver_head
from maskconver_tf.modeling.layers import mask_embedding_generator
from maskconver_tf.modeling.layers import post_processing

# Prior probability 0.1 for the center heatmap: -log((1 - 0.1) / 0.1).
CLASS_HEAD_BIAS = -2.19


def _build_head(head_cfg, num_outputs, model_config, l2_regularizer,
                bias_initializer, name):
    """A head from its config: single-level, or shared over the model's
    levels for a `MultiScaleMaskConverHead` config."""
    norm_activation = model_config.norm_activation
    kwargs = dict(
        head_cfg.as_dict(), num_outputs=num_outputs,
        activation=norm_activation.activation,
        use_sync_bn=norm_activation.use_sync_bn,
        norm_momentum=norm_activation.norm_momentum,
        norm_epsilon=norm_activation.norm_epsilon,
        bias_initializer=bias_initializer,
        kernel_regularizer=l2_regularizer, name=name)
    if isinstance(head_cfg, maskconver_cfg.MultiScaleMaskConverHead):
        return multiscale_maskconver_head.MultiScaleMaskConverHead(
            min_level=model_config.min_level,
            max_level=model_config.max_level, **kwargs)
    return maskconver_head.MaskConverHead(**kwargs)


def _resolve_descriptor(model_config, descriptor):
    if descriptor is None:
        descriptor = DatasetDescriptor.builtin('coco')
        if descriptor.num_classes != model_config.num_classes:
            raise ValueError(
                f'num_classes {model_config.num_classes} is not the built-in '
                f'COCO descriptor\'s {descriptor.num_classes}; pass the '
                'DatasetDescriptor of the data set as `descriptor`')
    if descriptor.num_classes != model_config.num_classes:
        raise ValueError(
            f'model num_classes {model_config.num_classes} != descriptor '
            f'{descriptor!r} num_classes {descriptor.num_classes}')
    return descriptor


def _build_panoptic_merger(model_config, descriptor):
    cfg = model_config.panoptic_generator
    input_hw = list(model_config.input_size[:2])
    return post_processing.PanopticMerger(
        is_thing_channel=descriptor.is_thing_channel.tolist(),
        channel_to_id=descriptor.channel_to_id.tolist(),
        output_size=list(cfg.output_size) or input_hw,
        object_mask_threshold=cfg.object_mask_threshold,
        small_area_threshold=cfg.small_area_threshold,
        overlap_threshold=cfg.overlap_threshold,
        duplicate_iou_threshold=cfg.duplicate_iou_threshold,
        input_size=input_hw,
        name='panoptic_merger')


def _build_embedding_generator(model_config, l2_regularizer):
    cfg = model_config.mask_embedding
    return mask_embedding_generator.MaskEmbeddingGenerator(
        num_classes=model_config.num_classes,
        embedding_size=model_config.embedding_size,
        mlp_hidden_size=cfg.mlp_hidden_size,
        combination=cfg.combination,
        use_class_embedding=cfg.use_class_embedding,
        activation=model_config.norm_activation.activation,
        kernel_regularizer=l2_regularizer,
        name='mask_embedding_generator')


def build_maskconver_model(
        input_specs: tf_keras.layers.InputSpec,
        model_config,
        l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
        descriptor: Optional[DatasetDescriptor] = None) -> tf_keras.Model:
    """Builds a (MultiScale)MaskConverModel.

    Args:
      input_specs: InputSpec of the images, [B, H, W, 3].
      model_config: `configs.maskconver.MaskConverModel` or
        `MultiScaleMaskConverModel`.
      l2_regularizer: applied to conv / Dense kernels and the class-embedding
        table (not to depthwise kernels, biases or norms), e.g.
        `tf_keras.regularizers.l2(weight_decay / 2)`.
      descriptor: the data set's `DatasetDescriptor`; gives the panoptic
        outputs their thing flags and dataset ids. Default: built-in COCO
        (raw ids), which needs num_classes 201.

    Returns:
      The model, built (variables created) by one symbolic call.
    """
    descriptor = _resolve_descriptor(model_config, descriptor)
    norm_activation = model_config.norm_activation
    backbone = backbone_factory.build_backbone(
        input_specs=input_specs, backbone_config=model_config.backbone,
        norm_activation_config=norm_activation, l2_regularizer=l2_regularizer)
    specs = backbone.output_specs
    decoder = decoder_factory.build_decoder(
        input_specs=specs, model_config=model_config,
        l2_regularizer=l2_regularizer)
    generator = _build_embedding_generator(model_config, l2_regularizer)
    proposals = post_processing.MaskConverProposalGenerator(
        max_proposals=model_config.num_instances,
        peak_kernel_size=model_config.proposal_generator.peak_kernel_size,
        peak_error=model_config.proposal_generator.peak_error,
        name='proposal_generator')
    merger = _build_panoptic_merger(model_config, descriptor)
    e = model_config.embedding_size
    layers = dict(
        backbone=backbone, decoder=decoder,
        class_head=_build_head(model_config.class_head,
                               model_config.num_classes, model_config,
                               l2_regularizer, CLASS_HEAD_BIAS, 'class_head'),
        center_head=_build_head(model_config.center_head, e, model_config,
                                l2_regularizer, 0.0, 'center_head'),
        mask_feature_head=_build_head(model_config.mask_feature_head, e,
                                      model_config, l2_regularizer, 0.0,
                                      'mask_feature_head'),
        mask_embedding_generator=generator, proposal_generator=proposals,
        panoptic_merger=merger)
    if isinstance(model_config, maskconver_cfg.MultiScaleMaskConverModel):
        model = multiscale_maskconver_model.MultiScaleMaskConverModel(
            min_level=model_config.min_level,
            max_level=model_config.max_level, name='multiscale_maskconver',
            **layers)
    else:
        model = maskconver_model.MaskConverModel(name='maskconver', **layers)
    build_model(model, input_specs, model_config.num_instances)
    return model


def build_model(model, input_specs, num_instances):
    """Creates all variables with one teacher-forced call on zeros.

    Single-scale centers are (y, x) pairs [1, K, 2]; multi-scale centers are
    flat indices [1, K] into the concatenated levels.
    """
    shape = [1 if d is None else d for d in input_specs.shape]
    multiscale = isinstance(
        model, multiscale_maskconver_model.MultiScaleMaskConverModel)
    indices = tf.zeros([1, num_instances] + ([] if multiscale else [2]),
                       tf.int32)
    model(tf.zeros(shape), center_indices=indices,
          classes=tf.zeros([1, num_instances], tf.int32), training=False)
