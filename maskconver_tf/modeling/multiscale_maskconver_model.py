"""MultiScaleMaskConverModel: centers predicted on every FPN level."""

from typing import Optional

import tensorflow as tf
import tf_keras

from maskconver_tf.modeling.maskconver_model import _deserialize
from maskconver_tf.modeling.maskconver_model import _serialize
from maskconver_tf.modeling.maskconver_model import heads_to_outputs

_LAYER_KEYS = ('backbone', 'decoder', 'fpn', 'class_head', 'center_head',
               'mask_feature_head', 'mask_embedding_generator',
               'proposal_generator', 'panoptic_merger')


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MultiScaleMaskConverModel(tf_keras.Model):
    """Backbone -> decoder -> FPN -> shared multi-level heads -> mask logits.

    Responsibilities as in `MaskConverModel`; here the class and center heads
    are `MultiScaleMaskConverHead`s over FPN levels min_level..max_level
    (outputs flattened per level and concatenated), and the mask-feature head
    reads (decoder features, FPN features). Proposals: `proposal_generator`
    runs on each level's heatmap (3x3 peaks stay within a level), then one
    top-K over all levels' picks.

    Call:
      model(images, center_indices=None, classes=None, image_info=None,
            training=None)
      Teacher forcing: center_indices int32 [B, K] flat indices into the
      concatenated levels (level offset + y * w_l + x), classes int32 [B, K]
      (-1 padding) -> {'class_heatmaps': float32 [B, N, C] (N = sum_l
      h_l w_l), 'mask_logits': float32 [B, h, w, K]} (h, w: mask-feature
      grid). Inference adds the panoptic outputs as `MaskConverModel`.
    """

    def __init__(self,
                 backbone: tf_keras.Model,
                 decoder: Optional[tf_keras.layers.Layer],
                 fpn: tf_keras.layers.Layer,
                 class_head: tf_keras.layers.Layer,
                 center_head: tf_keras.layers.Layer,
                 mask_feature_head: tf_keras.layers.Layer,
                 mask_embedding_generator: tf_keras.layers.Layer,
                 proposal_generator: tf_keras.layers.Layer,
                 panoptic_merger: Optional[tf_keras.layers.Layer] = None,
                 min_level: int = 3,
                 max_level: int = 7,
                 **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.decoder = decoder
        self.fpn = fpn
        self.class_head = class_head
        self.center_head = center_head
        self.mask_feature_head = mask_feature_head
        self.mask_embedding_generator = mask_embedding_generator
        self.proposal_generator = proposal_generator
        self.panoptic_merger = panoptic_merger
        self._min_level = min_level
        self._max_level = max_level

    def dense_outputs(self, images, training=None):
        """Returns (class_heatmaps float32 [B, N, C], center_embeddings
        [B, N, E], per_pixel_embeddings [B, h, w, E], level grid sizes)."""
        backbone_features = self.backbone(images, training=training)
        decoder_features = (self.decoder(backbone_features, training=training)
                            if self.decoder is not None else backbone_features)
        fpn_features = self.fpn(decoder_features, training=training)
        class_heatmaps = tf.cast(
            self.class_head(fpn_features, training=training), tf.float32)
        center_embeddings = self.center_head(fpn_features, training=training)
        per_pixel_embeddings = self.mask_feature_head(
            (decoder_features, fpn_features), training=training)
        grids = [tuple(fpn_features[str(l)].shape[1:3])
                 for l in range(self._min_level, self._max_level + 1)]
        return class_heatmaps, center_embeddings, per_pixel_embeddings, grids

    def _proposals(self, class_heatmaps, grids):
        """Top-K peaks over all levels -> classes, scores, flat indices."""
        k = self.proposal_generator.get_config()['max_proposals']
        scores, classes, indices = [], [], []
        offset = 0
        for h, w in grids:
            level_maps = tf.reshape(class_heatmaps[:, offset:offset + h * w],
                                    [-1, h, w, class_heatmaps.shape[-1]])
            p = self.proposal_generator(level_maps)
            yx = p['center_indices']
            scores.append(p['scores'])
            classes.append(p['classes'])
            indices.append(offset + yx[..., 0] * w + yx[..., 1])
            offset += h * w
        scores = tf.concat(scores, axis=1)
        top_scores, order = tf.math.top_k(scores, k=k)
        return {'scores': top_scores,
                'classes': tf.gather(tf.concat(classes, 1), order, batch_dims=1),
                'center_indices': tf.gather(tf.concat(indices, 1), order,
                                            batch_dims=1)}

    def call(self, images, center_indices=None, classes=None, image_info=None,
             training=None):
        class_heatmaps, center_embeddings, per_pixel_embeddings, grids = (
            self.dense_outputs(images, training=training))
        return heads_to_outputs(
            self, class_heatmaps, center_embeddings, per_pixel_embeddings,
            center_indices, classes, image_info, training,
            propose=lambda heatmaps: self._proposals(heatmaps, grids))

    @property
    def checkpoint_items(self):
        """Sub-modules for `init_checkpoint_modules`."""
        items = dict(backbone=self.backbone, fpn=self.fpn,
                     class_head=self.class_head, center_head=self.center_head,
                     mask_feature_head=self.mask_feature_head,
                     mask_embedding_generator=self.mask_embedding_generator)
        if self.decoder is not None:
            items['decoder'] = self.decoder
        return items

    def get_config(self):
        config = {k: _serialize(getattr(self, k)) for k in _LAYER_KEYS}
        config.update(name=self.name, min_level=self._min_level,
                      max_level=self._max_level)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        with tf_keras.utils.custom_object_scope(custom_objects or {}):
            for k in _LAYER_KEYS:
                config[k] = _deserialize(config[k])
            return cls(**config)
