r"""Converts an exported MaskConver SavedModel to TFLite (Model Garden flags).

Example:
  python export/export_saved_model.py --experiment=maskconver_shapes \
    --checkpoint_path=/tmp/shapes_run --export_dir=/tmp/shapes_tfl \
    --input_type=tflite --batch_size=1 --input_image_size=128,128
  python export/export_tflite.py --experiment=maskconver_shapes \
    --saved_model_dir=/tmp/shapes_tfl/saved_model \
    --tflite_path=/tmp/shapes_int8.tflite --quant_type=int8_full_fp32_io \
    --calibration_steps=100

Calibration images are the first --calibration_steps records of the
experiment's train data (or --calibration_data), decoded and preprocessed
like inference (no augmentation). Writes the .tflite and <name>.json; the
same metadata is embedded in the .tflite (`read_tflite_metadata`).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from maskconver_tf import registry_imports  # noqa: E402,F401
from maskconver_tf.serving import export_module  # noqa: E402
from maskconver_tf.serving import tflite_conversion  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', None, 'Registered experiment name.')
flags.DEFINE_multi_string('config_file', None, 'YAML override files.')
flags.DEFINE_string('params_override', '', 'Overrides applied last.')
flags.DEFINE_string('saved_model_dir', None, 'export_dir/saved_model of an '
                    'export with --input_type=tflite --batch_size=1.')
flags.DEFINE_string('tflite_path', None, 'Output .tflite path.')
flags.DEFINE_string('quant_type', 'none', 'One of '
                    f'{", ".join(tflite_conversion.QUANT_TYPES)} (int8 = '
                    'int8_fallback).')
flags.DEFINE_integer('calibration_steps', 500, 'Calibration images (int8).')
flags.DEFINE_string('calibration_data', None, 'TFRecord glob used instead of '
                    'the experiment\'s train_data.input_path.')
flags.DEFINE_string('denylisted_ops', None, 'Comma-separated TFLite op names '
                    'kept in float in the int8 modes, e.g. LOGISTIC,ARG_MAX; '
                    'default BATCH_MATMUL (slow in int8, see README); "none" '
                    'quantises every op that can be.')
flags.DEFINE_bool('quantize_postprocessing', False, 'Also quantise the '
                  'in-graph post-processing in the int8 modes (its peak, '
                  'threshold and area tests break in int8: for measurement '
                  'only).')


def main(_):
    for name in ('experiment', 'saved_model_dir', 'tflite_path'):
        if not getattr(FLAGS, name):
            raise app.UsageError(f'--{name} is required')
    params = export_module.load_params(FLAGS.experiment, FLAGS.config_file,
                         FLAGS.params_override)
    try:
        quant_type = tflite_conversion.canonical_quant_type(FLAGS.quant_type)
        export_dir = os.path.dirname(os.path.normpath(FLAGS.saved_model_dir))
        sidecar = os.path.join(export_dir, export_module.SIDECAR_NAME)
        if not os.path.exists(sidecar):
            raise tflite_conversion.ExportError(
                f'{sidecar} not found: export the SavedModel with '
                'export/export_saved_model.py --input_type=tflite '
                '--batch_size=1 first')
        with open(sidecar) as f:
            base = json.load(f)
        size = [base['input']['height'], base['input']['width']]
        calibration, source = None, ''
        if quant_type in tflite_conversion.INT8_TYPES:
            data = params.task.train_data
            if FLAGS.calibration_data:
                data = data.replace(input_path=FLAGS.calibration_data,
                                    tfds_name='')
            from maskconver_tf.tasks.maskconver import descriptor_for
            start = time.time()
            calibration = tflite_conversion.calibration_images(
                data, size, FLAGS.calibration_steps,
                descriptor=descriptor_for(params.task))
            source = data.tfds_name or str(data.input_path)
            print(f'calibration: {len(calibration)} images from {source} '
                  f'({time.time() - start:.1f} s)')
        denylist = None
        if FLAGS.denylisted_ops is not None:
            denylist = [o.strip().upper() for o in
                        FLAGS.denylisted_ops.split(',')
                        if o.strip() and o.strip().lower() != 'none']
        start = time.time()
        meta = tflite_conversion.export_tflite(
            FLAGS.saved_model_dir, FLAGS.tflite_path, quant_type=quant_type,
            calibration=calibration, denylisted_ops=denylist,
            base_metadata=base, calibration_source=source,
            float_postprocessing=not FLAGS.quantize_postprocessing)
    except ValueError as e:
        sys.exit(f'export_tflite: {e}')
    print(f'wrote {FLAGS.tflite_path} ({meta["size_bytes"] / 1e6:.2f} MB, '
          f'{quant_type}, input {meta["input"]["dtype"]}, sha256 '
          f'{meta["sha256"][:12]}) in {time.time() - start:.1f} s')
    print('ops:', ', '.join(f'{k} x{v}' for k, v in
                            meta['op_histogram'].items()))


if __name__ == '__main__':
    app.run(main)
