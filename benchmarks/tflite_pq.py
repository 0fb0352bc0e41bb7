r"""Official PQ of the float and int8 .tflite of one checkpoint, same images.

Example (the shapes model the demo trains):
  python benchmarks/tflite_pq.py --experiment maskconver_shapes \
    --checkpoint_path /tmp/shapes_run --work_dir /tmp/shapes_pq \
    [--input_image_size 128,128] [--quant_types none,int8_full_fp32_io] \
    [--calibration_steps 200] [--max_images 0] [--record]

Exports a tflite-type SavedModel (batch 1, the export defaults: split 7x7
depthwise, --merge_stride as given), converts each quant type (int8
calibrated on the experiment's train records, preprocessed, no
augmentation), scores every .tflite with `maskconver_tf.evaluate` on the
experiment's validation records, and prints (and with --record appends to
benchmarks/RESULTS.md) PQ / SQ / RQ and the drop from the first quant type.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from maskconver_tf import registry_imports  # noqa: E402,F401
from maskconver_tf.serving import export_module  # noqa: E402
from maskconver_tf.serving import tflite_conversion as tc  # noqa: E402


def export_and_score(params, experiment, checkpoint_path, work_dir,
                     quant_types, input_image_size=None, merge_stride=1,
                     calibration_steps=200, max_images=0):
    """Returns [(quant_type, tflite path, pq results dict)]."""
    from maskconver_tf import evaluate as evaluate_lib
    from maskconver_tf import inference
    from maskconver_tf.tasks.maskconver import descriptor_for
    export_dir = os.path.join(work_dir, 'export_tflite')
    module = export_module.export_saved_model(
        params, export_dir, checkpoint_path=checkpoint_path, batch_size=1,
        input_type='tflite', input_image_size=input_image_size,
        merge_stride=merge_stride, experiment=experiment)
    size = list(module.model_config.input_size[:2])
    with open(os.path.join(export_dir, export_module.SIDECAR_NAME)) as f:
        meta = json.load(f)
    calibration = None
    results = []
    for quant_type in quant_types:
        quant_type = tc.canonical_quant_type(quant_type)
        if quant_type in tc.INT8_TYPES and calibration is None:
            calibration = tc.calibration_images(
                params.task.train_data, size, calibration_steps,
                descriptor=descriptor_for(params.task))
        path = os.path.join(work_dir, f'model_{quant_type}.tflite')
        tc.export_tflite(os.path.join(export_dir, 'saved_model'), path,
                         quant_type=quant_type, calibration=calibration,
                         base_metadata=meta,
                         calibration_source=str(
                             params.task.train_data.input_path))
        predictor = inference.load_predictor(path)
        eval_dir = os.path.join(work_dir, f'eval_{quant_type}')
        pq = evaluate_lib.evaluate(predictor, eval_dir, params=params,
                                   max_images=max_images,
                                   show_progress=False)
        with open(os.path.join(eval_dir, 'pq.json')) as f:
            pq['num_images'] = json.load(f)['settings']['num_images']
        results.append((quant_type, path, pq))
        print(f'{quant_type}: PQ {100 * pq["All"]["pq"]:.2f}', flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--experiment', required=True)
    parser.add_argument('--config_file', action='append')
    parser.add_argument('--params_override', default='')
    parser.add_argument('--checkpoint_path', default=None,
                        help='trained checkpoint (omit only to test the '
                        'tool: initial weights score ~0)')
    parser.add_argument('--work_dir', required=True)
    parser.add_argument('--input_image_size', default=None)
    parser.add_argument('--merge_stride', type=int, default=1)
    parser.add_argument('--quant_types', default='none,int8_full_fp32_io')
    parser.add_argument('--calibration_steps', type=int, default=200)
    parser.add_argument('--max_images', type=int, default=0)
    parser.add_argument('--record', action='store_true')
    args = parser.parse_args(argv)
    params = export_module.load_params(args.experiment, args.config_file,
                                       args.params_override)
    size = ([int(v) for v in args.input_image_size.split(',')]
            if args.input_image_size else None)
    results = export_and_score(
        params, args.experiment, args.checkpoint_path, args.work_dir,
        args.quant_types.split(','), size, args.merge_stride,
        args.calibration_steps, args.max_images)
    base = results[0][2]['All']['pq']
    lines = ['| quant_type | PQ | SQ | RQ | PQ things | PQ stuff | drop vs '
             f'{results[0][0]} | images | calibration | sha256 |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for quant_type, path, pq in results:
        meta = tc.read_tflite_metadata(path)
        with open(path, 'rb') as f:
            digest = tc.sha256(f.read())[:12]

        def pct(group, key):
            value = (pq.get(group) or {}).get(key)
            return '-' if value is None else f'{100 * value:.2f}'

        lines.append(
            f'| {quant_type} | {pct("All", "pq")} | {pct("All", "sq")} | '
            f'{pct("All", "rq")} | {pct("Things", "pq")} | '
            f'{pct("Stuff", "pq")} | {100 * (base - pq["All"]["pq"]):.2f} | '
            f'{pq["num_images"]} | '
            f'{meta["calibration_images"]} | {digest} |')
    print('\n'.join(lines))
    if args.record:
        from benchmarks import results_io
        results_io.append_section(
            f'PQ of float vs int8 TFLite ({args.experiment}, merge stride '
            f'{args.merge_stride})', lines)


if __name__ == '__main__':
    main()
