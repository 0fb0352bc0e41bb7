"""MaskConverModel: the single-scale MaskConver network (the mobile model)."""

from typing import Optional

import tensorflow as tf
import tf_keras


def _serialize(layer):
    return None if layer is None else tf_keras.layers.serialize(layer)


def _deserialize(config):
    return None if config is None else tf_keras.layers.deserialize(config)


_LAYER_KEYS = ('backbone', 'decoder', 'class_head', 'center_head',
               'mask_feature_head', 'mask_embedding_generator',
               'proposal_generator', 'panoptic_merger')


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskConverModel(tf_keras.Model):
    """Backbone -> decoder -> three heads -> mask embeddings -> mask logits.

    Responsibilities: the model wires components; each lives elsewhere:
    features in the backbone / decoder, per-pixel towers in the heads
    (`class_head` -> center heatmap logits, `center_head` -> center
    embeddings, `mask_feature_head` -> per-pixel embeddings), the class
    embedding + MLP + dot product in `mask_embedding_generator`, peaks in
    `proposal_generator`, the panoptic merge in `panoptic_merger`.

    Call:
      model(images, center_indices=None, classes=None, image_info=None,
            training=None)
      images: float [B, H, W, 3], normalised.
      With `center_indices` (int32 [B, K, 2], (y, x) on the head grid) and
      `classes` (int32 [B, K] class channels, -1 = padding slot): teacher
      forcing; returns {'class_heatmaps': float32 [B, h, w, C] logits,
      'mask_logits': float32 [B, h, w, K]}. Used for training (and for
      validation losses with training=False).
      Without them (inference; training must not be True): centers and
      classes come from `proposal_generator` and the result also holds
      `panoptic_merger`'s {'category_mask' int32 [B, H', W'] dataset ids,
      'instance_mask' int32 [B, H', W'], 'classes' int32 [B, K] dataset ids,
      'scores' float32 [B, K]}; `image_info` (float [B, 4, 2], Model Garden
      layout) maps them back to original-image coordinates.
      h, w = the head grid (H / 8, W / 8 for the mobile model). All float
      outputs are float32 under mixed precision.
    """

    def __init__(self,
                 backbone: tf_keras.Model,
                 decoder: Optional[tf_keras.layers.Layer],
                 class_head: tf_keras.layers.Layer,
                 center_head: tf_keras.layers.Layer,
                 mask_feature_head: tf_keras.layers.Layer,
                 mask_embedding_generator: tf_keras.layers.Layer,
                 proposal_generator: tf_keras.layers.Layer,
                 panoptic_merger: Optional[tf_keras.layers.Layer] = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.decoder = decoder
        self.class_head = class_head
        self.center_head = center_head
        self.mask_feature_head = mask_feature_head
        self.mask_embedding_generator = mask_embedding_generator
        self.proposal_generator = proposal_generator
        self.panoptic_merger = panoptic_merger

    def features(self, images, training=None):
        """(backbone features, decoder features) of images [B, H, W, 3]."""
        backbone_features = self.backbone(images, training=training)
        decoder_features = (self.decoder(backbone_features, training=training)
                            if self.decoder is not None else backbone_features)
        return backbone_features, decoder_features

    def dense_outputs(self, images, training=None):
        """Runs backbone, decoder and heads.

        Returns (class_heatmaps float32 [B, h, w, C], center_embeddings
        [B, h, w, E], per_pixel_embeddings [B, h, w, E]); embeddings in the
        compute dtype.
        """
        features = self.features(images, training)
        dense_inputs = self._center_head_inputs(features)
        class_heatmaps = tf.cast(
            self.class_head(dense_inputs, training=training), tf.float32)
        center_embeddings = self.center_head(dense_inputs, training=training)
        per_pixel_embeddings = self.mask_feature_head(features,
                                                      training=training)
        return class_heatmaps, center_embeddings, per_pixel_embeddings

    def _center_head_inputs(self, features):
        """What the class and center heads read: (backbone, decoder)."""
        return features

    def propose(self, class_heatmaps):
        """Proposals of the class heatmaps: `proposal_generator`'s dict."""
        return self.proposal_generator(class_heatmaps)

    def call(self, images, center_indices=None, classes=None, image_info=None,
             training=None):
        class_heatmaps, center_embeddings, per_pixel_embeddings = (
            self.dense_outputs(images, training=training))
        return heads_to_outputs(
            self, class_heatmaps, center_embeddings, per_pixel_embeddings,
            center_indices, classes, image_info, training,
            propose=self.propose)

    @property
    def checkpoint_items(self):
        """Sub-modules for `init_checkpoint_modules`."""
        items = dict(backbone=self.backbone, class_head=self.class_head,
                     center_head=self.center_head,
                     mask_feature_head=self.mask_feature_head,
                     mask_embedding_generator=self.mask_embedding_generator)
        if self.decoder is not None:
            items['decoder'] = self.decoder
        return items

    def get_config(self):
        config = {k: _serialize(getattr(self, k)) for k in _LAYER_KEYS}
        config['name'] = self.name
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        with tf_keras.utils.custom_object_scope(custom_objects or {}):
            for k in _LAYER_KEYS:
                config[k] = _deserialize(config[k])
            return cls(**config)


def heads_to_outputs(model, class_heatmaps, center_embeddings,
                     per_pixel_embeddings, center_indices, classes,
                     image_info, training, propose):
    """Head outputs -> model outputs, shared by the single- and multi-scale models.

    With `center_indices` and `classes` (teacher forcing) returns
    {class_heatmaps, mask_logits}; otherwise takes slots from
    `propose(class_heatmaps)` and adds classes, scores and, when the model has
    a panoptic merger, its category / instance masks (see the model docstrings
    for shapes).
    """
    name = type(model).__name__
    if center_indices is not None:
        if classes is None:
            raise ValueError(f'{name}: center_indices given without classes')
        mask_logits = model.mask_embedding_generator(
            center_embeddings, per_pixel_embeddings,
            tf.cast(center_indices, tf.int32), tf.cast(classes, tf.int32))
        return {'class_heatmaps': class_heatmaps, 'mask_logits': mask_logits}
    if training:
        raise ValueError(f'{name}: training needs ground-truth center_indices '
                         'and classes')
    proposals = propose(class_heatmaps)
    mask_logits = model.mask_embedding_generator(
        center_embeddings, per_pixel_embeddings,
        proposals['center_indices'], proposals['classes'])
    outputs = {'class_heatmaps': class_heatmaps,
               'mask_logits': mask_logits,
               'classes': proposals['classes'],
               'scores': proposals['scores']}
    if model.panoptic_merger is not None:
        outputs.update(model.panoptic_merger(
            mask_logits, proposals['classes'], proposals['scores'],
            image_info=image_info))
    return outputs
