r"""Exports a MaskConver checkpoint as a SavedModel (Model Garden flags).

Example:
  python export/export_saved_model.py --experiment=maskconver_shapes \
    --checkpoint_path=/tmp/shapes_run --export_dir=/tmp/shapes_export \
    --input_type=image_tensor --input_image_size=128,128 --batch_size=1

Writes export_dir/saved_model (signature `serving_default`, input `inputs`),
export_dir/checkpoint, export_dir/params.yaml and
export_dir/maskconver_export.json (labels, normalisation, outputs). For a
.tflite, export with --input_type=tflite --batch_size=1 and run
export/export_tflite.py on the result.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from maskconver_tf import registry_imports  # noqa: E402,F401
from maskconver_tf.serving import export_module  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', None, 'Registered experiment name, e.g. '
                    'maskconver_mobilenet_mh_coco or maskconver_shapes.')
flags.DEFINE_multi_string('config_file', None, 'YAML files overriding the '
                          'experiment, applied in order.')
flags.DEFINE_string('params_override', '', 'YAML/JSON string or file of '
                    'overrides applied last.')
flags.DEFINE_string('checkpoint_path', None, 'Checkpoint file or directory '
                    '(latest); empty exports the initial weights.')
flags.DEFINE_string('export_dir', None, 'Output directory.')
flags.DEFINE_integer('batch_size', None, 'Batch size; None = dynamic '
                     '(tflite needs 1).')
flags.DEFINE_enum('input_type', 'image_tensor', export_module.INPUT_TYPES,
                  'Serving input type.')
flags.DEFINE_string('input_image_size', None, '"height,width" of the model '
                    'input; default the experiment\'s input size.')
flags.DEFINE_bool('include_logits', False, 'Also output class_heatmaps and '
                  'mask_logits.')
flags.DEFINE_integer('merge_stride', 1, 'tflite input only: run the panoptic '
                     'merge on a canvas this many times coarser than the '
                     'input and upsample the maps (nearest); 1 = exact.')
flags.DEFINE_bool('split_depthwise', None, 'Trace depthwise kernels of more '
                  'than 25 taps as sums of <= 25-tap tiles, 7x7 -> 7x3 + 7x3 '
                  '+ 7x1, with the BatchNorm after them folded in (same '
                  'function; fast with LiteRT XNNPACK). Default: on for '
                  '--input_type=tflite.')
flags.DEFINE_bool('sparse_heads', None, 'Run the center-embedding head '
                  'from its last depthwise conv on at the K proposals only and '
                  'fold the mask-feature classifier into the slot embeddings '
                  '(same function, one dense 7x7 depthwise and three dense 1x1 '
                  'convs fewer). Default: on '
                  'when the model allows it (1x1 classifiers, no upsampling).')
flags.DEFINE_bool('log_model_flops_and_params', False, 'As Model Garden.')


def parse_size(text):
    if not text:
        return None
    try:
        return [int(v) for v in text.split(',')]
    except ValueError:
        raise app.UsageError(f'--input_image_size {text!r}: expected '
                             '"height,width"') from None


def main(_):
    if not FLAGS.experiment or not FLAGS.export_dir:
        raise app.UsageError('--experiment and --export_dir are required')
    params = export_module.load_params(FLAGS.experiment, FLAGS.config_file,
                         FLAGS.params_override)
    try:
        module = export_module.export_saved_model(
            params, FLAGS.export_dir, checkpoint_path=FLAGS.checkpoint_path,
            batch_size=FLAGS.batch_size, input_type=FLAGS.input_type,
            input_image_size=parse_size(FLAGS.input_image_size),
            include_logits=FLAGS.include_logits,
            merge_stride=FLAGS.merge_stride,
            split_depthwise=FLAGS.split_depthwise,
            sparse_heads=FLAGS.sparse_heads, experiment=FLAGS.experiment,
            log_model_flops_and_params=FLAGS.log_model_flops_and_params)
    except ValueError as e:
        sys.exit(f'export_saved_model: {e}')
    outputs = ', '.join(f'{k} {v["dtype"]}{v["shape"]}'
                        for k, v in module.output_spec().items())
    print(f'wrote {FLAGS.export_dir}/saved_model ({FLAGS.input_type}, '
          f'input {module.model_config.input_size[:2]}); outputs: {outputs}')


if __name__ == '__main__':
    app.run(main)
