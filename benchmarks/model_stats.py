"""Parameters and multiply-adds of a MaskConver model, per component.

    python benchmarks/model_stats.py --experiment maskconver_mobilenet_mh_coco \
        [--image_size 640] [--json]

Multiply-adds (MACs) follow the reference README's "FLOPs": the conv,
depthwise and Dense layers of backbone + decoder (ASPP or FPN) + heads,
counted analytically at each layer's real output resolution (output pixels
x kernel weights), so the ASPP's dilated 1x1 convs are not inflated by the
space-to-batch padding TF's profiler sees. Reported apart and not in `dense_network`: the mask MLP, the
mask einsum (K x E x h x w) and an estimate of the post-processing.
Batch 1. --experiment takes a model preset of
`maskconver_tf.configs.maskconver` (see --help for names).
"""

import argparse
import json
import sys

import numpy as np

# Components whose MACs make up the reference "FLOPs" (dense network).
_DENSE_NETWORK = ('backbone', 'decoder', 'class_head', 'center_head',
                  'mask_feature_head')


def _num(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _mac_layers(module):
    import tf_keras
    kinds = (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D,
             tf_keras.layers.SeparableConv2D, tf_keras.layers.Dense)
    # Keras has no public recursive layer list; _flatten_layers is it.
    layers = module._flatten_layers(include_self=True)
    return [l for l in layers if isinstance(l, kinds)]


def _layer_macs(layer, output_shapes):
    """MACs of one layer for one image, from its output shapes and kernels."""
    import tf_keras
    # Output positions (pixels or tokens) over all calls, batch excluded.
    positions = sum(int(np.prod([int(d) for d in shape[1:-1]]))
                    for shape in output_shapes)
    if isinstance(layer, tf_keras.layers.SeparableConv2D):
        return positions * (int(np.prod(layer.depthwise_kernel.shape))
                            + int(np.prod(layer.pointwise_kernel.shape)))
    if isinstance(layer, tf_keras.layers.DepthwiseConv2D):
        return positions * int(np.prod(layer.depthwise_kernel.shape))
    # Conv2D kernel [kh, kw, C_in / groups, C_out]; Dense kernel [C_in, C_out].
    return positions * int(np.prod(layer.kernel.shape))


def _record_output_shapes(layers, run):
    """Runs `run()` with each layer's `call` wrapped to record output shapes.

    Returns {id(layer): [output shape per call]}; a layer shared across
    levels (multi-scale heads) is called, and counted, once per level.
    """
    shapes = {}

    def wrap(layer):
        original = layer.call

        def call(*args, **kwargs):
            outputs = original(*args, **kwargs)
            shapes.setdefault(id(layer), []).append(outputs.shape)
            return outputs
        # Instance attribute, bypassing Keras attribute tracking; removed below.
        object.__setattr__(layer, 'call', call)

    for layer in layers:
        wrap(layer)
    try:
        run()
    finally:
        for layer in layers:
            object.__delattr__(layer, 'call')
    return shapes


def model_stats(name, image_size=None):
    """Builds preset `name` and returns its statistics as a dict."""
    import tensorflow as tf
    import tf_keras
    from maskconver_tf.configs import maskconver as maskconver_cfg
    from maskconver_tf.data.descriptor import DatasetDescriptor
    from maskconver_tf.modeling import factory

    config = maskconver_cfg.model_config_for(name, image_size)
    h, w = config.input_size[:2]
    descriptor = DatasetDescriptor.builtin(maskconver_cfg.dataset_for(name))
    model = factory.build_maskconver_model(
        tf_keras.layers.InputSpec(shape=[None, h, w, 3]), config,
        descriptor=descriptor)

    components = dict(model.checkpoint_items)
    generator = components.pop('mask_embedding_generator')
    all_layers = _mac_layers(model)
    images = tf.zeros([1, h, w, 3])
    shapes = _record_output_shapes(
        all_layers, lambda: model(images, training=False))

    parameters = {}
    macs = {}
    for key, module in components.items():
        parameters[key] = {'trainable': _num(module.trainable_weights),
                           'all': _num(module.weights)}
        macs[key] = sum(_layer_macs(l, shapes[id(l)])
                        for l in _mac_layers(module) if id(l) in shapes)
    parameters['mask_embedding_generator'] = {
        'trainable': _num(generator.trainable_weights),
        'all': _num(generator.weights)}
    parameters['total'] = {'trainable': _num(model.trainable_weights),
                           'all': _num(model.weights)}

    outputs = model(images, training=False)
    _, mh, mw, k = outputs['mask_logits'].shape
    e = config.embedding_size
    out_h, out_w = outputs['category_mask'].shape[1:3]
    dense = sum(v for key, v in macs.items() if key in _DENSE_NETWORK)
    macs = {
        **macs,
        'dense_network': dense,
        'mlp': sum(_layer_macs(l, shapes[id(l)]) for l in _mac_layers(generator)
                   if id(l) in shapes),
        'mask_einsum': int(k * e * mh * mw),
        # Bilinear resize of the K logit maps to the canvas (~3 MACs per
        # output value) plus the mask x score product: an estimate, the
        # remaining post-processing (sigmoid, max-pool, top-k, argmax,
        # counting) has no multiply-adds to speak of.
        'post_processing_estimate': int(4 * k * out_h * out_w),
    }
    return {
        'experiment': name,
        'image_size': [int(h), int(w)],
        'num_classes': int(config.num_classes),
        'num_instances': int(k),
        'embedding_size': int(e),
        'parameters': parameters,
        'multiply_adds': macs,
    }


def _format(stats):
    lines = [f"{stats['experiment']} @ {stats['image_size'][0]}x"
             f"{stats['image_size'][1]} (C={stats['num_classes']}, "
             f"K={stats['num_instances']}, E={stats['embedding_size']})",
             f"{'component':<26}{'trainable':>12}{'all':>12}{'GMACs':>10}"]
    macs = stats['multiply_adds']
    for key, p in stats['parameters'].items():
        g = macs.get(key, macs['dense_network'] if key == 'total' else None)
        g = '' if g is None else f'{g / 1e9:.3f}'
        lines.append(f"{key:<26}{p['trainable']:>12,}{p['all']:>12,}{g:>10}")
    for key in ('mlp', 'mask_einsum', 'post_processing_estimate'):
        lines.append(f"{key + ' (apart)':<50}{macs[key] / 1e9:>10.3f}")
    return '\n'.join(lines)


def main(argv=None):
    from maskconver_tf.configs import maskconver as maskconver_cfg
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--experiment', required=True,
                        choices=maskconver_cfg.preset_names())
    parser.add_argument('--image_size', type=int, default=None,
                        help='square input size (default: the preset\'s)')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object instead of a table')
    args = parser.parse_args(argv)
    stats = model_stats(args.experiment, args.image_size)
    print(json.dumps(stats, indent=1) if args.json else _format(stats))
    return 0


if __name__ == '__main__':
    sys.exit(main())
