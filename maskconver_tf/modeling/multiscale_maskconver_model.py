"""MultiScaleMaskConverModel: centers predicted on every FPN level."""

from typing import List, Optional, Tuple

import tf_keras

from maskconver_tf.modeling.maskconver_model import MaskConverModel


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MultiScaleMaskConverModel(MaskConverModel):
    """Backbone -> multi-level decoder -> shared multi-level heads -> masks.

    `MaskConverModel` with the class and center heads being
    `MultiScaleMaskConverHead`s over the decoder's levels min_level..max_level
    (e.g. the MaskConverFPN's P3-P7; outputs flattened per level and
    concatenated); the mask-feature head reads (backbone features, decoder
    features), e.g. by pyramid fusion of all levels at stride 4. Proposals:
    3x3 peaks within each level, then one top-K over all levels' cells and
    classes (`post_processing.extract_multilevel_proposals`).

    Call:
      model(images, center_indices=None, classes=None, image_info=None,
            training=None)
      Teacher forcing: center_indices int32 [B, K] flat indices into the
      concatenated levels (level offset + y * w_l + x), classes int32 [B, K]
      (-1 padding) -> {'class_heatmaps': float32 [B, N, C] (N = sum_l
      h_l w_l), 'mask_logits': float32 [B, h, w, K]} (h, w: mask-feature
      grid). Inference adds the panoptic outputs as `MaskConverModel`, with
      proposals' center_indices flat into N.
    The input size must be static (the level grids come from it).
    """

    def __init__(self,
                 backbone: tf_keras.Model,
                 decoder: tf_keras.layers.Layer,
                 class_head: tf_keras.layers.Layer,
                 center_head: tf_keras.layers.Layer,
                 mask_feature_head: tf_keras.layers.Layer,
                 mask_embedding_generator: tf_keras.layers.Layer,
                 proposal_generator: tf_keras.layers.Layer,
                 panoptic_merger: Optional[tf_keras.layers.Layer] = None,
                 min_level: int = 3,
                 max_level: int = 7,
                 **kwargs):
        if decoder is None:
            raise ValueError('MultiScaleMaskConverModel needs a decoder that '
                             f'gives levels {min_level}..{max_level} (e.g. '
                             'maskconver_fpn)')
        super().__init__(
            backbone=backbone, decoder=decoder, class_head=class_head,
            center_head=center_head, mask_feature_head=mask_feature_head,
            mask_embedding_generator=mask_embedding_generator,
            proposal_generator=proposal_generator,
            panoptic_merger=panoptic_merger, **kwargs)
        self._min_level = min_level
        self._max_level = max_level

    def _center_head_inputs(self, features):
        decoder_features = features[1]
        # Static per trace: the grids of the heatmaps `propose` will split.
        self._grids = [tuple(decoder_features[str(l)].shape[1:3])
                       for l in range(self._min_level, self._max_level + 1)]
        return decoder_features

    def level_grids(self) -> List[Tuple[int, int]]:
        """(h_l, w_l) of levels min_level..max_level: those of the last
        traced call, else from the backbone's input size ('same' stride-2
        convs round up)."""
        if getattr(self, '_grids', None):
            return list(self._grids)
        h, w = self.backbone.input_shape[1:3]
        if h is None or w is None:
            raise ValueError(f'{self.name}: the level grids need a static '
                             'input size; build the backbone with one')
        return [(-(-h // 2 ** l), -(-w // 2 ** l))
                for l in range(self._min_level, self._max_level + 1)]

    def propose(self, class_heatmaps):
        """class_heatmaps float [B, N, C] -> proposals, center_indices int32
        [B, K] flat into N."""
        return self.proposal_generator(class_heatmaps,
                                       grids=self.level_grids())

    def get_config(self):
        config = super().get_config()
        config.update(min_level=self._min_level, max_level=self._max_level)
        return config
