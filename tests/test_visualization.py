"""Overlays (colours, outlines, labels), grids and training curves."""

import os

import numpy as np
from PIL import Image

from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.visualization import grid, overlay, plots

CATEGORIES = [
    {'id': 1, 'name': 'disc', 'isthing': 1, 'color': [200, 100, 50]},
    {'id': 5, 'name': 'sky', 'isthing': 0, 'color': [20, 40, 240]},
]


def _descriptor():
    return DatasetDescriptor.from_categories(CATEGORIES)


def _masks():
    """8x8: sky (id 5) on the left 4 columns, two disc instances on the
    right (rows 0-3 instance 1, rows 4-6 instance 2), row 7 right = void."""
    category = np.zeros([8, 8], np.int32)
    instance = np.zeros([8, 8], np.int32)
    category[:, :4] = 5
    category[:7, 4:] = 1
    instance[:4, 4:] = 1
    instance[4:7, 4:] = 2
    return category, instance


def test_overlay_colours_and_outlines():
    category, instance = _masks()
    image = np.full([8, 8, 3], 100, np.uint8)
    out = overlay.overlay(image, category, instance, _descriptor(), alpha=0.5,
                          labels=False)
    white = [255, 255, 255]
    # Interior sky pixel: 0.5 * 100 + 0.5 * (20, 40, 240).
    np.testing.assert_array_equal(out[1, 1], [60, 70, 170])
    # Instance 1 keeps the category colour: 0.5 * 100 + 0.5 * (200, 100, 50).
    np.testing.assert_array_equal(out[1, 6], [150, 100, 75])
    # Instance 2 is jittered by (60, -40, 20) to colour (140, 60, 70): red
    # 200 + 60 > 255 is reflected to 200 - 60.
    np.testing.assert_array_equal(out[5, 6], [120, 80, 85])
    # Where sky meets disc (columns 3 | 4) both sides are outlined.
    for y in range(8):
        np.testing.assert_array_equal(out[y, 3], white)
    for y in range(7):
        np.testing.assert_array_equal(out[y, 4], white)
    # Instance border (rows 3 | 4, right half) is outlined on both sides.
    np.testing.assert_array_equal(out[3, 6], white)
    np.testing.assert_array_equal(out[4, 6], white)
    # Disc above void (row 6) is outlined; void keeps the image.
    np.testing.assert_array_equal(out[6, 6], white)
    np.testing.assert_array_equal(out[7, 6], [100, 100, 100])
    edges = overlay.boundaries(category, instance, _descriptor())
    assert edges.sum() == 8 + 7 + 4 + 4 + 4 - 1 - 1 - 1  # shared corners
    np.testing.assert_array_equal(edges[:, 5], [0, 0, 0, 1, 1, 0, 1, 0])


def test_segment_colors_and_anchors():
    category, instance = _masks()
    colors = overlay.segment_colors(category, instance, _descriptor())
    np.testing.assert_array_equal(colors[0, 0], [20, 40, 240])
    np.testing.assert_array_equal(colors[7, 7], [0, 0, 0])
    anchors = overlay.label_anchors(category, instance, _descriptor())
    # (y, x, category, instance, area) in key order: disc 1, disc 2, sky.
    assert [(a[2], a[3], a[4]) for a in anchors] == [(1, 1, 16), (1, 2, 12),
                                                     (5, 0, 32)]
    # Centroids (1.5, 5.5), (5, 5.5), (3.5, 1.5): the first closest pixel.
    assert [a[:2] for a in anchors] == [(1, 5), (5, 5), (3, 1)]


def test_labels_drawn_at_segment_centres():
    category = np.zeros([64, 64], np.int32)
    category[:, 32:] = 5
    image = np.zeros([64, 64, 3], np.uint8)
    plain = overlay.overlay(image, category, np.zeros_like(category),
                            _descriptor(), labels=False, outline=False)
    labelled = overlay.overlay(image, category, np.zeros_like(category),
                               _descriptor(), labels=True, outline=False)
    changed = np.any(plain != labelled, axis=-1)
    ys, xs = np.nonzero(changed)
    # The label box is centred on the sky segment (centre ~ (31.5, 47.5)).
    assert changed.sum() > 20
    assert abs(ys.mean() - 31.5) < 4 and abs(xs.mean() - 47.5) < 4
    assert xs.min() >= 32 - 2


def test_grid(tmp_path):
    category, instance = _masks()
    image = np.full([8, 8, 3], 100, np.uint8)
    path = grid.save_overlay_grid(
        str(tmp_path / 'grid.png'), [image, image],
        [(category, instance)] * 2, [(category, instance)] * 2,
        _descriptor(), cell_height=16, labels=False)
    out = np.asarray(Image.open(path))
    pad, title = grid.PADDING, grid.TITLE_HEIGHT
    assert out.shape == (title + 2 * (16 + pad) + pad, 3 * 16 + 4 * pad, 3)
    # Row 0, column 0 is the image scaled 2x (all 100).
    cell = out[title + pad:title + pad + 16, pad:pad + 16]
    assert (cell == 100).all()


def test_training_curves(tmp_path):
    import tensorflow as tf
    model_dir = tmp_path / 'model_dir'
    for split, values in (('train', {'total_loss': [3.0, 2.0, 1.5]}),
                          ('validation', {'panoptic_quality/All_pq':
                                          [0.1, 0.25, 0.4]})):
        writer = tf.summary.create_file_writer(str(model_dir / split))
        with writer.as_default():
            for tag, series in values.items():
                for i, v in enumerate(series):
                    tf.summary.scalar(tag, v, step=(i + 1) * 10)
        writer.close()
    scalars = plots.read_scalars(str(model_dir))
    assert scalars['train']['total_loss'] == [(10, 3.0), (20, 2.0), (30, 1.5)]
    pq = scalars['validation']['panoptic_quality/All_pq']
    np.testing.assert_allclose([v for _, v in pq], [0.1, 0.25, 0.4],
                               rtol=1e-6)
    out = plots.plot_training_curves(str(model_dir),
                                     str(tmp_path / 'curves.png'))
    img = Image.open(out)
    assert img.size == (1100, 400)
    assert os.path.getsize(out) > 10000
