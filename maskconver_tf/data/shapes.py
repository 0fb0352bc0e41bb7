"""Generator of the built-in synthetic "shapes" panoptic data set.

Implements ../shared/design/synthetic_shapes.md: square images with a sky band
on top and a ground and/or wall band below (wavy boundaries), overlaid with a
few to about a dozen discs, squares, equilateral triangles and rings drawn in
painter's order. Often a disc sits concentric inside a ring's hole (same mask
centre, different classes). Segments whose visible area falls under
`MIN_SEGMENT_AREA` pixels become void (id 0).

Files are COCO panoptic: `images/NNNNNN.jpg`, `panoptic/NNNNNN.png`
(segment id = R + 256 G + 256^2 B) and `panoptic.json`. Each annotation also
carries `concentric_pairs`: [ring_segment_id, disc_segment_id] pairs.

Conventions: arrays are indexed (y, x); pixel (i, j) has its centre at
(i + 0.5, j + 0.5) in continuous image coordinates; bboxes are COCO
[x, y, w, h]. Image k is drawn from an RNG seeded by (seed, k), so it does not
depend on how many images are generated.

`STYLES` holds three looks of the same classes: 'default' (the clean look),
'varied' (a training look randomised per image over counts, sizes, contrast,
patterns, ground colours, lighting, noise, blur and JPEG) and 'shifted' (a
held-out look for robustness: more, smaller and larger,
crowded things, up to three concentric pairs, patterns, other ground colours,
lighting, sensor noise, blur, JPEG artefacts; seed `SHIFTED_SEED`).

Command line:
  python -m maskconver_tf.data.shapes --output_dir DIR --num_images N \
      [--image_size 128] [--seed 0] [--start_image_id 1] [--style default]
  python -m maskconver_tf.data.shapes --style shifted --output_dir DIR \
      --num_images 200
"""

import argparse
import collections
import copy
import dataclasses
import json
import math
import os
from typing import Tuple

import numpy as np
from PIL import Image
from PIL import ImageFilter
import tqdm

from maskconver_tf.data.shapes_categories import CATEGORIES

MIN_SEGMENT_AREA = 12
PROGRESS_THRESHOLD = 100
# Concentric pairs (outer radius >= 8 px) must fit inside the image.
MIN_IMAGE_SIZE = 32



@dataclasses.dataclass(frozen=True)
class Style:
    """How a shapes set is drawn: the same seven classes, other looks.

    `Style()` is the training set's style (`STYLES['default']`); the fields
    that are off by default (patterns, blur, noise, gain) draw nothing from
    the RNG then, so default images do not depend on them.
    """
    # Radii (circumradius for squares and triangles) as fractions of image
    # size: the small end still spans about a cell of a stride-8 map at 128 px.
    thing_radius_range: Tuple[float, float] = (0.06, 0.22)
    pair_radius_range: Tuple[float, float] = (0.12, 0.22)
    ring_inner_ratio_range: Tuple[float, float] = (0.5, 0.7)
    num_things_range: Tuple[int, int] = (3, 12)
    # Probabilities of 0, 1, 2, ... concentric ring/disc pairs per image.
    num_pairs_probs: Tuple[float, ...] = (0.4, 0.45, 0.15)
    # Thing centres lie in [margin, 1 - margin] of the side: larger, more
    # overlap.
    centre_margin: float = 0.05
    # Thing colours: uniform per channel in this range, re-drawn until their
    # L1 distance to what they cover reaches min_colour_contrast.
    colour_range: Tuple[float, float] = (0.0, 255.0)
    min_colour_contrast: float = 90.0
    ground_palettes: Tuple[Tuple[int, int, int], ...] = (
        (120, 90, 50), (70, 110, 50), (150, 135, 100), (95, 85, 75))
    # Chance that a thing is painted in two-colour stripes or checks instead
    # of one shaded colour.
    pattern_prob: float = 0.0
    # Whole-image brightness gain, Gaussian sensor noise (sigma, 0-255
    # scale) and Gaussian blur (sigma, px), each drawn per image.
    gain_range: Tuple[float, float] = (1.0, 1.0)
    noise_sigma_range: Tuple[float, float] = (0.0, 0.0)
    blur_sigma_range: Tuple[float, float] = (0.0, 0.0)
    jpeg_quality_range: Tuple[int, int] = (95, 95)
    # Chance that an image of the set is drawn in the clean default look
    # instead (`generate_dataset`; 0 draws nothing).
    clean_prob: float = 0.0
    # Chroma subsampling, one drawn per image when there are several:
    # 0 = 4:4:4 keeps the edges between random colours sharp; 2 = 4:2:0.
    jpeg_subsampling: Tuple[int, ...] = (0,)


