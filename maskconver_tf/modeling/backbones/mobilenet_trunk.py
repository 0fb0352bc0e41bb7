"""Model Garden MobileNet without its classification tail.

Model Garden's `MobileNet` builds every block of its spec and returns the last
one as an extra endpoint; for the segmentation specs that is a global pool and
a 1x1 conv to 1280 channels (578,560 weights for MobileNetMultiAVGSeg), for
the MobileNetV4 classification specs a 1x1 conv to 960 (not an endpoint),
the pool and the 1280 conv (1,360,640 weights for MobileNetV4ConvSmall,
1,483,520 for MobileNetV4ConvMedium), all of which MaskConver never reads.
Those weights would get no gradient and would inflate the parameter count, so
`MobileNetTrunk` stops after the last block that is a declared endpoint.
Everything else (spec, output stride / dilation, endpoints, config) is Model
Garden's.
"""

import tf_keras
from official.modeling import hyperparams
from official.vision.modeling.backbones import factory
from official.vision.modeling.backbones import mobilenet


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MobileNetTrunk(mobilenet.MobileNet):
    """`MobileNet` whose outputs are exactly its endpoints ('2', '3', ...).

    Same constructor arguments and `get_config` as Model Garden's `MobileNet`.
    Outputs: dict level (str) -> float [B, H / 2^level, W / 2^level, C]
    (levels stop growing at the output stride).
    """

    def _mobilenet_base(self, inputs):
        specs = self._decoded_specs
        last_output = max(i for i, s in enumerate(specs) if s.is_output)
        # The parent iterates over self._decoded_specs; drop the blocks after
        # the last endpoint so they are never built.
        self._decoded_specs = specs[:last_output + 1]
        _, endpoints, _ = super()._mobilenet_base(inputs)
        self._decoded_specs = specs
        # The parent stores the returned tensor as the next level; returning
        # the last endpoint under its own level makes that a no-op.
        last_level = max(endpoints, key=lambda k: int(k.split('/')[0]))
        return endpoints[last_level], endpoints, last_level


@factory.register_backbone_builder('mobilenet_trunk')
def build_mobilenet_trunk(
        input_specs: tf_keras.layers.InputSpec,
        backbone_config: hyperparams.Config,
        norm_activation_config: hyperparams.Config,
        l2_regularizer: tf_keras.regularizers.Regularizer = None,
) -> tf_keras.Model:
    """Builds a `MobileNetTrunk` from a `mobilenet_trunk` backbone config."""
    if backbone_config.type != 'mobilenet_trunk':
        raise ValueError(f'backbone type {backbone_config.type!r} given to the '
                         'mobilenet_trunk builder')
    cfg = backbone_config.get()
    return MobileNetTrunk(
        model_id=cfg.model_id,
        filter_size_scale=cfg.filter_size_scale,
        input_specs=input_specs,
        stochastic_depth_drop_rate=cfg.stochastic_depth_drop_rate,
        flat_stochastic_depth_drop_rate=cfg.flat_stochastic_depth_drop_rate,
        output_stride=cfg.output_stride,
        output_intermediate_endpoints=cfg.output_intermediate_endpoints,
        use_sync_bn=norm_activation_config.use_sync_bn,
        norm_momentum=norm_activation_config.norm_momentum,
        norm_epsilon=norm_activation_config.norm_epsilon,
        kernel_regularizer=l2_regularizer)
