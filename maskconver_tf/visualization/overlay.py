"""Panoptic overlays: segment colours blended over the image, outlines, labels.

Colours come from the dataset descriptor (`DatasetDescriptor.palette()`,
COCO's category colours for COCO). Thing instances of one category get the
category colour shifted by a per-instance offset (`INSTANCE_JITTER`, cycled
by instance id), so two touching objects of one class differ. Outlines mark
every non-void pixel with a 4-neighbour of another segment (or void); labels
(category names, PIL's default font) sit at each segment's centre.
"""

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUTLINE_COLOR = (255, 255, 255)
LABEL_TEXT_COLOR = (255, 255, 255)
LABEL_BOX_COLOR = (0, 0, 0)
# RGB offsets for thing instances 1, 2, 3, ... (cycled). Instance 1 keeps the
# category colour; the others are shifted far enough to tell apart.
INSTANCE_JITTER = np.array([
    [0, 0, 0], [60, -40, 20], [-50, 40, -30], [30, 50, -60],
    [-40, -50, 50], [70, 20, 40], [-20, 70, 10], [50, -70, -20],
], np.int64)


def _shift(color: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """color + offset per channel, reflected (color - offset) if out of range.

    Reflecting instead of clipping keeps a non-zero offset visible even for
    saturated colours.
    """
    up = color + offset
    return np.where((up < 0) | (up > 255), color - offset, up)


def segment_colors(category_mask, instance_mask, descriptor) -> np.ndarray:
    """Per-pixel segment colour.

    Args:
      category_mask: int [H, W] dataset category ids, 0 = void.
      instance_mask: int [H, W] instance ids (0 = none / stuff).
      descriptor: `DatasetDescriptor` (palette and thing flags).
    Returns:
      uint8 [H, W, 3]; void pixels are 0.
    Raises:
      ValueError: a category id the descriptor does not know.
    """
    category = np.asarray(category_mask).astype(np.int64)
    instance = np.asarray(instance_mask).astype(np.int64)
    palette = descriptor.palette().astype(np.int64)
    present = np.unique(category)
    unknown = [int(c) for c in present if c != 0 and c not in descriptor]
    if unknown:
        raise ValueError(f'category ids {unknown} are not in '
                         f'{descriptor.source}')
    colors = palette[category]
    thing = np.zeros([len(palette)], bool)
    thing[descriptor.thing_ids] = True
    jittered = thing[category] & (instance > 0)
    if jittered.any():
        cycle = (instance[jittered] - 1) % len(INSTANCE_JITTER)
        offsets = INSTANCE_JITTER[cycle]
        colors[jittered] = _shift(colors[jittered], offsets)
    colors[category == 0] = 0
    return colors.astype(np.uint8)


def segment_keys(category_mask, instance_mask, descriptor=None) -> np.ndarray:
    """int64 [H, W] segment key: category * 2^32 + instance, -1 = void.

    With a descriptor, stuff pixels ignore the instance (one segment per
    stuff category, as COCO panoptic).
    """
    category = np.asarray(category_mask).astype(np.int64)
    instance = np.asarray(instance_mask).astype(np.int64)
    if descriptor is not None:
        thing = np.zeros([max(len(descriptor.id_to_channel),
                              int(category.max(initial=0)) + 1)], bool)
        thing[descriptor.thing_ids] = True
        instance = np.where(thing[category], instance, 0)
    keys = category * (1 << 32) + instance
    keys[category == 0] = -1
    return keys


def boundaries(category_mask, instance_mask, descriptor=None) -> np.ndarray:
    """bool [H, W]: non-void pixels with a 4-neighbour in another segment.

    Both sides of a border between two segments are marked; a segment's
    border with void is marked on the segment side only.
    """
    keys = segment_keys(category_mask, instance_mask, descriptor)
    edge = np.zeros(keys.shape, bool)
    diff_v = keys[1:, :] != keys[:-1, :]
    diff_h = keys[:, 1:] != keys[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    return edge & (keys >= 0)


def label_anchors(category_mask, instance_mask, descriptor=None,
                  min_area: int = 1):
    """Where to write each segment's label.

    Returns:
      list of (y, x, category_id, instance_id, area), one per segment with
      area >= min_area, in key order; (y, x) is the segment pixel closest to
      its centroid (so it lies on the segment even for rings and crescents).
    """
    keys = segment_keys(category_mask, instance_mask, descriptor)
    flat = keys.ravel()
    valid = flat >= 0
    if not valid.any():
        return []
    uniq, inverse, counts = np.unique(flat[valid], return_inverse=True,
                                      return_counts=True)
    ys, xs = np.divmod(np.nonzero(valid)[0], keys.shape[1])
    cy = np.bincount(inverse, ys, len(uniq)) / counts
    cx = np.bincount(inverse, xs, len(uniq)) / counts
    dist = (ys - cy[inverse]) ** 2 + (xs - cx[inverse]) ** 2
    anchors = []
    for i, key in enumerate(uniq):
        if counts[i] < min_area:
            continue
        members = np.nonzero(inverse == i)[0]
        j = members[np.argmin(dist[members])]
        category, instance = divmod(int(key), 1 << 32)
        anchors.append((int(ys[j]), int(xs[j]), category, instance,
                        int(counts[i])))
    return anchors


def draw_labels(canvas: np.ndarray, anchors, descriptor,
                text_color=LABEL_TEXT_COLOR, box_color=LABEL_BOX_COLOR
                ) -> np.ndarray:
    """Writes category names centred on the anchors (PIL default font)."""
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for y, x, category, _, _ in anchors:
        text = descriptor.category(category).name
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        x0 = int(x - tw / 2)
        y0 = int(y - th / 2)
        draw.rectangle([x0 - 1, y0 - 1, x0 + tw, y0 + th], fill=box_color)
        draw.text((x0 - left, y0 - top), text, fill=text_color, font=font)
    return np.asarray(img)


def overlay(image, category_mask, instance_mask, descriptor,
            alpha: float = 0.5, outline: bool = True, labels: bool = True,
            outline_color: Sequence[int] = OUTLINE_COLOR,
            min_label_area: Optional[int] = None) -> np.ndarray:
    """Blends segment colours over the image, draws outlines and labels.

    Args:
      image: uint8 [H, W, 3] RGB.
      category_mask, instance_mask: int [H, W] (dataset ids; instance 0 =
        none), same size as the image.
      descriptor: `DatasetDescriptor`.
      alpha: colour weight on segment pixels: out = (1 - alpha) * image +
        alpha * colour (rounded); void pixels keep the image.
      outline: paint `boundaries` pixels with `outline_color`.
      labels: write category names at segment centres.
      min_label_area: segments smaller than this get no label (default: an
        area of about 1/400 of the image, at least 16 px).
    Returns:
      uint8 [H, W, 3].
    """
    image = np.asarray(image)
    category_mask = np.asarray(category_mask)
    instance_mask = np.asarray(instance_mask)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f'image must be [H, W, 3], got {list(image.shape)}')
    if category_mask.shape != image.shape[:2] or (
            instance_mask.shape != image.shape[:2]):
        raise ValueError(f'masks {list(category_mask.shape)} / '
                         f'{list(instance_mask.shape)} do not match the image '
                         f'{list(image.shape[:2])}')
    colors = segment_colors(category_mask, instance_mask, descriptor)
    on = (category_mask != 0)[..., None]
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colors
    out = np.where(on, np.round(blended), image).astype(np.uint8)
    if outline:
        edge = boundaries(category_mask, instance_mask, descriptor)
        out[edge] = np.asarray(outline_color, np.uint8)
    if labels:
        if min_label_area is None:
            min_label_area = max(16, category_mask.size // 400)
        anchors = label_anchors(category_mask, instance_mask, descriptor,
                                min_area=min_label_area)
        out = draw_labels(out, anchors, descriptor)
    return out


def save_overlay(path, image, category_mask, instance_mask, descriptor,
                 **kwargs) -> str:
    """`overlay` written as a PNG; returns the path."""
    Image.fromarray(overlay(image, category_mask, instance_mask, descriptor,
                            **kwargs)).save(path, format='PNG')
    return path