# 'varied': a training look randomised over the nuisances a camera adds
# (domain randomisation): half the images in the clean default look, the
# others with counts, sizes, contrast, patterns, ground colours, lighting,
# noise, blur and JPEG each drawn per image from ranges that start at the
# clean look's. Measured in `make demo` (benchmarks/RESULTS.md): all-varied
# training lifts shifted PQ by 9 and costs 5 on val; half clean gets back
# 1.7 on val for 0.6 on shifted.
# 'shifted': a held-out look for robustness (never trained on): more and
# more varied things, up to three concentric pairs, crowded centres, lower
# contrast, patterned things, other ground colours, lighting, noise, blur
# and JPEG artefacts.
STYLES = {
    'default': Style(),
    'varied': Style(
        thing_radius_range=(0.05, 0.24),
        ring_inner_ratio_range=(0.47, 0.73),
        num_things_range=(3, 15),
        num_pairs_probs=(0.3, 0.4, 0.2, 0.1),
        centre_margin=0.08,
        colour_range=(10.0, 245.0),
        min_colour_contrast=70.0,
        ground_palettes=((120, 90, 50), (70, 110, 50), (150, 135, 100),
                         (95, 85, 75), (175, 170, 160), (130, 60, 45),
                         (45, 55, 40)),
        pattern_prob=0.25,
        gain_range=(0.8, 1.2),
        noise_sigma_range=(0.0, 6.0),
        blur_sigma_range=(0.0, 0.8),
        jpeg_quality_range=(60, 95),
        jpeg_subsampling=(0, 2),
        clean_prob=0.5),
    'shifted': Style(
        thing_radius_range=(0.045, 0.26),
        ring_inner_ratio_range=(0.45, 0.75),
        num_things_range=(6, 16),
        num_pairs_probs=(0.2, 0.35, 0.3, 0.15),
        centre_margin=0.12,
        colour_range=(20.0, 235.0),
        min_colour_contrast=60.0,
        ground_palettes=((200, 198, 205), (160, 80, 60), (60, 50, 40),
                         (110, 120, 90)),
        pattern_prob=0.35,
        gain_range=(0.75, 1.15),
        noise_sigma_range=(2.0, 8.0),
        blur_sigma_range=(0.0, 1.0),
        jpeg_quality_range=(55, 90),
        jpeg_subsampling=(2,)),
}
# Seed of the shifted set: no training run draws with it.
SHIFTED_SEED = 2026

_CATEGORY_ID = {c['name']: c['id'] for c in CATEGORIES}
_SHAPES = ('disc', 'square', 'triangle', 'ring')


def _interp_matrix(n_out, n_in):
    """float64 [n_out, n_in] linear interpolation weights (grid -> pixels)."""
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    lo = np.minimum(pos.astype(np.int64), n_in - 2)
    frac = pos - lo
    m = np.zeros([n_out, n_in])
    m[np.arange(n_out), lo] = 1.0 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def _smooth_noise(rng, size, cells):
    """float64 [size, size] noise, smooth over about size / cells pixels."""
    grid = rng.standard_normal([cells + 1, cells + 1])
    m = _interp_matrix(size, cells + 1)
    return m @ grid @ m.T


def _wavy_line(rng, size, base):
    """float64 [size] boundary row (continuous y) for each column x."""
    x = (np.arange(size) + 0.5) / size
    a1, a2 = rng.uniform(0.01, 0.05) * size, rng.uniform(0.0, 0.015) * size
    f1, f2 = rng.uniform(0.5, 2.0), rng.uniform(2.0, 5.0)
    p1, p2 = rng.uniform(0, 2 * math.pi, size=2)
    return (base + a1 * np.sin(2 * math.pi * f1 * x + p1)
            + a2 * np.sin(2 * math.pi * f2 * x + p2))


def _sky(rng, size, horizon):
    """float64 [size, size, 3] vertical gradient down to `horizon` (rows)."""
    top = rng.uniform([40, 90, 160], [120, 170, 240])
    bottom = np.minimum(top + rng.uniform(40, 100, size=3), 255)
    t = np.clip((np.arange(size) + 0.5) / max(horizon, 1.0), 0, 1)
    sky = top + t[:, None] * (bottom - top)
    return sky[:, None, :] + rng.normal(0, 2.0, [size, size, 3])


