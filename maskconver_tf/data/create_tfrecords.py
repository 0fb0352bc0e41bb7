r"""COCO-panoptic folder -> sharded Model Garden TFRecords, with a report.

    python -m maskconver_tf.data.create_tfrecords \
      --image_dir D --panoptic_json J --panoptic_masks_dir M \
      --output_prefix P --num_shards N [--skip_crowd] \
      [--label_mode contiguous|raw] [--num_processes K] [--report_json R]

writes `P-00000-of-0000N.tfrecord` ... (images dealt round-robin in JSON
order, as Model Garden does). One tf.train.Example per written image:

  image/encoded, image/format       original bytes for RGB JPEG/PNG ('jpeg' /
                                    'png'); other modes -> RGB, PNG
  image/height, image/width         int64
  image/filename, image/source_id   file name; the COCO image id as a string
  image/key/sha256                  of image/encoded
  image/object/bbox/{ymin,xmin,ymax,xmax}  float, normalised, from the mask
  image/object/class/label, /text   dataset category id and name
  image/object/area, /is_crowd      JSON area; iscrowd
  image/object/mask                 PNG per segment, 0/1 uint8 [H, W]
  image/segmentation/class/encoded  PNG, descriptor channel per pixel, 0 void
  image/panoptic/category_mask      PNG, dataset category id per pixel, 0 void
  image/panoptic/instance_mask      PNG, k + 1 on thing segment k, else 0

Objects are all written segments (things and stuff) in `segments_info`
order, so instance id k + 1 in the instance mask is object k of the lists.
Mask PNGs are 8-bit when their largest value fits, else 16-bit (never
wrapped); `dataloaders/decoder.py` reads both. Skip policy and problem
reasons: see `maskconver_tf/data/coco_panoptic.py`.
"""

import argparse
import dataclasses
import io
import json
import multiprocessing
import os
import sys
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from PIL import Image

from official.vision.data import tfrecord_lib

from maskconver_tf.data import coco_panoptic
from maskconver_tf.data.coco_panoptic import Problem
from maskconver_tf.data.descriptor import LABEL_MODES, DatasetDescriptor

_CLI = 'maskconver_tf.data.create_tfrecords'


@dataclasses.dataclass
class ConversionReport:
    """What a conversion wrote and what it skipped, and why.

    Attributes:
      images_total: image entries in the JSON (incl. duplicates).
      images_written: examples written.
      segments_written: objects written (all images).
      crowd_segments_voided: crowd segments written as void (`skip_crowd`).
      images_skipped: image-level `Problem`s (image not written).
      segments_skipped: segment-level `Problem`s (segment not written, its
        pixels void).
      notes: `Problem`s that dropped nothing (mode conversion, JSON size).
      output_files: the shard paths.
    """
    images_total: int = 0
    images_written: int = 0
    segments_written: int = 0
    crowd_segments_voided: int = 0
    images_skipped: List[Problem] = dataclasses.field(default_factory=list)
    segments_skipped: List[Problem] = dataclasses.field(default_factory=list)
    notes: List[Problem] = dataclasses.field(default_factory=list)
    output_files: List[str] = dataclasses.field(default_factory=list)

    def add(self, problems):
        for p in problems:
            {coco_panoptic.IMAGE_LEVEL: self.images_skipped,
             coco_panoptic.SEGMENT_LEVEL: self.segments_skipped,
             coco_panoptic.NOTE_LEVEL: self.notes}[p.level].append(p)

    @property
    def problems(self) -> List[str]:
        """Every finding's message: image skips, segment skips, notes."""
        return [p.message for p in
                self.images_skipped + self.segments_skipped + self.notes]

    def skip_reasons(self, level: str) -> Dict[str, int]:
        """reason -> count for 'image' or 'segment' skips."""
        return coco_panoptic.count_reasons(
            self.images_skipped + self.segments_skipped, level)

    def summary(self) -> str:
        """The one-line summary the CLI prints last."""
        def reasons(level):
            counts = self.skip_reasons(level)
            return (' (' + ', '.join(f'{k}: {v}' for k, v in counts.items())
                    + ')') if counts else ''
        line = (f'wrote {self.images_written} of {self.images_total} images and '
                f'{self.segments_written} segments to {len(self.output_files)} '
                f'shard(s); skipped {len(self.images_skipped)} images'
                f'{reasons("image")} and {len(self.segments_skipped)} segments'
                f'{reasons("segment")}')
        if self.crowd_segments_voided:
            line += (f'; {self.crowd_segments_voided} crowd segments written as '
                     'void')
        if self.notes:
            line += f'; {len(self.notes)} notes'
        return line

    def to_dict(self):
        return {
            'images_total': self.images_total,
            'images_written': self.images_written,
            'segments_written': self.segments_written,
            'crowd_segments_voided': self.crowd_segments_voided,
            'images_skipped': [p.to_dict() for p in self.images_skipped],
            'segments_skipped': [p.to_dict() for p in self.segments_skipped],
            'notes': [p.to_dict() for p in self.notes],
            'output_files': list(self.output_files),
            'summary': self.summary(),
        }


