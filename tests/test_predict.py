"""predict CLI: every backend, odd sizes and modes, bad files counted."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from maskconver_tf import inference, predict

import inference_test_utils as utils


@pytest.fixture(scope='module')
def art(tmp_path_factory):
    return utils.artifacts(tmp_path_factory)


@pytest.fixture(scope='module')
def tflite_predictor(art):
    return inference.load_predictor(art['tflite'])


def _inputs(root, art):
    """Good images in several modes and sizes, plus a corrupt file."""
    os.makedirs(root, exist_ok=True)
    rgb = art['images'][0]
    Image.fromarray(rgb).save(os.path.join(root, 'a_rgb.png'))
    Image.fromarray(rgb).convert('L').save(os.path.join(root, 'b_gray.png'))
    Image.fromarray(rgb).convert('RGBA').save(os.path.join(root, 'c_rgba.png'))
    Image.fromarray(rgb).convert('CMYK').save(os.path.join(root, 'd_cmyk.jpg'),
                                              quality=95)
    odd = np.random.RandomState(0).randint(0, 256, (37, 91, 3), np.uint8)
    Image.fromarray(odd).save(os.path.join(root, 'e_odd.png'))
    with open(os.path.join(root, 'f_corrupt.jpg'), 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 this is not a jpeg')
    return rgb


def test_predict_folder_with_bad_files(art, tflite_predictor, tmp_path,
                                       capsys):
    in_dir = str(tmp_path / 'in')
    rgb = _inputs(in_dir, art)
    out_dir = str(tmp_path / 'out')
    code = predict.main(['--model', art['tflite'], '--input', in_dir,
                         '--input', str(tmp_path / 'missing.jpg'),
                         '--output_dir', out_dir])
    captured = capsys.readouterr()
    assert code == 0
    assert ('predict: 5 predicted, 2 failed (corrupt image: 1, missing file: '
            '1)') in captured.out
    assert 'f_corrupt.jpg' in captured.err and 'missing.jpg' in captured.err

    with open(os.path.join(out_dir, 'predictions.json')) as f:
        data = json.load(f)
    stems = ['a_rgb', 'b_gray', 'c_rgba', 'd_cmyk', 'e_odd']
    assert [a['file_name'] for a in data['annotations']] == [
        s + '.png' for s in stems]
    sizes = {os.path.splitext(i['file_name'])[0]: (i['height'], i['width'])
             for i in data['images']}
    assert sizes['e_odd'] == (37, 91) and sizes['a_rgb'] == (64, 64)
    ids = {c['id'] for c in data['categories']}
    assert ids == set(tflite_predictor.descriptor.ids)
    for ann in data['annotations']:
        for seg in ann['segments_info']:
            assert seg['category_id'] in ids
    for stem in stems:
        ov = Image.open(os.path.join(out_dir, 'overlays', stem + '.png'))
        pan = Image.open(os.path.join(out_dir, 'panoptic', stem + '.png'))
        assert ov.mode == 'RGB' and pan.mode == 'RGB'
        assert ov.size == pan.size == (sizes[stem][1], sizes[stem][0])

    # Converted modes predict what their RGB conversion predicts.
    ref = tflite_predictor.predict(rgb)
    segs = {a['file_name']: a['segments_info'] for a in data['annotations']}
    assert segs['a_rgb.png'] == _segments(ref, tflite_predictor)
    gray = np.asarray(Image.fromarray(rgb).convert('L').convert('RGB'))
    assert segs['b_gray.png'] == _segments(tflite_predictor.predict(gray),
                                           tflite_predictor)
    assert segs['c_rgba.png'] == segs['a_rgb.png']
    # The panoptic PNG of the odd image decodes to the 37x91 prediction.
    odd = np.asarray(Image.open(os.path.join(in_dir, 'e_odd.png')))
    out = tflite_predictor.predict(odd)
    from maskconver_tf.evaluation.pq import rgb2id
    ids_png = rgb2id(np.asarray(Image.open(
        os.path.join(out_dir, 'panoptic', 'e_odd.png'))))
    cat = np.zeros_like(ids_png)
    for seg in segs['e_odd.png']:
        cat[ids_png == seg['id']] = seg['category_id']
    thing = np.isin(out['category_mask'],
                    tflite_predictor.descriptor.thing_ids)
    expected = np.where(thing & (out['instance_mask'] == 0), 0,
                        out['category_mask'])
    np.testing.assert_array_equal(cat, expected)


def _segments(out, predictor):
    from maskconver_tf.evaluation.panoptic_writer import encode_panoptic
    _, segs = encode_panoptic(out['category_mask'], out['instance_mask'],
                              predictor.descriptor,
                              predict.slot_scores(out['classes'],
                                                  out['scores']))
    return json.loads(json.dumps(segs))


def test_predict_checkpoint_and_saved_model_glob(art, tmp_path, capsys):
    in_dir = tmp_path / 'in'
    in_dir.mkdir()
    for k, image in enumerate(art['images'][:2]):
        Image.fromarray(image).save(in_dir / f'img{k}.png')
    results = {}
    for name, model in (('ckpt', art['model_dir']),
                        ('sm', art['export_dir'])):
        out_dir = tmp_path / name
        code = predict.main(['--model', model, '--input',
                             str(in_dir / '*.png'), '--output_dir',
                             str(out_dir), '--max_images', '1'])
        assert code == 0
        assert 'predict: 1 predicted, 0 failed' in capsys.readouterr().out
        with open(out_dir / 'predictions.json') as f:
            results[name] = json.load(f)['annotations']
    assert len(results['ckpt']) == 1
    ckpt, sm = (r[0]['segments_info'] for r in (results['ckpt'],
                                                 results['sm']))
    assert len(ckpt) >= 2
    for a, b in zip(ckpt, sm):
        assert a.pop('score', 0) == pytest.approx(b.pop('score', 0), abs=1e-5)
    assert ckpt == sm


def test_predict_nothing_found(art, tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert predict.main(['--model', art['tflite'], '--input', str(empty),
                         '--output_dir', str(tmp_path / 'o1')]) == 1
    err = capsys.readouterr().err
    assert 'holds no image files' in err and 'no input images found' in err
    assert predict.main(['--model', art['tflite'], '--input',
                         str(tmp_path / 'none*.jpg'), '--output_dir',
                         str(tmp_path / 'o2')]) == 1
    assert 'matches no files' in capsys.readouterr().err


def test_predict_all_failed(art, tmp_path, capsys):
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image')
    code = predict.main(['--model', art['tflite'], '--input', str(bad),
                         '--output_dir', str(tmp_path / 'o')])
    assert code == 1
    assert 'predict: 0 predicted, 1 failed (corrupt image: 1)' in (
        capsys.readouterr().out)


def test_predict_bad_model(tmp_path, capsys):
    img = tmp_path / 'x.png'
    Image.fromarray(np.zeros([8, 8, 3], np.uint8)).save(img)
    code = predict.main(['--model', str(tmp_path / 'nope.tflite'), '--input',
                         str(img), '--output_dir', str(tmp_path / 'o')])
    assert code == 2
    assert 'no such model' in capsys.readouterr().err


def test_collect_inputs(tmp_path):
    (tmp_path / 'b.jpg').write_bytes(b'x')
    (tmp_path / 'a.png').write_bytes(b'x')
    (tmp_path / 'notes.txt').write_bytes(b'x')
    paths, problems = predict.collect_inputs(
        [str(tmp_path), str(tmp_path / '*.png'), str(tmp_path / 'gone.jpg')])
    assert [os.path.basename(p) for p in paths] == ['a.png', 'b.jpg',
                                                    'gone.jpg']
    assert problems == []
