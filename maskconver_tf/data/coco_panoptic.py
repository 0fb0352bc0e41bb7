"""Reading and validating a COCO-panoptic data set, one image at a time.

A COCO-panoptic data set is one JSON (`images`, `annotations` with
`segments_info`, `categories`) plus one RGB PNG per image whose pixels encode
segment ids (id = R + 256 G + 256^2 B, 0 = void). This module turns one image
entry into validated numpy arrays (`PanopticExample`) and names every problem
it meets with the file, the image id and the segment id.

Skip policy (what is dropped and at which level; nothing is dropped silently,
every drop is a `Problem` in the result):

Image-level skips (the image is not written):
  missing_image, corrupt_image   image file absent / undecodable / truncated.
  missing_mask, corrupt_mask     panoptic PNG absent / undecodable.
  size_mismatch                  image and panoptic PNG differ in size.
  no_annotation                  image entry without an `annotations` entry.
  duplicate_image_id             a second image entry with an id already seen.
  too_many_segments              more than 65535 segments (16-bit PNG limit).
  bad_annotation                 malformed entry (missing keys, bad types).
Segment-level skips (the image is written, the segment is not; its pixels,
if any, are written as void = 0 in every mask):
  id_not_in_segments_info  a PNG id without a `segments_info` entry: its pixels
                           cannot be labelled, so they become void (skipping
                           the whole image for one unlabelled blob would lose
                           far more than it protects).
  id_not_in_png            a `segments_info` entry with no pixels: nothing to
                           write, dropped from the object lists.
  unknown_category         `category_id` not in the descriptor: pixels void.
  duplicate_segment_id     a second `segments_info` entry with the same id.
  invalid_segment_id       a segment id of 0 (reserved for void) or < 0.
Notes (nothing dropped, recorded for the report):
  converted_mode           grayscale / RGBA / CMYK / palette / other image
                           converted to RGB and re-encoded as PNG.
  json_size_mismatch       `height`/`width` in the JSON differ from the file;
                           the file's size is used.
Crowd segments (`iscrowd` = 1) are kept as ordinary segments unless
`skip_crowd`, in which case their pixels are void in every mask while the
segment stays in the object lists with is_crowd = 1 (counted separately).
"""

import collections
import dataclasses
import io
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from maskconver_tf.data.descriptor import DatasetDescriptor

# Largest id a 16-bit PNG mask holds; instance and category ids beyond it are
# refused rather than wrapped.
MAX_UINT16 = 65535

IMAGE_LEVEL = 'image'
SEGMENT_LEVEL = 'segment'
NOTE_LEVEL = 'note'


@dataclasses.dataclass(frozen=True)
class Problem:
    """One validation finding.

    Attributes:
      level: 'image' (image skipped), 'segment' (segment skipped, pixels void)
        or 'note' (nothing dropped).
      reason: short stable key, e.g. 'missing_image' (see module docstring).
      file: the file concerned (image, PNG or JSON path).
      image_id: COCO image id, or None if unknown.
      segment_id: segment id for segment-level problems, else None.
      message: full human-readable sentence naming file, image and segment.
    """
    level: str
    reason: str
    file: str
    image_id: Optional[int]
    segment_id: Optional[int]
    message: str

    def to_dict(self):
        return dataclasses.asdict(self)


def _problem(level, reason, file, image_id, detail, segment_id=None):
    where = f'{file}: image {image_id}'
    if segment_id is not None:
        where += f', segment {segment_id}'
    return Problem(level, reason, str(file), image_id, segment_id,
                   f'{where}: {detail}')


@dataclasses.dataclass
class Segment:
    """One written segment.

    Attributes:
      id: segment id in the panoptic PNG.
      category_id: dataset category id.
      is_crowd: COCO `iscrowd` flag.
      area: float, the JSON area if given, else the pixel count.
      pixel_count: int, pixels carrying this id in the PNG.
      bbox: (ymin, xmin, ymax, xmax) float, normalised to [0, 1], from the
        mask pixels (pixel edges: xmax = (last column + 1) / width).
      mask: bool [H, W], the segment's pixels.
    """
    id: int
    category_id: int
    is_crowd: bool
    area: float
    pixel_count: int
    bbox: Tuple[float, float, float, float]
    mask: np.ndarray