def encode_mask_png(mask: np.ndarray, name: str = 'mask') -> bytes:
    """Encodes a non-negative integer mask [H, W] as a grayscale PNG.

    8-bit when max <= 255 (via Model Garden's encoder), 16-bit when
    max <= 65535; larger values raise instead of wrapping.
    """
    peak = int(mask.max()) if mask.size else 0
    if peak <= 255:
        return tfrecord_lib.encode_mask_as_png(mask.astype(np.uint8))
    if peak > coco_panoptic.MAX_UINT16:
        raise ValueError(f'{name}: value {peak} exceeds '
                         f'{coco_panoptic.MAX_UINT16}, the largest a 16-bit '
                         'PNG holds')
    # MG's encoder only sees uint8 data; PIL writes uint16 arrays as 16-bit
    # grayscale ('I;16').
    out = io.BytesIO()
    Image.fromarray(mask.astype(np.uint16)).save(out, format='PNG')
    return out.getvalue()


def example_to_tf_example(example: coco_panoptic.PanopticExample,
                          descriptor: DatasetDescriptor):
    """`PanopticExample` -> tf.train.Example with Model Garden's keys."""
    feature = tfrecord_lib.convert_to_feature
    features = tfrecord_lib.image_info_to_feature_dict(
        example.height, example.width, example.file_name, example.image_id,
        example.encoded, example.format)
    segs = example.segments
    features.update({
        'image/object/bbox/ymin': feature([s.bbox[0] for s in segs], 'float_list'),
        'image/object/bbox/xmin': feature([s.bbox[1] for s in segs], 'float_list'),
        'image/object/bbox/ymax': feature([s.bbox[2] for s in segs], 'float_list'),
        'image/object/bbox/xmax': feature([s.bbox[3] for s in segs], 'float_list'),
        'image/object/class/label': feature(
            [s.category_id for s in segs], 'int64_list'),
        'image/object/class/text': feature(
            [descriptor.category(s.category_id).name.encode('utf8')
             for s in segs], 'bytes_list'),
        'image/object/area': feature([s.area for s in segs], 'float_list'),
        'image/object/is_crowd': feature(
            [int(s.is_crowd) for s in segs], 'int64_list'),
        'image/object/mask': feature(
            [encode_mask_png(s.mask.astype(np.uint8)) for s in segs],
            'bytes_list'),
        'image/segmentation/class/encoded': feature(encode_mask_png(
            example.semantic_mask, 'semantic mask'), 'bytes'),
        'image/panoptic/category_mask': feature(encode_mask_png(
            example.category_mask, 'category mask'), 'bytes'),
        'image/panoptic/instance_mask': feature(encode_mask_png(
            example.instance_mask, 'instance mask'), 'bytes'),
    })
    return tf.train.Example(features=tf.train.Features(feature=features))


# Per-process state for the pool workers (set by `_init_worker`).
_WORKER = {}


