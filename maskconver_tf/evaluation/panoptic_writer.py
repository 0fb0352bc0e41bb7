"""Category / instance masks -> COCO panoptic prediction (PNG + JSON).

Predictions are written to a persistent directory (never a temp dir), so any
panopticapi-exact evaluator can rescore them:

  output_dir/panoptic/<image stem>.png   RGB-encoded segment ids
  output_dir/predictions.json            images, annotations, categories

Score them with
  pq_compute(gt_json, 'output_dir/predictions.json', gt_dir,
             'output_dir/panoptic').

Encoding rules (`encode_panoptic`):
- things: one segment per (category, instance) with instance > 0;
- stuff: one segment per category; the instance mask is ignored;
- category 0 is VOID; thing pixels with instance 0 also become VOID: they
  carry no instance, and merging them into one made-up instance would add a
  false segment, while VOID is never penalised beyond the missed GT segment;
- segment ids are 1..N in ascending (category id, instance id) order, so they
  do not depend on pixel order;
- area and bbox [x, y, w, h] are computed from the pixels; iscrowd is 0.
"""

import json
import os
from typing import Mapping, Optional

import numpy as np
from PIL import Image

from maskconver_tf.evaluation.pq import OFFSET, id2rgb


def encode_panoptic(category_mask, instance_mask, descriptor,
                    scores: Optional[Mapping[int, float]] = None):
    """Encodes one image's panoptic prediction in COCO panoptic format.

    Args:
      category_mask: integer [H, W], dataset category ids, 0 = void.
      instance_mask: integer [H, W], instance ids >= 0 (0 = no instance);
        only read on thing pixels.
      descriptor: `DatasetDescriptor`; every non-zero category id must be one
        of its categories.
      scores: optional {instance id: score}; thing segments of those instances
        get a "score" in segments_info.
    Returns:
      (rgb, segments_info): uint8 [H, W, 3] PNG pixels (id = R + 256 G +
      256^2 B, 0 = void) and a list of {id, category_id, area, bbox, iscrowd
      [, score]} dicts in id order.
    Raises:
      ValueError: bad shapes or dtypes, negative instances, or category ids
        that are not in the descriptor.
    """
    category_mask = np.asarray(category_mask)
    instance_mask = np.asarray(instance_mask)
    for name, m in (('category_mask', category_mask),
                    ('instance_mask', instance_mask)):
        if m.ndim != 2 or not np.issubdtype(m.dtype, np.integer):
            raise ValueError(f'{name} must be an integer [H, W] array, got '
                             f'{m.dtype} {list(m.shape)}')
    if category_mask.shape != instance_mask.shape:
        raise ValueError(f'category_mask {list(category_mask.shape)} and '
                         f'instance_mask {list(instance_mask.shape)} differ in '
                         'shape')
    if instance_mask.size and instance_mask.min() < 0:
        raise ValueError('instance_mask has negative ids; 0 means no instance')
    present = np.unique(category_mask)
    unknown = [int(c) for c in present if c != 0 and c not in descriptor]
    if unknown:
        raise ValueError(f'category_mask has category ids {unknown} that are '
                         f'not in {descriptor.source} (known ids '
                         f'{descriptor.ids})')

    height, width = category_mask.shape
    category = category_mask.astype(np.int64)
    instance = instance_mask.astype(np.int64)
    thing_table = np.zeros([len(descriptor.id_to_channel)], bool)
    thing_table[descriptor.thing_ids] = True
    is_thing = thing_table[category]
    # Segment key: category * OFFSET + instance (0 for stuff); -1 = void.
    key = np.where(is_thing, category * OFFSET + instance, category * OFFSET)
    key[(category == 0) | (is_thing & (instance == 0))] = -1
    keys, inverse, areas = np.unique(key.ravel(), return_inverse=True,
                                     return_counts=True)
    first = 1 if keys.size and keys[0] == -1 else 0
    num = keys.size - first
    if num >= OFFSET:
        raise ValueError(f'{num} segments do not fit in a 24-bit PNG id')
    ids = np.arange(keys.size, dtype=np.int64) + (1 - first)  # void -> 0
    panoptic = ids[inverse].reshape(height, width)

    # Row / column extents per segment from [segments, H] and [segments, W]
    # occupancy tables, one pass over the pixels each.
    rows = np.repeat(np.arange(height), width)
    cols = np.tile(np.arange(width), height)
    by_row = np.bincount(inverse * height + rows,
                         minlength=keys.size * height).reshape(-1, height) > 0
    by_col = np.bincount(inverse * width + cols,
                         minlength=keys.size * width).reshape(-1, width) > 0
    y0 = by_row.argmax(1)
    y1 = height - 1 - by_row[:, ::-1].argmax(1)
    x0 = by_col.argmax(1)
    x1 = width - 1 - by_col[:, ::-1].argmax(1)

    segments_info = []
    for i in range(first, keys.size):
        cat, inst = divmod(int(keys[i]), OFFSET)
        seg = {'id': int(ids[i]), 'category_id': cat, 'area': int(areas[i]),
               'bbox': [int(x0[i]), int(y0[i]), int(x1[i] - x0[i] + 1),
                        int(y1[i] - y0[i] + 1)],
               'iscrowd': 0}
        if scores is not None and inst in scores:
            seg['score'] = float(scores[inst])
        segments_info.append(seg)
    return id2rgb(panoptic), segments_info


