r"""Runs a model over an evaluation set and scores it with official PQ.

    python -m maskconver_tf.evaluate --output_dir O \
        (--checkpoint_path C | --saved_model_dir S | --tflite T) \
        [--experiment E] [--config_file Y ...] [--params_override S] \
        [--gt_json J --gt_dir D --image_dir I] [--max_images N] [--workers W]

Ground truth, one of:
- a COCO-panoptic folder (--gt_json, --gt_dir, --image_dir): preferred, it
  keeps crowd regions exactly as panopticapi scores them;
- the experiment's `task.validation_data` TFRecords (the config comes from
  --experiment / --config_file, or the params.yaml of the checkpoint's
  model_dir), decoded with `dataloaders.decoder.TfExampleDecoder`. The
  ground truth scored is then written to O/groundtruth/panoptic.json +
  O/groundtruth/panoptic/*.png. Records converted with --skip_crowd carry
  crowd regions as void, so crowd is void there: unmatched predictions on
  crowd are ignored only through the > 50% void rule, not per category.
  Records converted without it keep crowd segments, written with iscrowd 1.

Writes O/panoptic/*.png and O/predictions.json (kept, rescoreable by any
panopticapi-exact tool), O/pq.json (`evaluation.pq.pq_compute` output plus
the run's settings) and prints the PQ table. Errors are one line on stderr,
exit code 2.
"""

import argparse
import glob
import json
import os
import sys
from typing import Iterator, Tuple

import numpy as np


class EvaluationError(ValueError):
    """A bad input to the evaluation; the message is one line."""


def check_categories(model_descriptor, gt_categories, gt_source: str):
    """The model must predict the ground truth's categories (ids, things).

    Raises:
      EvaluationError: naming the first differences.
    """
    gt = {int(c['id']): (str(c['name']), bool(c['isthing']))
          for c in gt_categories}
    model = {c.id: (c.name, c.isthing) for c in model_descriptor.categories}
    if gt == model:
        return
    only_gt = sorted(set(gt) - set(model))
    only_model = sorted(set(model) - set(gt))
    changed = sorted(i for i in set(gt) & set(model) if gt[i] != model[i])
    parts = []
    if only_gt:
        parts.append(f'ids only in the ground truth {only_gt[:8]}')
    if only_model:
        parts.append(f'ids only in the model {only_model[:8]}')
    if changed:
        i = changed[0]
        parts.append(f'{len(changed)} ids differ in name/isthing, e.g. {i}: '
                     f'model {model[i]} vs ground truth {gt[i]}')
    raise EvaluationError(
        f'the model\'s dataset ({model_descriptor.source}, {len(model)} '
        f'categories) differs from the ground-truth categories ({gt_source}, '
        f'{len(gt)} categories): {"; ".join(parts)}')


# Ground-truth sources -------------------------------------------------------
def coco_examples(gt_json: str, image_dir: str, max_images: int = 0
                  ) -> Tuple[dict, Iterator, int]:
    """(gt dict, iterator of (image_id, file_name, image uint8 [H, W, 3]),
    number of images)."""
    from maskconver_tf import inference
    for path, what in ((gt_json, '--gt_json'),):
        if not os.path.isfile(path):
            raise EvaluationError(f'{what} {path}: no such file')
    if not os.path.isdir(image_dir):
        raise EvaluationError(f'--image_dir {image_dir}: no such directory')
    try:
        with open(gt_json) as f:
            gt = json.load(f)
    except ValueError as e:
        raise EvaluationError(f'{gt_json}: not a JSON file ({e})') from None
    missing = [k for k in ('images', 'annotations', 'categories')
               if k not in gt]
    if missing:
        raise EvaluationError(f'{gt_json}: lacks {missing}; expected a COCO '
                              'panoptic JSON')
    images = gt['images'][:max_images] if max_images else gt['images']

    def iterate():
        for entry in images:
            path = os.path.join(image_dir, entry['file_name'])
            try:
                image = inference.load_image(path)
            except (FileNotFoundError, ValueError, OSError) as e:
                raise EvaluationError(f'image {entry["id"]} ({path}): '
                                      f'{e}') from None
            yield entry['id'], entry['file_name'], image

    return gt, iterate(), len(images)