def _init_worker(image_dir, masks_dir, descriptor, skip_crowd):
    _WORKER.update(image_dir=image_dir, masks_dir=masks_dir,
                   descriptor=descriptor, skip_crowd=skip_crowd)


def _convert_one(item):
    """(image, annotation) -> (serialized example or None, problems, n, crowd)."""
    image, annotation = item
    w = _WORKER
    example, problems = coco_panoptic.load_example(
        image, annotation, w['image_dir'], w['masks_dir'], w['descriptor'],
        w['skip_crowd'])
    if example is None:
        return None, problems, 0, 0
    # deterministic=True sorts the feature map: its order otherwise depends
    # on a per-process hash seed, and shards must not depend on the pool.
    serialized = example_to_tf_example(
        example, w['descriptor']).SerializeToString(deterministic=True)
    return serialized, problems, len(example.segments), example.crowd_voided


def shard_paths(output_prefix: str, num_shards: int) -> List[str]:
    """Model Garden's shard naming: `P-00000-of-00004.tfrecord`."""
    return [f'{output_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord'
            for i in range(num_shards)]


def convert(image_dir,
            panoptic_json,
            panoptic_masks_dir,
            output_prefix,
            num_shards: int = 1,
            skip_crowd: bool = False,
            label_mode: str = 'contiguous',
            show_progress: bool = False,
            descriptor: Optional[DatasetDescriptor] = None,
            num_processes: int = 0) -> ConversionReport:
    """Converts a COCO-panoptic data set to sharded TFRecords.

    Args:
      image_dir: folder of the images named by `images[].file_name`.
      panoptic_json: COCO-panoptic JSON (images, annotations, categories).
      panoptic_masks_dir: folder of the panoptic PNGs.
      output_prefix: shards are `{output_prefix}-%05d-of-%05d.tfrecord`.
      num_shards: number of shards (images dealt round-robin in JSON order).
      skip_crowd: write crowd segments as void (they stay in the object lists
        with is_crowd = 1).
      label_mode: 'contiguous' or 'raw'; sets the semantic mask's channels
        (see `DatasetDescriptor`). Ignored when `descriptor` is given.
      show_progress: tqdm progress bar on stderr.
      descriptor: categories to validate against; default: the JSON's.
      num_processes: worker processes (0 = in this process). The output is
        identical for any value: results are consumed in input order.

    Returns:
      `ConversionReport`. Bad images and segments are skipped and reported;
      only data-set-level errors raise.

    Raises:
      FileNotFoundError: a missing JSON or folder.
      ValueError: bad arguments, an unreadable JSON, no categories, or a
        category id above 65535.
    """
    if num_shards < 1:
        raise ValueError(f'num_shards must be >= 1, got {num_shards}')
    for path in (image_dir, panoptic_masks_dir):
        if not os.path.isdir(path):
            raise FileNotFoundError(f'{path}: no such directory')
    index = coco_panoptic.load_panoptic_json(panoptic_json)
    if descriptor is None:
        if label_mode not in LABEL_MODES:
            raise ValueError(f'label_mode must be one of {LABEL_MODES}, got '
                             f'{label_mode!r}')
        if not index.categories:
            raise ValueError(f'{panoptic_json}: no "categories"; pass a '
                             'descriptor built from the data set categories')
        descriptor = DatasetDescriptor.from_categories(
            index.categories, label_mode=label_mode, source=str(panoptic_json))
    if descriptor.ids[-1] > coco_panoptic.MAX_UINT16:
        raise ValueError(f'{descriptor.source}: category id {descriptor.ids[-1]} '
                         f'exceeds {coco_panoptic.MAX_UINT16}, the largest a '
                         '16-bit PNG category mask holds')

    report = ConversionReport(
        images_total=len(index.images) + sum(
            p.reason == 'duplicate_image_id' for p in index.problems))
    report.add(index.problems)
    out_dir = os.path.dirname(os.path.abspath(output_prefix))
    os.makedirs(out_dir, exist_ok=True)
    report.output_files = shard_paths(output_prefix, num_shards)

    items = [(image, index.annotations.get(image['id']))
             for image in index.images]
    init_args = (str(image_dir), str(panoptic_masks_dir), descriptor,
                 skip_crowd)
    pool = None
    if num_processes and num_processes > 0:
        # Fork keeps start-up cheap; imap keeps results in input order, so
        # the shards are the same as in-process.
        pool = multiprocessing.get_context('fork').Pool(
            num_processes, initializer=_init_worker, initargs=init_args)
        results = pool.imap(_convert_one, items, chunksize=8)
    else:
        _init_worker(*init_args)
        results = map(_convert_one, items)
    if show_progress:
        from tqdm import tqdm
        results = tqdm(results, total=len(items), desc='converting',
                       unit='img', file=sys.stderr)

    # Not tfrecord_lib.write_tf_record_dataset: it writes every result, while
    # skipped images must leave no record and no gap in the round-robin.
    writers = [tf.io.TFRecordWriter(p) for p in report.output_files]
    try:
        for serialized, problems, n_segments, n_crowd in results:
            report.add(problems)
            if serialized is None:
                continue
            writers[report.images_written % num_shards].write(serialized)
            report.images_written += 1
            report.segments_written += n_segments
            report.crowd_segments_voided += n_crowd
    finally:
        for w in writers:
            w.close()
        if pool is not None:
            pool.close()
            pool.join()
    return report


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=f'python -m {_CLI}',
        description='Validate a COCO-panoptic data set and write Model Garden '
                    'TFRecords (sharded), with a report of every skip.')
    parser.add_argument('--image_dir', required=True, help='folder of images')
    parser.add_argument('--panoptic_json', required=True,
                        help='COCO panoptic JSON (images, annotations, '
                             'categories)')
    parser.add_argument('--panoptic_masks_dir', required=True,
                        help='folder of the panoptic PNGs')
    parser.add_argument('--output_prefix', required=True,
                        help='shards are PREFIX-00000-of-0000N.tfrecord')
    parser.add_argument('--num_shards', type=int, default=1)
    parser.add_argument('--skip_crowd', action='store_true',
                        help='write crowd segments as void')
    parser.add_argument('--label_mode', choices=LABEL_MODES,
                        default='contiguous',
                        help='channels of image/segmentation/class/encoded')
    parser.add_argument('--categories', default=None,
                        help="categories to validate against: 'coco', "
                             "'shapes' or a JSON path (default: the JSON's)")
    parser.add_argument('--num_processes', type=int, default=0,
                        help='worker processes (0: in-process)')
    parser.add_argument('--report_json', default=None,
                        help='also write the full report (every problem) here')
    parser.add_argument('--max_printed', type=int, default=20,
                        help='problems printed before the summary')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse_args(argv)
    try:
        descriptor = None
        if args.categories:
            descriptor = DatasetDescriptor.from_spec(args.categories,
                                                     args.label_mode)
        report = convert(
            args.image_dir, args.panoptic_json, args.panoptic_masks_dir,
            args.output_prefix, num_shards=args.num_shards,
            skip_crowd=args.skip_crowd, label_mode=args.label_mode,
            show_progress=True, descriptor=descriptor,
            num_processes=args.num_processes)
    except (OSError, ValueError) as e:
        print(f'{_CLI}: error: {e}', file=sys.stderr)
        return 2
    messages = report.problems
    for message in messages[:args.max_printed]:
        print(message, file=sys.stderr)
    if len(messages) > args.max_printed:
        more = len(messages) - args.max_printed
        hint = f' (all in {args.report_json})' if args.report_json else (
            ' (use --report_json to keep them all)')
        print(f'... and {more} more{hint}', file=sys.stderr)
    if args.report_json:
        with open(args.report_json, 'w') as f:
            json.dump(report.to_dict(), f, indent=1)
    print(f'{_CLI}: {report.summary()}')
    if report.images_written == 0:
        print(f'{_CLI}: error: no image was written', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