def decode_panoptic(ids, segments_info, descriptor):
    """COCO panoptic segment ids -> category / instance masks (the inverse).

    Args:
      ids: integer [H, W] segment ids (`pq.rgb2id` of a PNG).
      segments_info: COCO segments_info list; ids it does not list (and 0
        unless listed) become void. Crowd segments decode like any other.
      descriptor: `DatasetDescriptor` telling things from stuff.
    Returns:
      (category_mask, instance_mask), int32 [H, W]: thing segments get
      instances 1, 2, ... in segments_info order, stuff gets instance 0.
    """
    ids = np.asarray(ids)
    category_mask = np.zeros(ids.shape, np.int32)
    instance_mask = np.zeros(ids.shape, np.int32)
    num_instances = 0
    for seg in segments_info:
        mask = ids == seg['id']
        category_mask[mask] = seg['category_id']
        if descriptor.is_thing(seg['category_id']):
            num_instances += 1
            instance_mask[mask] = num_instances
    return category_mask, instance_mask


class PanopticPredictionWriter:
    """Writes per-image panoptic predictions as a COCO panoptic prediction set.

    Usage:
      with PanopticPredictionWriter(output_dir, descriptor) as writer:
          writer.add(image_id, file_name, category_mask, instance_mask)
      # -> output_dir/panoptic/*.png and output_dir/predictions.json

    Attributes:
      png_dir: output_dir/panoptic.
      json_path: output_dir/predictions.json.
    """

    def __init__(self, output_dir, descriptor):
        self.output_dir = os.fspath(output_dir)
        self.descriptor = descriptor
        self.png_dir = os.path.join(self.output_dir, 'panoptic')
        self.json_path = os.path.join(self.output_dir, 'predictions.json')
        os.makedirs(self.png_dir, exist_ok=True)
        self._images = []
        self._annotations = []
        self._stems = {}
        self._image_ids = set()

    def add(self, image_id, file_name, category_mask, instance_mask,
            height=None, width=None, scores=None):
        """Encodes one image and writes its PNG.

        Args:
          image_id: the image id of the ground truth (pairs the prediction).
          file_name: the image file name (e.g. '000000139.jpg'); the PNG is
            panoptic/<stem>.png.
          category_mask, instance_mask, scores: as `encode_panoptic`, already
            at the original image size.
          height, width: the original image size, if known; a mask of another
            size is an error (resize / crop before writing).
        Returns:
          The annotation dict (image_id, file_name, segments_info).
        """
        label = f'image {image_id} ({file_name})'
        shape = np.shape(category_mask)
        if (height is not None and height != shape[0]) or (
                width is not None and width != shape[1]):
            raise ValueError(f'{label}: masks are {shape[0]}x{shape[1]} (HxW) '
                             f'but the image is {height}x{width}; resize or '
                             'crop them to the original size first')
        stem = os.path.splitext(os.path.basename(file_name))[0]
        if stem in self._stems:
            raise ValueError(f'{label}: PNG name {stem}.png is already used by '
                             f'image {self._stems[stem]}')
        if image_id in self._image_ids:
            raise ValueError(f'{label}: image id {image_id} was already added')
        try:
            rgb, segments_info = encode_panoptic(
                category_mask, instance_mask, self.descriptor, scores)
        except ValueError as e:
            raise ValueError(f'{label}: {e}') from None
        Image.fromarray(rgb).save(os.path.join(self.png_dir, stem + '.png'))
        self._stems[stem] = image_id
        self._image_ids.add(image_id)
        self._images.append({'id': image_id, 'file_name': file_name,
                             'height': int(shape[0]), 'width': int(shape[1])})
        annotation = {'image_id': image_id, 'file_name': stem + '.png',
                      'segments_info': segments_info}
        self._annotations.append(annotation)
        return annotation

    def write_json(self):
        """Writes predictions.json (all images added so far); returns its path."""
        data = {'images': self._images, 'annotations': self._annotations,
                'categories': self.descriptor.to_coco_categories()}
        with open(self.json_path, 'w') as f:
            json.dump(data, f)
        return self.json_path

    close = write_json

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.write_json()
