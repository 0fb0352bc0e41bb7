"""Tests for the synthetic "shapes" COCO panoptic generator."""

import collections
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from maskconver_tf.data import shapes
from maskconver_tf.data.shapes_categories import CATEGORIES

NAME_TO_ID = {c['name']: c['id'] for c in CATEGORIES}
STUFF_IDS = {c['id'] for c in CATEGORIES if not c['isthing']}
# sha256 of image + ids of image 1, seed 0, 64 px (the pre-style generator's).
GOLDEN_DEFAULT_DIGEST = '109733037bf3f3de'


def _read_ids(path):
    """int64 [H, W] segment ids of a COCO panoptic PNG."""
    rgb = np.asarray(Image.open(path)).astype(np.int64)
    assert rgb.ndim == 3 and rgb.shape[2] == 3
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _files(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    json_path = shapes.generate_dataset(str(root), 30, image_size=96, seed=7,
                                        start_image_id=5)
    with open(json_path) as f:
        return root, json.load(f)


@pytest.fixture(scope='module')
def samples():
    """40 samples at 128 px drawn straight from generate_image."""
    return [shapes.generate_image(shapes.image_rng(11, i), 128)
            for i in range(1, 41)]


def test_json_layout_and_categories(dataset):
    root, data = dataset
    assert data['categories'] == CATEGORIES
    assert [im['id'] for im in data['images']] == list(range(5, 35))
    assert [a['image_id'] for a in data['annotations']] == list(range(5, 35))
    for im, ann in zip(data['images'], data['annotations']):
        assert im['file_name'] == f'{im["id"]:06d}.jpg'
        assert ann['file_name'] == f'{im["id"]:06d}.png'
        assert (im['height'], im['width']) == (96, 96)
        with Image.open(root / 'images' / im['file_name']) as jpg:
            assert jpg.format == 'JPEG' and jpg.mode == 'RGB'
            assert jpg.size == (96, 96)


@pytest.fixture(scope='module')
def shifted_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('shifted')
    json_path = shapes.generate_dataset(str(root), 30, image_size=96,
                                        seed=shapes.SHIFTED_SEED,
                                        style='shifted')
    with open(json_path) as f:
        return root, json.load(f)


@pytest.mark.parametrize('which,max_things', [('dataset', 12),
                                              ('shifted_dataset', 16)])
def test_png_matches_segments_info(which, max_things, request):
    root, data = request.getfixturevalue(which)
    for ann in data['annotations']:
        ids = _read_ids(root / 'panoptic' / ann['file_name'])
        info = {s['id']: s for s in ann['segments_info']}
        assert len(info) == len(ann['segments_info'])
        assert set(np.unique(ids)) - {0} == set(info)
        stuff = collections.Counter()
        for sid, s in info.items():
            mask = ids == sid
            ys, xs = np.nonzero(mask)
            assert s['area'] == mask.sum() >= shapes.MIN_SEGMENT_AREA
            assert s['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1]
            assert s['iscrowd'] == 0
            assert s['category_id'] in NAME_TO_ID.values()
            if s['category_id'] in STUFF_IDS:
                stuff[s['category_id']] += 1
        assert max(stuff.values()) == 1
        things = [s for s in info.values() if s['category_id'] not in STUFF_IDS]
        assert 1 <= len(things) <= max_things
        for ring, disc in ann['concentric_pairs']:
            assert info[ring]['category_id'] == NAME_TO_ID['ring']
            assert info[disc]['category_id'] == NAME_TO_ID['disc']


def test_json_equals_generate_image(dataset):
    root, data = dataset
    ann = data['annotations'][3]
    image, ids, segments, pairs = shapes.generate_image(
        shapes.image_rng(7, ann['image_id']), 96)
    assert image.dtype == np.uint8 and image.shape == (96, 96, 3)
    assert ids.dtype == np.int32 and ids.shape == (96, 96)
    np.testing.assert_array_equal(
        ids, _read_ids(root / 'panoptic' / ann['file_name']))
    assert segments == ann['segments_info']
    assert pairs == ann['concentric_pairs']
    # JPEG at quality 95, 4:4:4, stays close to the drawn pixels.
    jpg = np.asarray(Image.open(root / 'images' / f'{ann["image_id"]:06d}.jpg'))
    assert np.abs(jpg.astype(int) - image).mean() < 4


def test_default_style_is_the_training_set_of_before():
    # A golden digest: the demo's and RESULTS' training data must not move
    # when styles are added or edited.
    import hashlib
    image, ids, segments, pairs = shapes.generate_image(
        shapes.image_rng(0, 1), 64)
    digest = hashlib.sha256(image.tobytes() + ids.tobytes()).hexdigest()
    assert digest[:16] == GOLDEN_DEFAULT_DIGEST
    assert shapes.STYLES['default'] == shapes.Style()


def test_shifted_style_is_harder_in_the_ways_it_says():
    """Same seeds, both styles: count things, pairs, sizes, pixel noise."""
    stats = {}
    for style in ('default', 'shifted'):
        things, pairs, areas, rough = [], [], [], []
        for i in range(1, 41):
            image, _, segments, concentric = shapes.generate_image(
                shapes.image_rng(3, i), 128, shapes.STYLES[style])
            t = [s for s in segments if s['category_id'] not in STUFF_IDS]
            things.append(len(t))
            areas += [s['area'] for s in t]
            pairs.append(len(concentric))
            # Mean |horizontal difference| over the sky rows: noise there.
            rough.append(np.abs(np.diff(image[:6].astype(int), axis=1)).mean())
        stats[style] = (np.mean(things), max(pairs), np.percentile(areas, 10),
                        np.mean(rough))
    d, s = stats['default'], stats['shifted']
    assert s[0] >= 1.3 * d[0], stats
    assert d[1] <= 2 and s[1] == 3, stats
    assert s[2] < d[2], stats
    assert s[3] > 1.3 * d[3], stats


def test_varied_style_spans_clean_to_noisy_per_image(tmp_path):
    """The demo's training look: sky-row noise and JPEG subsampling vary per
    image, from the clean default's level up to the shifted look's."""
    rough = {}
    for style in ('default', 'varied'):
        rough[style] = []
        for i in range(1, 41):
            image, *_ = shapes.generate_image(shapes.image_rng(3, i), 128,
                                              shapes.STYLES[style])
            rough[style].append(
                np.abs(np.diff(image[:6].astype(int), axis=1)).mean())
    d, v = np.array(rough['default']), np.array(rough['varied'])
    assert np.mean(v <= np.median(d) * 1.2) >= 0.1, (d, v)
    assert np.mean(v > 2 * np.median(d)) >= 0.25, (d, v)
    shapes.generate_dataset(str(tmp_path), 12, image_size=64, style='varied')
    subsampling = {_subsampling(tmp_path / 'images' / name)
                   for name in os.listdir(tmp_path / 'images')}
    assert len(subsampling) == 2, subsampling


def _subsampling(path):
    """JPEG chroma sampling factors per plane: 4:4:4 keeps both chroma
    planes at full size, 4:2:0 halves them."""
    with Image.open(path) as im:
        return tuple(im.layer[i][1:3] for i in range(3))


def test_clean_prob_draws_that_share_in_the_default_look(tmp_path,
                                                         monkeypatch):
    # 'shifted' writes 4:2:0 JPEGs and the default look 4:4:4, so the
    # subsampling of each file tells which look drew it.
    half = dataclasses.replace(shapes.STYLES['shifted'], clean_prob=0.5)
    monkeypatch.setitem(shapes.STYLES, 'half', half)
    shapes.generate_dataset(str(tmp_path), 40, image_size=64, style='half')
    looks = [_subsampling(tmp_path / 'images' / n)
             for n in sorted(os.listdir(tmp_path / 'images'))]
    clean = sum(look == ((1, 1), (1, 1), (1, 1)) for look in looks)
    assert 10 <= clean <= 30, clean
    assert len(set(looks)) == 2


def test_unknown_style_is_named(tmp_path):
    with pytest.raises(ValueError, match="'foggy'.*default.*shifted"):
        shapes.generate_dataset(str(tmp_path), 1, style='foggy')


def test_class_statistics(samples):
    counts = collections.Counter()
    thing_areas = []
    for _, ids, segments, _ in samples:
        assert {s['category_id'] for s in segments} >= {NAME_TO_ID['sky']}
        assert len(set(np.unique(ids)) - {0}) == len(segments)
        for s in segments:
            counts[s['category_id']] += 1
            if s['category_id'] not in STUFF_IDS:
                thing_areas.append(s['area'])
    for c in CATEGORIES:
        assert counts[c['id']] >= 10, (c['name'], counts)
    assert counts[NAME_TO_ID['sky']] == len(samples)
    # Things are big enough for a stride-8 model: median well above 8x8 px.
    assert np.median(thing_areas) > 150
    assert sum(counts[i] for i in (1, 2, 3, 4)) / len(samples) >= 4


def test_concentric_pairs_share_centre_and_ring_has_hole(samples):
    with_pairs = 0
    for _, ids, segments, pairs in samples:
        info = {s['id']: s for s in segments}
        with_pairs += bool(pairs)
        for ring_id, disc_id in pairs:
            assert info[ring_id]['category_id'] == NAME_TO_ID['ring']
            assert info[disc_id]['category_id'] == NAME_TO_ID['disc']
            ring, disc = ids == ring_id, ids == disc_id
            ring_c = np.argwhere(ring).mean(axis=0)
            disc_c = np.argwhere(disc).mean(axis=0)
            assert np.linalg.norm(ring_c - disc_c) < 1.5
            # The outer circle's centre, from the ring's bbox (x, y, w, h).
            x, y, w, h = info[ring_id]['bbox']
            assert abs(w - h) <= 1
            outer_c = np.array([y + h / 2 - 0.5, x + w / 2 - 0.5])
            assert np.linalg.norm(outer_c - disc_c) < 1.5
            # Hole: inside the outer radius there are pixels of neither the
            # ring nor the disc (the gap shows what is behind).
            yy, xx = np.mgrid[0:ids.shape[0], 0:ids.shape[1]]
            inside = np.hypot(yy - outer_c[0], xx - outer_c[1]) < w / 2 - 1
            gap = inside & ~ring & ~disc
            assert gap.sum() >= 4
            assert not ring[tuple(np.round(outer_c).astype(int))]
            assert disc[tuple(np.round(outer_c).astype(int))]
    assert with_pairs >= 0.3 * len(samples)


def test_deterministic_per_seed(tmp_path):
    a, b, c, d = (str(tmp_path / n) for n in 'abcd')
    shapes.generate_dataset(a, 4, image_size=64, seed=3)
    shapes.generate_dataset(b, 4, image_size=64, seed=3)
    shapes.generate_dataset(c, 4, image_size=64, seed=4)
    files_a, files_c = _files(a), _files(c)
    assert len(files_a) == 9
    assert files_a == _files(b)
    assert files_a.keys() == files_c.keys()
    for name in files_a:
        assert files_a[name] != files_c[name], name
    # Image k does not depend on num_images or start_image_id.
    shapes.generate_dataset(d, 2, image_size=64, seed=3, start_image_id=3)
    files_d = _files(d)
    for name in ('images/000003.jpg', 'panoptic/000004.png'):
        assert files_d[name] == files_a[name]


def test_rejects_tiny_images():
    with pytest.raises(ValueError, match='at least'):
        shapes.generate_image(np.random.default_rng(0), 16)


def test_cli_end_to_end(tmp_path):
    out = tmp_path / 'cli'
    result = subprocess.run(
        [sys.executable, '-m', 'maskconver_tf.data.shapes', '--output_dir',
         str(out), '--num_images', '5', '--image_size', '64', '--seed', '2',
         '--start_image_id', '10'],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
    assert result.returncode == 0, result.stderr
    assert '5 images' in result.stdout
    assert 'concentric' in result.stdout
    with open(out / 'panoptic.json') as f:
        data = json.load(f)
    assert [im['id'] for im in data['images']] == [10, 11, 12, 13, 14]
    assert sorted(os.listdir(out / 'panoptic')) == [
        f'{i:06d}.png' for i in range(10, 15)]


def test_cli_shifted_style_defaults_to_its_own_seed(tmp_path):
    shapes.main(['--output_dir', str(tmp_path), '--num_images', '2',
                 '--image_size', '64', '--style', 'shifted'])
    with open(tmp_path / 'panoptic.json') as f:
        info = json.load(f)['info']
    assert info['style'] == 'shifted'
    assert info['seed'] == shapes.SHIFTED_SEED != 0


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        shapes.main(['--help'])
    assert exc.value.code == 0
    assert '--num_images' in capsys.readouterr().out