def record_files(input_path) -> list:
    """Globs a DataConfig.input_path (str with commas, or list)."""
    specs = input_path if isinstance(input_path, (list, tuple)) else [
        s for s in str(input_path).split(',')]
    files = []
    for spec in (s.strip() for s in specs):
        if spec:
            files += sorted(glob.glob(spec))
    return files


def record_examples(params, max_images: int = 0):
    """Iterator of decoded validation records (numpy dicts)."""
    import tensorflow as tf
    from maskconver_tf.dataloaders import decoder as decoder_lib

    data = params.task.validation_data
    if data.decoder.type != 'tfrecord':
        raise EvaluationError(
            f'validation_data.decoder.type is {data.decoder.type!r}; evaluate '
            'reads TFRecords, or pass --gt_json/--gt_dir/--image_dir')
    files = record_files(data.input_path)
    if not files:
        raise EvaluationError(
            f'validation_data.input_path {data.input_path!r} matches no files '
            '(set it with --params_override or pass --gt_json/--gt_dir/'
            '--image_dir)')
    decoder = decoder_lib.TfExampleDecoder(
        panoptic_category_mask_key=data.decoder.panoptic_category_mask_key,
        panoptic_instance_mask_key=data.decoder.panoptic_instance_mask_key)
    dataset = tf.data.TFRecordDataset(files).map(decoder.decode)
    if max_images:
        dataset = dataset.take(max_images)
    for example in dataset.as_numpy_iterator():
        yield example


def _image_id(source_id):
    text = source_id.decode() if isinstance(source_id, bytes) else str(
        source_id)
    return (int(text) if text.isdigit() else text), text


def add_groundtruth(writer, image_id, file_name, example, descriptor):
    """Writes one decoded record as GT, marking crowd segments iscrowd 1.

    instance_mask k + 1 is object k of the record's lists, so a thing
    segment's instance id gives its `groundtruth_is_crowd` flag.
    """
    from maskconver_tf.evaluation.pq import OFFSET
    category = example['category_mask']
    instance = example['instance_mask']
    annotation = writer.add(image_id, file_name, category, instance,
                            height=category.shape[0], width=category.shape[1])
    crowd = np.asarray(example['groundtruth_is_crowd'], bool)
    if not crowd.any():
        return annotation
    # Same keys, same order as `encode_panoptic` (ascending category *
    # OFFSET + instance, void dropped), so segment i has key keys[i].
    thing = np.zeros([len(descriptor.id_to_channel)], bool)
    thing[descriptor.thing_ids] = True
    cat = category.astype(np.int64)
    inst = instance.astype(np.int64)
    is_thing = thing[cat]
    key = np.where(is_thing, cat * OFFSET + inst, cat * OFFSET)
    valid = (cat != 0) & ~(is_thing & (inst == 0))
    keys = np.unique(key[valid])
    segments = annotation['segments_info']
    if len(keys) != len(segments):
        raise AssertionError('ground-truth segment order does not match the '
                             'writer')
    for seg, k in zip(segments, keys):
        inst_id = int(k % OFFSET)
        if inst_id and inst_id <= len(crowd) and crowd[inst_id - 1]:
            seg['iscrowd'] = 1
    return annotation