def _ground(rng, size, palettes):
    """float64 [size, size, 3] blotchy texture around one of `palettes`."""
    base = (np.array(palettes[rng.integers(len(palettes))], np.float64)
            + rng.uniform(-20, 20, 3))
    coarse = (_smooth_noise(rng, size, 6)
              + 0.5 * _smooth_noise(rng, size, max(size // 8, 8)))
    blotch = 40.0 * np.tanh(1.5 * coarse)
    tint = rng.uniform(0.7, 1.3, 3)
    return (base + blotch[:, :, None] * tint
            + rng.normal(0, 5.0, [size, size, 3]))


def _wall(rng, size):
    """float64 [size, size, 3] brick pattern with mortar lines."""
    brick_h = max(3, round(size / rng.uniform(10, 16)))
    brick_w = max(brick_h + 2, round(brick_h * rng.uniform(1.8, 2.6)))
    mortar = max(1, round(size / 128))
    y = np.arange(size)[:, None] + rng.integers(brick_h)
    x = np.arange(size)[None, :] + rng.integers(brick_w)
    row = y // brick_h
    # Every other course shifts by half a brick.
    xs = x + (row % 2) * (brick_w // 2)
    col = xs // brick_w
    is_mortar = (y % brick_h < mortar) | (xs % brick_w < mortar)
    base = rng.uniform([130, 40, 30], [190, 90, 70])
    jitter = rng.uniform(-18, 18, [row.max() + 1, col.max() + 1, 1])
    bricks = base + jitter[row, col]
    mortar_colour = rng.uniform(165, 215) + rng.uniform(-8, 8, 3)
    wall = np.where(is_mortar[:, :, None], mortar_colour, bricks)
    return wall + rng.normal(0, 4.0, [size, size, 3])


def _draw_background(rng, size, style):
    """Returns (canvas float64 [size, size, 3], owner int32 [size, size],
    categories list of stuff category ids; owner k + 1 is categories[k])."""
    lower = [['ground'], ['wall'], ['wall', 'ground'],
             ['ground', 'wall']][rng.integers(4)]
    names = ['sky'] + lower
    if len(names) == 2:
        lines = [_wavy_line(rng, size, rng.uniform(0.3, 0.6) * size)]
    else:
        first = rng.uniform(0.2, 0.4)
        second = first + rng.uniform(0.2, 0.35)
        lines = [_wavy_line(rng, size, first * size),
                 _wavy_line(rng, size, second * size)]
        # Keeps the middle band at least a tenth of the image thick everywhere.
        lines[1] = np.maximum(lines[1], lines[0] + 0.1 * size)
    y = np.arange(size)[:, None] + 0.5
    band = sum((y >= line[None, :]).astype(np.int32) for line in lines)
    textures = {'sky': lambda: _sky(rng, size, lines[0].max()),
                'ground': lambda: _ground(rng, size, style.ground_palettes),
                'wall': lambda: _wall(rng, size)}
    canvas = np.zeros([size, size, 3])
    for k, name in enumerate(names):
        canvas = np.where((band == k)[:, :, None], textures[name](), canvas)
    return canvas, band + 1, [_CATEGORY_ID[n] for n in names]


def _shape_mask(shape, size, cy, cx, radius, angle, inner):
    """Rasterises one thing inside its clipped bounding window.

    Args:
      shape: one of 'disc', 'square', 'triangle', 'ring'.
      size: image size in pixels.
      cy, cx: continuous centre (y, x).
      radius: outer radius (circumradius for squares and triangles).
      angle: rotation in radians (squares and triangles).
      inner: inner radius (rings only).
    Returns:
      (window, mask): window is a (slice_y, slice_x) pair into the image and
      mask bool [h, w] the shape's pixels inside it. Callers keep the centre
      inside the image, so the window is never empty.
    """
    y0, y1 = max(0, math.floor(cy - radius)), min(size, math.ceil(cy + radius) + 1)
    x0, x1 = max(0, math.floor(cx - radius)), min(size, math.ceil(cx + radius) + 1)
    dy = np.arange(y0, y1)[:, None] + 0.5 - cy
    dx = np.arange(x0, x1)[None, :] + 0.5 - cx
    if shape in ('disc', 'ring'):
        d2 = dy * dy + dx * dx
        mask = d2 <= radius * radius
        if shape == 'ring':
            mask &= d2 > inner * inner
    elif shape == 'square':
        c, s = math.cos(angle), math.sin(angle)
        half = radius / math.sqrt(2)
        mask = (np.abs(dx * c + dy * s) <= half) & (np.abs(dy * c - dx * s) <= half)
    else:
        # Equilateral triangle: its edges lie at the inradius (radius / 2),
        # opposite each vertex.
        mask = np.ones((dy.shape[0], dx.shape[1]), bool)
        for k in range(3):
            a = angle + math.pi + 2 * math.pi * k / 3
            mask &= dx * math.cos(a) + dy * math.sin(a) <= radius / 2
    return (slice(y0, y1), slice(x0, x1)), mask


def _thing_colour(rng, under, style):
    """float64 [3] colour, independent of class; re-drawn a few times so the
    thing does not vanish into what it covers (float64 [3])."""
    colour = rng.uniform(*style.colour_range, 3)
    for _ in range(8):
        if np.abs(colour - under).sum() >= style.min_colour_contrast:
            break
        colour = rng.uniform(*style.colour_range, 3)
    return colour


def _paint_thing(rng, canvas, owner, index, shape, cy, cx, radius, angle=0.0,
                 inner=0.0, style=None):
    """Paints one thing over what is there (painter's order), in place.

    canvas: float64 [H, W, 3] RGB; owner: int32 [H, W] segment index per
    pixel, set to `index` under the thing. Other arguments as `_shape_mask`;
    style: a `Style` (default `Style()`).
    """
    style = style or Style()
    window, mask = _shape_mask(shape, canvas.shape[0], cy, cx, radius, angle,
                               inner)
    region = canvas[window]
    under = region[mask].mean(axis=0)
    colour = _thing_colour(rng, under, style)
    h, w = mask.shape
    gy, gx = np.mgrid[0:h, 0:w]
    direction = rng.uniform(0, 2 * math.pi)
    shade = (gx * math.cos(direction) + gy * math.sin(direction)) / max(radius, 1.0)
    pixels = (colour + rng.uniform(0, 20) * shade[:, :, None]
              + rng.normal(0, 3.0, [h, w, 3]))
    if style.pattern_prob > 0 and rng.random() < style.pattern_prob:
        # Stripes (one direction) or checks (two), period 3-8 px.
        period = rng.uniform(3.0, 8.0)
        a = rng.uniform(0, math.pi)
        u = (gx * math.cos(a) + gy * math.sin(a)) // (period / 2)
        if rng.random() < 0.5:
            u = u + (gy * math.cos(a) - gx * math.sin(a)) // (period / 2)
        second = _thing_colour(rng, colour, style)
        pixels = np.where((u % 2 == 1)[:, :, None],
                          pixels - colour + second, pixels)
    region[mask] = pixels[mask]
    owner[window][mask] = index


def _place_pairs(rng, size, count, style):
    """Centres and radii of up to `count` non-overlapping concentric pairs.

    Pairs lie fully inside the image so that their masks stay whole (the
    disc's and the ring's mask centres coincide). Returns a list of
    (cy, cx, outer, inner, disc_radius).
    """
    pairs = []
    for _ in range(count):
        for _ in range(20):
            outer = max(rng.uniform(*style.pair_radius_range) * size, 8.0)
            cy, cx = rng.uniform(outer + 1, size - outer - 1, size=2)
            if all(math.hypot(cy - p[0], cx - p[1]) > outer + p[2] + 1
                   for p in pairs):
                break
        else:
            break
        inner = outer * rng.uniform(*style.ring_inner_ratio_range)
        # The disc keeps a visible gap to the ring (the hole shows through)
        # and at least the minimum segment area.
        disc = min(max(inner * rng.uniform(0.45, 0.8), 2.5), inner - 1.2)
        pairs.append((cy, cx, outer, inner, disc))
    return pairs


def _segments_info(ids, categories):
    """COCO segments_info for ids int32 [H, W] (1..N) and N category ids."""
    area = np.bincount(ids.ravel(), minlength=len(categories) + 1)
    segments = []
    for sid, category_id in enumerate(categories, start=1):
        m = ids == sid
        ys = np.flatnonzero(m.any(axis=1))
        xs = np.flatnonzero(m.any(axis=0))
        segments.append({
            'id': sid,
            'category_id': int(category_id),
            'iscrowd': 0,
            'bbox': [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1),
                     int(ys[-1] - ys[0] + 1)],
            'area': int(area[sid]),
        })
    return segments


def _camera(rng, canvas, style):
    """uint8 [H, W, 3] of float64 canvas [H, W, 3] after the style's
    lighting gain, sensor noise and blur (labels are not moved)."""
    if style.gain_range != (1.0, 1.0):
        canvas = canvas * rng.uniform(*style.gain_range)
    if max(style.noise_sigma_range) > 0:
        canvas = canvas + rng.normal(0, rng.uniform(*style.noise_sigma_range),
                                     canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    if max(style.blur_sigma_range) > 0:
        sigma = rng.uniform(*style.blur_sigma_range)
        image = np.asarray(Image.fromarray(image).filter(
            ImageFilter.GaussianBlur(sigma)))
    return image


def generate_image(rng, image_size=128, style=None):
    """Draws one synthetic panoptic sample.

    Args:
      rng: numpy.random.Generator (the only source of randomness).
      image_size: side of the square image in pixels.
      style: a `Style` (default `Style()`, the training set's look).
    Returns:
      image: uint8 [H, W, 3] RGB, H = W = image_size.
      panoptic_ids: int32 [H, W]; segment ids 1..N, 0 = void.
      segments: list of N COCO segments_info dicts (id, category_id, iscrowd,
        bbox [x, y, w, h], area), ascending by id; stuff first (top to
        bottom), then things in painter's order.
      concentric_pairs: list of [ring_segment_id, disc_segment_id] pairs that
        share a centre and are both visible segments.
    """
    size = int(image_size)
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f'image_size must be at least {MIN_IMAGE_SIZE}, '
                         f'got {image_size}')
    style = style or Style()
    canvas, owner, categories = _draw_background(rng, size, style)
    low, high = style.num_things_range
    num_things = int(rng.integers(low, high + 1))
    probs = style.num_pairs_probs
    num_pairs = int(rng.choice(len(probs), p=probs))
    pairs = _place_pairs(rng, size, num_pairs, style)

    margin = style.centre_margin
    for _ in range(max(num_things - 2 * len(pairs), 1)):
        shape = _SHAPES[rng.integers(len(_SHAPES))]
        radius = max(rng.uniform(*style.thing_radius_range) * size, 3.5)
        # Centres near the border leave things cut by the image edge.
        cy, cx = rng.uniform(margin * size, (1 - margin) * size, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        inner = radius * rng.uniform(*style.ring_inner_ratio_range)
        categories.append(_CATEGORY_ID[shape])
        _paint_thing(rng, canvas, owner, len(categories), shape, cy, cx,
                     radius, angle, inner, style)

    # Pairs go last so nothing occludes them: their mask centres stay equal.
    pair_owners = []
    for cy, cx, outer, inner, disc in pairs:
        categories.append(_CATEGORY_ID['ring'])
        _paint_thing(rng, canvas, owner, len(categories), 'ring', cy, cx,
                     outer, inner=inner, style=style)
        categories.append(_CATEGORY_ID['disc'])
        _paint_thing(rng, canvas, owner, len(categories), 'disc', cy, cx, disc,
                     style=style)
        pair_owners.append((len(categories) - 1, len(categories)))

    area = np.bincount(owner.ravel(), minlength=len(categories) + 1)
    keep = area >= MIN_SEGMENT_AREA
    keep[0] = False
    remap = np.zeros(len(categories) + 1, np.int32)
    remap[keep] = np.arange(1, keep.sum() + 1)
    ids = remap[owner]
    kept_categories = [c for c, k in zip(categories, keep[1:]) if k]
    concentric_pairs = [[int(remap[r]), int(remap[d])] for r, d in pair_owners
                        if remap[r] and remap[d]]
    image = _camera(rng, canvas, style)
    return image, ids, _segments_info(ids, kept_categories), concentric_pairs


def image_rng(seed, image_id):
    """numpy Generator for image `image_id` of the data set drawn with `seed`."""
    return np.random.default_rng([int(seed), int(image_id)])


def encode_panoptic_png(ids):
    """uint8 [H, W, 3] RGB encoding of int32 ids [H, W]: R + 256 G + 256^2 B."""
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255],
                    axis=-1).astype(np.uint8)


def generate_dataset(output_dir, num_images, image_size=128, seed=0,
                     start_image_id=1, show_progress=False, style='default'):
    """Writes a COCO panoptic data set of `num_images` synthetic images.

    Image ids are start_image_id .. start_image_id + num_images - 1; each is
    drawn from `image_rng(seed, image_id)`, so the same seed and style give
    byte-identical files. `style` names an entry of `STYLES`; the JSON's
    `info` records it with the seed.

    Returns:
      Path of output_dir/panoptic.json.
    """
    if style not in STYLES:
        raise ValueError(f'shapes: unknown style {style!r}; expected one of '
                         f'{sorted(STYLES)}')
    look = STYLES[style]
    image_dir = os.path.join(output_dir, 'images')
    panoptic_dir = os.path.join(output_dir, 'panoptic')
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(panoptic_dir, exist_ok=True)
    images, annotations = [], []
    ids = range(int(start_image_id), int(start_image_id) + int(num_images))
    for image_id in tqdm.tqdm(ids, desc='shapes', unit='img',
                              disable=not show_progress):
        rng = image_rng(seed, image_id)
        this = (STYLES['default'] if look.clean_prob
                and rng.random() < look.clean_prob else look)
        image, pan, segments, pairs = generate_image(rng, image_size, this)
        low, high = this.jpeg_quality_range
        quality = low if low == high else int(rng.integers(low, high + 1))
        choices = this.jpeg_subsampling
        subsampling = (choices[0] if len(choices) == 1
                       else int(choices[rng.integers(len(choices))]))
        stem = f'{image_id:06d}'
        Image.fromarray(image).save(os.path.join(image_dir, stem + '.jpg'),
                                    format='JPEG', quality=quality,
                                    subsampling=subsampling)
        Image.fromarray(encode_panoptic_png(pan)).save(
            os.path.join(panoptic_dir, stem + '.png'), format='PNG')
        images.append({'id': image_id, 'file_name': stem + '.jpg',
                       'height': int(image_size), 'width': int(image_size)})
        annotations.append({'image_id': image_id, 'file_name': stem + '.png',
                            'segments_info': segments,
                            'concentric_pairs': pairs})
    dataset = {
        'info': {'description': 'maskconver_tf synthetic shapes panoptic set',
                 'version': '1.0', 'style': style, 'seed': int(seed)},
        'licenses': [],
        'images': images,
        'annotations': annotations,
        'categories': copy.deepcopy(CATEGORIES),
    }
    json_path = os.path.join(output_dir, 'panoptic.json')
    with open(json_path, 'w') as f:
        json.dump(dataset, f, separators=(',', ':'))
        f.write('\n')
    return json_path


def summarize(json_path):
    """One-line summary of a panoptic.json written by `generate_dataset`."""
    with open(json_path) as f:
        data = json.load(f)
    names = {c['id']: c['name'] for c in data['categories']}
    counts = collections.Counter(
        s['category_id'] for a in data['annotations'] for s in a['segments_info'])
    per_class = ', '.join(f'{names[i]}={counts[i]}' for i in sorted(names))
    num = len(data['images'])
    with_pairs = sum(bool(a.get('concentric_pairs')) for a in data['annotations'])
    share = 100.0 * with_pairs / max(num, 1)
    return (f'{num} images -> {os.path.dirname(json_path) or "."}; segments: '
            f'{per_class}; images with concentric ring/disc pairs: '
            f'{with_pairs} ({share:.0f}%)')


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m maskconver_tf.data.shapes',
        description='Generate the synthetic "shapes" COCO panoptic data set.')
    parser.add_argument('--output_dir', required=True,
                        help='directory for images/, panoptic/, panoptic.json')
    parser.add_argument('--num_images', type=int, required=True)
    parser.add_argument('--image_size', type=int, default=128,
                        help='side of the square images in pixels')
    parser.add_argument('--seed', type=int, default=None,
                        help=f'default 0; {SHIFTED_SEED} with --style shifted')
    parser.add_argument('--start_image_id', type=int, default=1)
    parser.add_argument('--style', choices=sorted(STYLES), default='default',
                        help='default: the clean look; varied: the clean '
                        'look randomised per image (the demo trains on it); '
                        'shifted: the held-out look no training run sees')
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = SHIFTED_SEED if args.style == 'shifted' else 0
    if args.num_images < 1:
        parser.error('--num_images must be at least 1')
    if args.image_size < MIN_IMAGE_SIZE:
        parser.error(f'--image_size must be at least {MIN_IMAGE_SIZE}')
    json_path = generate_dataset(
        args.output_dir, args.num_images, image_size=args.image_size,
        seed=args.seed, start_image_id=args.start_image_id,
        show_progress=args.num_images >= PROGRESS_THRESHOLD, style=args.style)
    print(summarize(json_path))


if __name__ == '__main__':
    main()