@dataclasses.dataclass
class PanopticExample:
    """A validated image with its panoptic labels.

    Attributes:
      image_id: COCO image id.
      file_name: image file name as in the JSON.
      encoded: bytes, the encoded image (original bytes when the file is an
        RGB JPEG or PNG, else the RGB conversion re-encoded as PNG).
      format: 'jpeg' or 'png'.
      height, width: int, image size in pixels.
      segments: written segments in `segments_info` order (segment-level
        skips removed). Instance id of `segments[k]` is k + 1.
      category_mask: int32 [H, W], dataset category id per pixel, 0 = void.
      instance_mask: int32 [H, W], k + 1 for pixels of thing segment k,
        0 for stuff and void (and crowd when `skip_crowd`).
      semantic_mask: int32 [H, W], descriptor channel of each pixel's
        category, 0 = void.
      crowd_voided: int, crowd segments written as void (`skip_crowd`).
    """
    image_id: int
    file_name: str
    encoded: bytes
    format: str
    height: int
    width: int
    segments: List[Segment]
    category_mask: np.ndarray
    instance_mask: np.ndarray
    semantic_mask: np.ndarray
    crowd_voided: int = 0


class _Skip(Exception):
    """Raised inside `load_example` to skip the image with a `Problem`."""

    def __init__(self, problem):
        super().__init__(problem.message)
        self.problem = problem


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic id decoding, as panopticapi's `rgb2id`.

    Args:
      rgb: uint8 [H, W, C] with C >= 3 (channels past the third, e.g. alpha,
        are ignored as panopticapi does), or an already single-channel
        [H, W] array whose values are the ids.

    Returns:
      int64 [H, W] segment ids (R + 256 G + 256^2 B), 0 = void.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim == 3:
        rgb = rgb.astype(np.int64)
        return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    return rgb.astype(np.int64)


def read_panoptic_png(path) -> np.ndarray:
    """Reads a COCO panoptic PNG into int64 [H, W] segment ids.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file cannot be decoded.
    """
    with open(path, 'rb') as f:
        data = f.read()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return rgb_to_id(np.asarray(img))
    except Exception as e:  # PIL raises many types for corrupt files.
        raise ValueError(f'cannot decode PNG ({type(e).__name__}: {e})') from e


def read_image(path) -> Tuple[bytes, str, int, int, Optional[str]]:
    """Reads and fully decodes an image file (to catch truncation).

    Returns:
      (encoded, format, height, width, converted_from): `encoded` is the file's
      own bytes when it is an RGB JPEG or PNG (`format` 'jpeg' / 'png',
      `converted_from` None); otherwise the image converted to RGB and
      re-encoded as lossless PNG, with `converted_from` naming the source
      mode/format (e.g. 'CMYK JPEG').

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file cannot be decoded or converted to RGB.
    """
    with open(path, 'rb') as f:
        data = f.read()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            fmt, mode = img.format, img.mode
            width, height = img.size
            if mode == 'RGB' and fmt in ('JPEG', 'PNG'):
                return data, fmt.lower(), height, width, None
            rgb = img.convert('RGB')
    except Exception as e:  # PIL raises many types for corrupt files.
        raise ValueError(f'cannot decode image ({type(e).__name__}: {e})') from e
    out = io.BytesIO()
    rgb.save(out, format='PNG')
    return out.getvalue(), 'png', height, width, f'{mode} {fmt}'


@dataclasses.dataclass
class PanopticIndex:
    """A COCO-panoptic JSON, indexed by image.

    Attributes:
      json_path: the JSON file.
      images: list of image dicts in JSON order (first entry per id).
      annotations: dict image_id -> annotation dict.
      categories: the JSON's `categories` list (may be empty).
      problems: image-level problems found while indexing (duplicate image
        ids, annotations without an image entry).
    """
    json_path: str
    images: List[dict]
    annotations: Dict[int, dict]
    categories: List[dict]
    problems: List[Problem]