# Main -----------------------------------------------------------------------
def evaluate(predictor, output_dir, *, params=None, gt_json=None, gt_dir=None,
             image_dir=None, max_images: int = 0, num_workers: int = 1,
             show_progress: bool = True) -> dict:
    """Predicts the evaluation set, writes it, returns `pq_compute` results.

    Args:
      predictor: `inference.Predictor`.
      output_dir: persistent output directory.
      params: ExperimentConfig (needed for the TFRecord source).
      gt_json, gt_dir, image_dir: COCO-panoptic source (all or none).
      max_images: first N images only (0 = all).
    """
    import tqdm
    from maskconver_tf.evaluation import pq as pq_lib
    from maskconver_tf.evaluation.panoptic_writer import (
        PanopticPredictionWriter)
    from maskconver_tf.predict import slot_scores

    os.makedirs(output_dir, exist_ok=True)
    writer = PanopticPredictionWriter(output_dir, predictor.descriptor)
    progress = dict(desc='evaluate', unit='img', disable=not show_progress,
                    file=sys.stderr)
    if gt_json:
        if not os.path.isdir(gt_dir):
            raise EvaluationError(f'--gt_dir {gt_dir}: no such directory')
        gt, examples, total = coco_examples(gt_json, image_dir, max_images)
        check_categories(predictor.descriptor, gt['categories'], gt_json)
        count = 0
        for image_id, file_name, image in tqdm.tqdm(examples, total=total,
                                                    **progress):
            count += 1
            out = predictor.predict(image)
            writer.add(image_id, file_name, out['category_mask'],
                       out['instance_mask'], height=image.shape[0],
                       width=image.shape[1],
                       scores=slot_scores(out['classes'], out['scores']))
        gt_json_used, gt_folder = gt_json, gt_dir
        if max_images and max_images < len(gt['images']):
            # pq_compute needs a prediction for every GT image.
            kept = {e['id'] for e in gt['images'][:max_images]}
            subset = dict(gt, images=gt['images'][:max_images],
                          annotations=[a for a in gt['annotations']
                                       if a['image_id'] in kept])
            gt_json_used = os.path.join(output_dir, 'groundtruth_subset.json')
            with open(gt_json_used, 'w') as f:
                json.dump(subset, f)
    else:
        if params is None:
            raise EvaluationError('no ground truth: pass --gt_json/--gt_dir/'
                                  '--image_dir or an experiment config whose '
                                  'validation_data names TFRecords')
        from maskconver_tf.tasks.maskconver import descriptor_for
        gt_descriptor = descriptor_for(params.task)
        check_categories(predictor.descriptor,
                         gt_descriptor.to_coco_categories(),
                         f'dataset {params.task.dataset!r}')
        gt_root = os.path.join(output_dir, 'groundtruth')
        gt_writer = PanopticPredictionWriter(gt_root, gt_descriptor)
        gt_writer.json_path = os.path.join(gt_root, 'panoptic.json')
        count = 0
        for example in tqdm.tqdm(record_examples(params, max_images),
                                 total=max_images or None, **progress):
            image_id, text = _image_id(example['source_id'])
            file_name = f'{text}.png'
            add_groundtruth(gt_writer, image_id, file_name, example,
                            gt_descriptor)
            out = predictor.predict(example['image'])
            writer.add(image_id, file_name, out['category_mask'],
                       out['instance_mask'],
                       height=example['image'].shape[0],
                       width=example['image'].shape[1],
                       scores=slot_scores(out['classes'], out['scores']))
            count += 1
        if not count:
            raise EvaluationError('the validation TFRecords hold no examples')
        gt_json_used = gt_writer.write_json()
        gt_folder = gt_writer.png_dir
    pred_json = writer.write_json()
    results = pq_lib.pq_compute(gt_json_used, pred_json, gt_folder,
                                writer.png_dir, num_workers=num_workers)
    with open(gt_json_used) as f:
        categories = json.load(f)['categories']
    report = dict(results, per_class={str(k): v for k, v in
                                      results['per_class'].items()})
    report['settings'] = {
        'model': predictor.path, 'backend': predictor.backend,
        'input_size': list(predictor.input_size),
        'groundtruth_json': gt_json_used, 'groundtruth_dir': gt_folder,
        'predictions_json': pred_json, 'num_images': count,
    }
    with open(os.path.join(output_dir, 'pq.json'), 'w') as f:
        json.dump(report, f, indent=1)
    results['table'] = pq_lib.format_table(results, categories)
    return results


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='python -m maskconver_tf.evaluate',
        description='Predict an evaluation set, write COCO-panoptic '
                    'predictions and score them with official PQ.')
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument('--checkpoint_path', help='model_dir or checkpoint '
                       'prefix (model_dir/ckpt-N)')
    model.add_argument('--saved_model_dir', help='export dir or its '
                       'saved_model/ subdir')
    model.add_argument('--tflite', help='.tflite file (labels from <model>.'
                       'json)')
    parser.add_argument('--experiment', help='registered experiment name')
    parser.add_argument('--config_file', action='append',
                        help='experiment YAML override; repeatable')
    parser.add_argument('--params_override', help='YAML/JSON string or '
                        'a.b=c,d=e overrides, applied last')
    parser.add_argument('--output_dir', required=True,
                        help='predictions, ground truth (TFRecord source) '
                             'and pq.json go here (kept)')
    parser.add_argument('--gt_json', help='COCO panoptic ground-truth JSON')
    parser.add_argument('--gt_dir', help='its panoptic PNG folder')
    parser.add_argument('--image_dir', help='its image folder')
    parser.add_argument('--max_images', type=int, default=0,
                        help='evaluate the first N images only (0 = all)')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes for PQ scoring')
    args = parser.parse_args(argv)
    coco = [args.gt_json, args.gt_dir, args.image_dir]
    if any(coco) and not all(coco):
        parser.error('--gt_json, --gt_dir and --image_dir go together')
    if args.max_images < 0:
        parser.error('--max_images must be >= 0')
    return args


