"""evaluate: PQ round trip (COCO folder and TFRecords), CLI, bad inputs."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from maskconver_tf import evaluate, inference
from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.evaluation.panoptic_writer import decode_panoptic
from maskconver_tf.evaluation.pq import rgb2id

import inference_test_utils as utils

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


class OraclePredictor(inference.Predictor):
    """Returns the ground truth of the n-th image on the n-th call."""

    backend = 'oracle'

    def __init__(self, masks, descriptor):
        super().__init__('<oracle>', descriptor, (64, 64))
        self._masks = list(masks)

    def _run(self, image):
        category, instance = self._masks.pop(0)
        assert category.shape == image.shape[:2]
        k = 8
        return {'category_mask': category, 'instance_mask': instance,
                'classes': np.zeros([k], np.int32),
                'scores': np.zeros([k], np.float32)}


def _shapes(root, num=3, crowd=None):
    """A shapes set; optionally marks (image index, segment index) crowd."""
    json_path, _ = utils.shapes_images(root, num=num)
    with open(json_path) as f:
        data = json.load(f)
    if crowd is not None:
        i, s = crowd
        data['annotations'][i]['segments_info'][s]['iscrowd'] = 1
        with open(json_path, 'w') as f:
            json.dump(data, f)
    descriptor = DatasetDescriptor.from_categories(data['categories'])
    masks = []
    for ann in data['annotations']:
        ids = rgb2id(np.asarray(Image.open(
            os.path.join(root, 'panoptic', ann['file_name']))))
        masks.append(decode_panoptic(ids, ann['segments_info'], descriptor))
    return json_path, data, descriptor, masks


def test_groundtruth_as_prediction_scores_100_coco_folder(tmp_path):
    root = str(tmp_path / 'shapes')
    json_path, data, descriptor, masks = _shapes(root)
    out = str(tmp_path / 'eval')
    results = evaluate.evaluate(
        OraclePredictor(masks, descriptor), out, gt_json=json_path,
        gt_dir=os.path.join(root, 'panoptic'),
        image_dir=os.path.join(root, 'images'), show_progress=False)
    assert results['All']['pq'] == pytest.approx(1.0)
    assert results['All']['n'] == len({s['category_id']
                                       for a in data['annotations']
                                       for s in a['segments_info']})
    with open(os.path.join(out, 'pq.json')) as f:
        report = json.load(f)
    assert report['All']['pq'] == pytest.approx(1.0)
    assert report['settings']['num_images'] == 3
    assert len(os.listdir(os.path.join(out, 'panoptic'))) == 3


def test_groundtruth_as_prediction_scores_100_tfrecords(tmp_path):
    from maskconver_tf.data import create_tfrecords
    root = str(tmp_path / 'shapes')
    # Segment 3 of image 0 is a thing (after sky / wall / ground): crowd.
    _, data0, _, _ = _shapes(str(tmp_path / 'probe'), num=1)
    thing_index = next(i for i, s in enumerate(
        data0['annotations'][0]['segments_info']) if s['category_id'] <= 4)
    json_path, data, descriptor, masks = _shapes(root, num=3,
                                                 crowd=(0, thing_index))
    prefix = str(tmp_path / 'records' / 'val')
    create_tfrecords.convert(os.path.join(root, 'images'), json_path,
                             os.path.join(root, 'panoptic'), prefix,
                             num_shards=1)
    params = utils.make_params()
    params.override({'task': {'validation_data': {
        'input_path': prefix + '*'}}})
    out = str(tmp_path / 'eval')
    results = evaluate.evaluate(OraclePredictor(masks, descriptor), out,
                                params=params, show_progress=False)
    # The crowd segment is predicted as an ordinary segment: lying on
    # same-category crowd it is ignored, not a false positive.
    assert results['All']['pq'] == pytest.approx(1.0)
    with open(os.path.join(out, 'groundtruth', 'panoptic.json')) as f:
        gt = json.load(f)
    assert [a['image_id'] for a in gt['annotations']] == [1, 2, 3]
    crowd = [s for s in gt['annotations'][0]['segments_info'] if s['iscrowd']]
    source = data['annotations'][0]['segments_info'][thing_index]
    assert len(crowd) == 1
    assert (crowd[0]['category_id'], crowd[0]['area']) == (
        source['category_id'], source['area'])
    assert sum(s['iscrowd'] for a in gt['annotations'][1:]
               for s in a['segments_info']) == 0
    assert len(os.listdir(os.path.join(out, 'groundtruth', 'panoptic'))) == 3


@pytest.fixture(scope='module')
def art(tmp_path_factory):
    return utils.artifacts(tmp_path_factory)


def test_cli_checkpoint_on_coco_folder(art, tmp_path, capsys):
    root = art['data_root']
    out = str(tmp_path / 'eval')
    code = evaluate.main([
        '--checkpoint_path', art['model_dir'], '--output_dir', out,
        '--gt_json', art['data_json'],
        '--gt_dir', os.path.join(root, 'panoptic'),
        '--image_dir', os.path.join(root, 'images'), '--max_images', '2'])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert 'evaluate: PQ' in captured.out and 'Things' in captured.out
    with open(os.path.join(out, 'pq.json')) as f:
        report = json.load(f)
    assert 0.0 <= report['All']['pq'] <= 1.0
    assert report['settings']['backend'] == 'checkpoint'
    assert report['settings']['num_images'] == 2
    with open(os.path.join(out, 'predictions.json')) as f:
        assert len(json.load(f)['annotations']) == 2
    with open(os.path.join(out, 'groundtruth_subset.json')) as f:
        assert len(json.load(f)['images']) == 2


def test_cli_missing_checkpoint(tmp_path, capsys):
    code = evaluate.main(['--checkpoint_path', str(tmp_path / 'nope'),
                          '--experiment', utils.EXPERIMENT,
                          '--output_dir', str(tmp_path / 'o')])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith('evaluate: error: --checkpoint_path')
    assert 'no such file' in err and len(err.strip().splitlines()) == 1


def test_cli_no_params_yaml_no_experiment(art, tmp_path, capsys):
    bare = tmp_path / 'bare'
    bare.mkdir()
    for f in os.listdir(art['model_dir']):
        if f != 'params.yaml':
            (bare / f).write_bytes(open(os.path.join(art['model_dir'], f),
                                        'rb').read())
    code = evaluate.main(['--checkpoint_path', str(bare),
                          '--output_dir', str(tmp_path / 'o')])
    assert code == 2
    err = capsys.readouterr().err
    assert 'no params.yaml' in err and '--experiment' in err


def test_cli_dataset_differs_from_groundtruth(art, tmp_path, capsys):
    sample = os.path.join(FIXTURES, 'coco_panoptic_sample')
    code = evaluate.main([
        '--tflite', art['tflite'], '--output_dir', str(tmp_path / 'o'),
        '--gt_json', os.path.join(sample, 'panoptic_examples.json'),
        '--gt_dir', os.path.join(sample, 'panoptic_examples'),
        '--image_dir', os.path.join(sample, 'input_images')])
    assert code == 2
    err = capsys.readouterr().err
    assert 'differs from the ground-truth categories' in err
    assert 'ids only in the ground truth' in err


def test_cli_no_groundtruth_source(art, tmp_path, capsys):
    # A TFLite model without --gt_json and without an experiment: no GT.
    code = evaluate.main(['--tflite', art['tflite'],
                          '--output_dir', str(tmp_path / 'o')])
    assert code == 2
    assert 'no config' in capsys.readouterr().err
    # An experiment whose validation records do not exist.
    code = evaluate.main(['--tflite', art['tflite'], '--experiment',
                          utils.EXPERIMENT, '--params_override',
                          'task.validation_data.input_path=/nonexistent/x*',
                          '--output_dir', str(tmp_path / 'o2')])
    assert code == 2
    assert 'matches no files' in capsys.readouterr().err


def test_check_categories():
    d = DatasetDescriptor.builtin('shapes')
    evaluate.check_categories(d, d.to_coco_categories(), 'x')
    cats = d.to_coco_categories()
    cats[0] = dict(cats[0], isthing=0)
    with pytest.raises(evaluate.EvaluationError, match='1 ids differ'):
        evaluate.check_categories(d, cats, 'x')