def load_panoptic_json(path) -> PanopticIndex:
    """Loads and indexes a COCO-panoptic JSON.

    Raises:
      FileNotFoundError / ValueError: unreadable JSON or missing top-level
        `images` / `annotations` lists (a data-set-level error, not a skip).
    """
    path = str(path)
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path}: not valid JSON ({e})') from e
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a COCO panoptic JSON object')
    for key in ('images', 'annotations'):
        if not isinstance(data.get(key), list):
            raise ValueError(f'{path}: no "{key}" list; expected a COCO '
                             'panoptic JSON (images, annotations, categories)')
    problems = []
    images, seen = [], set()
    for i, image in enumerate(data['images']):
        image_id = image.get('id') if isinstance(image, dict) else None
        if image_id is None:
            problems.append(_problem(IMAGE_LEVEL, 'bad_annotation', path, None,
                                     f'images[{i}] has no "id"; skipped'))
            continue
        if image_id in seen:
            problems.append(_problem(
                IMAGE_LEVEL, 'duplicate_image_id', path, image_id,
                f'images[{i}] repeats image id {image_id}; the later entry '
                'is skipped'))
            continue
        seen.add(image_id)
        images.append(image)
    annotations = {}
    for i, ann in enumerate(data['annotations']):
        image_id = ann.get('image_id') if isinstance(ann, dict) else None
        if image_id not in seen:
            problems.append(_problem(
                IMAGE_LEVEL, 'bad_annotation', path, image_id,
                f'annotations[{i}] refers to no entry of "images"; skipped'))
            continue
        if image_id in annotations:
            problems.append(_problem(
                IMAGE_LEVEL, 'bad_annotation', path, image_id,
                f'annotations[{i}] is a second annotation of this image; '
                'skipped (the first one is used)'))
            continue
        annotations[image_id] = ann
    return PanopticIndex(path, images, annotations,
                         list(data.get('categories') or []), problems)


def _bbox_from_mask(mask):
    """(ymin, xmin, ymax, xmax) normalised, pixel-edge convention."""
    height, width = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (rows[0] / height, cols[0] / width,
            (rows[-1] + 1) / height, (cols[-1] + 1) / width)


def load_example(image: dict,
                 annotation: Optional[dict],
                 image_dir,
                 panoptic_masks_dir,
                 descriptor: DatasetDescriptor,
                 skip_crowd: bool = False,
                 ) -> Tuple[Optional[PanopticExample], List[Problem]]:
    """Reads and validates one image and its panoptic annotation.

    Args:
      image: the JSON `images` entry (id, file_name[, height, width]).
      annotation: the JSON `annotations` entry (image_id, file_name,
        segments_info) or None.
      image_dir: folder of the images.
      panoptic_masks_dir: folder of the panoptic PNGs.
      descriptor: the data set's categories (decides what is unknown and the
        semantic channels).
      skip_crowd: write crowd segments as void.

    Returns:
      (example or None, problems). The example is None exactly when one of
      the problems is image-level. Never raises for bad data.
    """
    image_id = image.get('id')
    problems = []
    try:
        example = _load(image, annotation, image_dir, panoptic_masks_dir,
                        descriptor, skip_crowd, problems)
    except _Skip as skip:
        return None, problems + [skip.problem]
    except Exception as e:  # Malformed entries must not stop a conversion.
        return None, problems + [_problem(
            IMAGE_LEVEL, 'bad_annotation', image.get('file_name', '?'),
            image_id, f'unexpected {type(e).__name__}: {e}; image skipped')]
    return example, problems