def main(argv=None) -> int:
    args = _parse_args(argv)
    from maskconver_tf import inference
    from maskconver_tf.evaluation.pq import PanopticEvalError
    model_path = args.checkpoint_path or args.saved_model_dir or args.tflite
    try:
        for flag, path in (('--checkpoint_path', args.checkpoint_path),
                           ('--saved_model_dir', args.saved_model_dir),
                           ('--tflite', args.tflite)):
            if path and not (os.path.exists(path) or
                             os.path.exists(path + '.index')):
                raise EvaluationError(f'{flag} {path}: no such file or '
                                      'directory')
        if args.saved_model_dir and inference.detect_backend(
                model_path) != 'saved_model':
            raise EvaluationError(f'--saved_model_dir {model_path}: no '
                                  'saved_model.pb in it or in saved_model/')
        if args.tflite and inference.detect_backend(model_path) != 'tflite':
            raise EvaluationError(f'--tflite {model_path}: not a .tflite file')
        if args.checkpoint_path and inference.detect_backend(
                model_path) != 'checkpoint':
            raise EvaluationError(f'--checkpoint_path {model_path}: not a '
                                  'checkpoint (use --saved_model_dir / '
                                  '--tflite for exports)')
        predictor = inference.load_predictor(
            model_path, experiment=args.experiment,
            config_file=args.config_file,
            params_override=args.params_override)
        params = getattr(predictor, 'params', None)
        if params is None and not args.gt_json:
            params = inference.load_params(args.experiment, args.config_file,
                                           args.params_override)
        results = evaluate(predictor, args.output_dir, params=params,
                           gt_json=args.gt_json, gt_dir=args.gt_dir,
                           image_dir=args.image_dir,
                           max_images=args.max_images,
                           num_workers=args.workers)
    except (EvaluationError, inference.InferenceError, PanopticEvalError,
            FileNotFoundError, KeyError) as e:
        message = ' '.join(str(e).split())
        print(f'evaluate: error: {message}', file=sys.stderr)
        return 2
    print(results['table'])
    all_ = results['All']
    pq = 'n/a' if all_['pq'] is None else f'{100 * all_["pq"]:.3f}'
    print(f'evaluate: PQ {pq} over {all_["n"]} categories -> '
          f'{os.path.join(args.output_dir, "pq.json")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
