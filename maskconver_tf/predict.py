r"""Panoptic predictions for image files: overlays + COCO panoptic output.

    python -m maskconver_tf.predict --model PATH --input FILE|GLOB|DIR \
        [--input ...] --output_dir O [--experiment E --config_file Y \
        --params_override S] [--max_images N] [--alpha A] [--no_labels]

PATH is a checkpoint (a model_dir with params.yaml, or a ckpt prefix with
--experiment), an export dir / SavedModel dir, or a .tflite (see
`maskconver_tf.inference`). Any image size and mode works: grayscale,
palette, RGBA, CMYK ... are converted to RGB, the model input is
preprocessed with the shared `preprocess_image`, and masks are mapped back
to the original size.

Writes, per image, O/overlays/<stem>.png (segment colours, outlines, class
names) and O/panoptic/<stem>.png (COCO panoptic ids), and one
O/predictions.json (images, annotations with dataset category ids and
scores, categories). A missing or corrupt file is reported and counted;
the rest go on. Exit code: 0 if at least one image was predicted, 1 if none
was found or all failed, 2 for bad arguments or an unloadable model.
"""

import argparse
import collections
import glob
import os
import sys
from typing import List, Sequence, Tuple

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif',
                    '.tiff', '.webp', '.ppm', '.pgm')
_GLOB_CHARS = set('*?[')


def collect_inputs(specs: Sequence[str]) -> Tuple[List[str], List[Tuple[str,
                                                                      str]]]:
    """Expands --input values into image paths.

    A directory gives its image files (by extension, sorted, not
    recursive); a pattern with * ? [ is globbed (sorted); anything else is
    taken as a file, existing or not (a missing file is then a failure of
    that image, not of the run).

    Returns:
      (paths, problems): paths in order without duplicates; problems are
      (spec, reason) for directories without images and globs matching
      nothing.
    """
    paths, problems, seen = [], [], set()

    def add(p):
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(
                os.path.join(spec, n) for n in os.listdir(spec)
                if n.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(spec, n)))
            if not found:
                problems.append((spec, 'directory holds no image files '
                                 f'({", ".join(IMAGE_EXTENSIONS)})'))
            for p in found:
                add(p)
        elif _GLOB_CHARS & set(spec):
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
            if not found:
                problems.append((spec, 'pattern matches no files'))
            for p in found:
                add(p)
        else:
            add(spec)
    return paths, problems


def _unique_stem(path, used):
    stem = os.path.splitext(os.path.basename(path))[0] or 'image'
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f'{stem}_{n}'
    used.add(candidate)
    return candidate


def slot_scores(classes, scores):
    """{instance id (slot + 1): score} for kept slots (class id != 0)."""
    return {k + 1: float(s) for k, (c, s) in enumerate(zip(classes, scores))
            if c != 0}


def run(predictor, paths: Sequence[str], output_dir: str, alpha: float = 0.5,
        labels: bool = True, show_progress: bool = True):
    """Predicts every path; returns (num_predicted, failures).

    failures: list of (path, reason) for files that could not be read or
    predicted; they do not stop the run.
    """
    from PIL import Image
    import tqdm
    from maskconver_tf import inference
    from maskconver_tf.evaluation.panoptic_writer import (
        PanopticPredictionWriter)
    from maskconver_tf.visualization import overlay as overlay_lib

    overlay_dir = os.path.join(output_dir, 'overlays')
    os.makedirs(overlay_dir, exist_ok=True)
    writer = PanopticPredictionWriter(output_dir, predictor.descriptor)
    failures, used, done = [], set(), 0
    for path in tqdm.tqdm(paths, desc='predict', unit='img',
                          disable=not show_progress, file=sys.stderr):
        try:
            image = inference.load_image(path)
        except FileNotFoundError:
            failures.append((path, 'missing file'))
            continue
        except (ValueError, OSError) as e:
            failures.append((path, f'corrupt image: {e}'))
            continue
        try:
            out = predictor.predict(image)
            stem = _unique_stem(path, used)
            ext = os.path.splitext(path)[1] or '.png'
            writer.add(done + 1, stem + ext, out['category_mask'],
                       out['instance_mask'], height=image.shape[0],
                       width=image.shape[1],
                       scores=slot_scores(out['classes'], out['scores']))
            Image.fromarray(overlay_lib.overlay(
                image, out['category_mask'], out['instance_mask'],
                predictor.descriptor, alpha=alpha, labels=labels)).save(
                    os.path.join(overlay_dir, stem + '.png'))
        except Exception as e:  # noqa: BLE001  one bad image: go on
            failures.append((path, f'prediction failed: {type(e).__name__}: '
                                   f'{" ".join(str(e).split())}'))
            continue
        done += 1
    writer.write_json()
    return done, failures


def _reason_kind(reason):
    return reason.split(':')[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m maskconver_tf.predict',
        description='Panoptic predictions (overlay PNGs + COCO panoptic '
                    'PNG/JSON) for image files, globs or folders.')
    parser.add_argument('--model', required=True,
                        help='model_dir / checkpoint, export or SavedModel '
                             'dir, or .tflite')
    parser.add_argument('--input', required=True, action='append',
                        help='image file, glob ("imgs/*.jpg", quoted) or '
                             'folder; repeatable')
    parser.add_argument('--output_dir', required=True)
    parser.add_argument('--experiment', help='registered experiment (for a '
                        'checkpoint without params.yaml)')
    parser.add_argument('--config_file', action='append',
                        help='experiment YAML override; repeatable')
    parser.add_argument('--params_override', help='YAML/JSON string or '
                        'a.b=c,d=e overrides, applied last')
    parser.add_argument('--max_images', type=int, default=0,
                        help='predict at most this many images (0 = all)')
    parser.add_argument('--alpha', type=float, default=0.5,
                        help='segment colour weight in the overlays')
    parser.add_argument('--no_labels', action='store_true',
                        help='no class names on the overlays')
    args = parser.parse_args(argv)
    if args.max_images < 0:
        parser.error('--max_images must be >= 0')
    if not 0.0 <= args.alpha <= 1.0:
        parser.error('--alpha must be in [0, 1]')

    paths, problems = collect_inputs(args.input)
    for spec, reason in problems:
        print(f'predict: {spec}: {reason}', file=sys.stderr)
    if args.max_images:
        paths = paths[:args.max_images]
    if not paths:
        print('predict: error: no input images found', file=sys.stderr)
        return 1

    from maskconver_tf import inference
    try:
        predictor = inference.load_predictor(
            args.model, experiment=args.experiment,
            config_file=args.config_file,
            params_override=args.params_override)
    except (inference.InferenceError, FileNotFoundError, ValueError,
            KeyError) as e:
        print(f'predict: error: {" ".join(str(e).split())}', file=sys.stderr)
        return 2

    done, failures = run(predictor, paths, args.output_dir, alpha=args.alpha,
                         labels=not args.no_labels)
    for path, reason in failures:
        print(f'predict: failed {path}: {reason}', file=sys.stderr)
    kinds = collections.Counter(_reason_kind(r) for _, r in failures)
    detail = (' (' + ', '.join(f'{k}: {n}' for k, n in sorted(kinds.items()))
              + ')') if kinds else ''
    print(f'predict: {done} predicted, {len(failures)} failed{detail} -> '
          f'{args.output_dir} ({predictor.backend} {predictor.path})')
    return 0 if done else 1


if __name__ == '__main__':
    sys.exit(main())