def _load(image, annotation, image_dir, masks_dir, descriptor, skip_crowd,
          problems):
    image_id = image['id']
    image_path = os.path.join(image_dir, image['file_name'])
    if annotation is None:
        raise _Skip(_problem(IMAGE_LEVEL, 'no_annotation', image_path, image_id,
                             'no entry in "annotations"; image skipped'))
    mask_path = os.path.join(masks_dir, annotation['file_name'])

    if not os.path.isfile(image_path):
        raise _Skip(_problem(IMAGE_LEVEL, 'missing_image', image_path, image_id,
                             'image file not found; image skipped'))
    try:
        encoded, fmt, height, width, converted = read_image(image_path)
    except (OSError, ValueError) as e:
        raise _Skip(_problem(IMAGE_LEVEL, 'corrupt_image', image_path, image_id,
                             f'{e}; image skipped'))
    if converted:
        problems.append(_problem(NOTE_LEVEL, 'converted_mode', image_path,
                                 image_id, f'{converted} image converted to '
                                 'RGB and re-encoded as PNG'))
    json_size = (image.get('height'), image.get('width'))
    if json_size != (None, None) and json_size != (height, width):
        problems.append(_problem(
            NOTE_LEVEL, 'json_size_mismatch', image_path, image_id,
            f'JSON says {json_size[0]}x{json_size[1]} (HxW), file is '
            f'{height}x{width}; the file size is used'))

    if not os.path.isfile(mask_path):
        raise _Skip(_problem(IMAGE_LEVEL, 'missing_mask', mask_path, image_id,
                             'panoptic PNG not found; image skipped'))
    try:
        ids = read_panoptic_png(mask_path)
    except (OSError, ValueError) as e:
        raise _Skip(_problem(IMAGE_LEVEL, 'corrupt_mask', mask_path, image_id,
                             f'{e}; image skipped'))
    if ids.shape != (height, width):
        raise _Skip(_problem(
            IMAGE_LEVEL, 'size_mismatch', mask_path, image_id,
            f'panoptic PNG is {ids.shape[0]}x{ids.shape[1]} (HxW) but image '
            f'{image_path} is {height}x{width}; image skipped'))

    segments_info = annotation['segments_info']
    # Written segments get instance id k + 1; refuse before any work when even
    # the listed segments cannot fit a 16-bit PNG.
    if len(segments_info) > MAX_UINT16:
        raise _Skip(_problem(
            IMAGE_LEVEL, 'too_many_segments', mask_path, image_id,
            f'{len(segments_info)} segments; a 16-bit PNG holds at most '
            f'{MAX_UINT16} instance ids; image skipped'))

    uniq, inverse = np.unique(ids.reshape(-1), return_inverse=True)
    inverse = inverse.reshape(ids.shape)
    pixel_counts = np.bincount(inverse.reshape(-1), minlength=len(uniq))
    slot_of_id = {int(v): k for k, v in enumerate(uniq)}

    listed = set()
    segments = []
    crowd_voided = 0
    # Per unique PNG id: category, instance and semantic channel (0 = void).
    cat_lut = np.zeros([len(uniq)], np.int32)
    inst_lut = np.zeros([len(uniq)], np.int32)
    sem_lut = np.zeros([len(uniq)], np.int32)
    for info in segments_info:
        seg_id = int(info['id'])
        category_id = int(info['category_id'])
        is_crowd = bool(info.get('iscrowd', 0))
        if seg_id <= 0:
            problems.append(_problem(
                SEGMENT_LEVEL, 'invalid_segment_id', mask_path, image_id,
                'segment id must be positive (0 is void); segment skipped',
                seg_id))
            continue
        if seg_id in listed:
            problems.append(_problem(
                SEGMENT_LEVEL, 'duplicate_segment_id', mask_path, image_id,
                'listed twice in segments_info; the later entry is skipped',
                seg_id))
            continue
        listed.add(seg_id)
        slot = slot_of_id.get(seg_id)
        if category_id not in descriptor:
            n = 0 if slot is None else int(pixel_counts[slot])
            problems.append(_problem(
                SEGMENT_LEVEL, 'unknown_category', mask_path, image_id,
                f'unknown category id {category_id} (not in '
                f'{descriptor.source}); segment skipped, its {n} pixels '
                'written as void', seg_id))
            continue
        if slot is None:
            problems.append(_problem(
                SEGMENT_LEVEL, 'id_not_in_png', mask_path, image_id,
                f'listed in segments_info (category {category_id}) but has no '
                'pixels in the PNG; segment skipped', seg_id))
            continue
        mask = inverse == slot
        count = int(pixel_counts[slot])
        area = info.get('area')
        segments.append(Segment(
            id=seg_id, category_id=category_id, is_crowd=is_crowd,
            area=float(count if area is None else area), pixel_count=count,
            bbox=_bbox_from_mask(mask), mask=mask))
        if is_crowd and skip_crowd:
            crowd_voided += 1
            continue
        cat_lut[slot] = category_id
        sem_lut[slot] = descriptor.channel(category_id)
        if descriptor.is_thing(category_id):
            inst_lut[slot] = len(segments)

    for slot, value in enumerate(uniq):
        value = int(value)
        if value != 0 and value not in listed:
            problems.append(_problem(
                SEGMENT_LEVEL, 'id_not_in_segments_info', mask_path, image_id,
                f'id in the PNG but not in segments_info; its '
                f'{int(pixel_counts[slot])} pixels written as void', value))

    return PanopticExample(
        image_id=image_id, file_name=image['file_name'], encoded=encoded,
        format=fmt, height=height, width=width, segments=segments,
        category_mask=cat_lut[inverse], instance_mask=inst_lut[inverse],
        semantic_mask=sem_lut[inverse], crowd_voided=crowd_voided)


def count_reasons(problems: List[Problem], level: str) -> Dict[str, int]:
    """reason -> count for the problems of one level, sorted by reason."""
    counts = collections.Counter(p.reason for p in problems if p.level == level)
    return dict(sorted(counts.items()))
