"""benchmarks/backbone_comparison.py: the backbone table from hand-made runs."""

import argparse
import json
import os
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import backbone_comparison as bc  # noqa: E402
from benchmarks import tflite_matrix  # noqa: E402


def _matrix(tmp_path):
    """A tflite_matrix JSON written by its own writer (two sizes)."""
    rows = []
    for size, full_q, full_f, back_q in ((256, 9.0, 18.0, 3.0),
                                         (640, 60.0, 150.0, 20.0)):
        for graph, label, ms in (('full s4 split', 'int8', full_q),
                                 ('full s4 split', 'float32', full_f),
                                 ('backbone', 'int8', back_q)):
            rows.append((size, graph, label, True,
                         {'mean_ms': ms + 1, 'p50_ms': ms, 'p90_ms': ms + 2,
                          'min_ms': ms - 1, 'init_ms': 5.0,
                          'size_bytes': 1000, 'sha256': 'ab'}))
        # A builtin-kernel row the table must not read.
        rows.append((size, 'full s4 split', 'int8', False,
                     {'mean_ms': 99.0, 'p50_ms': 99.0, 'p90_ms': 99.0,
                      'min_ms': 99.0, 'init_ms': 5.0, 'size_bytes': 1000}))
    path = tmp_path / 'matrix.json'
    args = argparse.Namespace(experiment='maskconver_mobilenet_mh_coco',
                              num_threads=2, rounds=3, num_runs=30,
                              checkpoint_path=None)
    tflite_matrix.write_rows(str(path), rows, args)
    with open(path) as f:
        return json.load(f)


def _summary():
    pq = {'val': {'All': 0.60, 'Things': 0.40, 'Stuff': 0.90},
          'shifted': {'All': 0.45, 'Things': 0.20, 'Stuff': 0.75}}
    int8 = {'val': {'All': 0.595, 'Things': 0.39, 'Stuff': 0.9},
            'shifted': {'All': 0.43, 'Things': 0.19, 'Stuff': 0.7}}
    return {'timings_s': {'train': 900.0},
            'pq': {'tflite float32': pq, 'tflite int8': int8}}


def _stats():
    def one(macs):
        return {'parameters': {'total': {'trainable': 2_500_000}},
                'multiply_adds': {'dense_network': macs}}
    by_size = {256: one(1.2e9), 640: one(7.5e9)}
    return dict(by_size[256], by_size=by_size)


def test_row_and_table(tmp_path):
    matrix = _matrix(tmp_path)
    assert matrix['rows'][0]['p50_ms'] == 9.0 and 'sha256' not in \
        matrix['rows'][0]
    assert bc.p50(matrix, 256, 'full s4 split', 'int8') == 9.0
    assert bc.p50(matrix, 256, 'cnn', 'int8') is None
    row = bc.comparison_row('maskconver_mobilenet_mh_coco', _stats(), matrix,
                            _summary(), 11.6, [256, 640])
    assert row['parameters_m'] == pytest.approx(2.5)
    assert row['gmacs'] == {256: pytest.approx(1.2), 640: pytest.approx(7.5)}
    assert row['latency'][256]['full_over_backbone'] == pytest.approx(3.0)
    assert row['latency'][640]['float_over_int8'] == pytest.approx(2.5)
    assert row['pq']['val']['float'] == pytest.approx(60.0)
    assert row['pq']['val']['int8_drop'] == pytest.approx(0.5)
    assert row['pq']['shifted']['int8_drop'] == pytest.approx(2.0)
    assert row['demo_train_min'] == pytest.approx(15.0)
    lines = bc.format_table([row], [256, 640])
    cells = [c.strip() for c in lines[-1].strip('|').split('|')]
    assert len(cells) == len(lines[0].strip('|').split('|'))
    assert cells[:4] == ['`maskconver_mobilenet_mh_coco`', '2.50', '1.20',
                         '7.50']
    assert cells[4:9] == ['9.00', '18.00', '3.00', '3.00x', '2.00x']
    assert cells[-6:] == ['60.00 / 40.00', '0.50', '45.00 / 20.00', '2.00',
                          '15.0', '11.60']

    png = tmp_path / 'plot.png'
    bc.plot([row], [256, 640], str(png))
    image = np.asarray(Image.open(png).convert('L'))
    assert image.shape[1] > image.shape[0] > 100  # two panels side by side
    assert image.min() < 128  # something drawn on the white canvas


def test_runs_are_checked(tmp_path):
    with pytest.raises(SystemExit, match='EXPERIMENT=DEMO_OUTPUT_DIR'):
        bc.parse_run('/tmp/somewhere')
    assert bc.parse_run('a=/b=c') == ('a', '/b=c')
    with pytest.raises(SystemExit, match='params.yaml not found'):
        bc.check_backbone('maskconver_mobilenet_mh_coco', str(tmp_path))
    os.makedirs(tmp_path / 'model')
    params = {'task': {'model': {'backbone': {
        'type': 'mobilenet_trunk',
        'mobilenet_trunk': {'model_id': 'MobileNetV4ConvSmall'}}}}}
    with open(tmp_path / 'model' / 'params.yaml', 'w') as f:
        yaml.safe_dump(params, f)
    bc.check_backbone('maskconver_mobilenetv4_conv_small_coco', str(tmp_path))
    with pytest.raises(SystemExit, match="'MobileNetV4ConvSmall', but "
                       "maskconver_mobilenet_mh_coco uses "
                       "'MobileNetMultiAVGSeg'"):
        bc.check_backbone('maskconver_mobilenet_mh_coco', str(tmp_path))
    with pytest.raises(ValueError, match="'resnet_unet'"):
        bc.model_id_of({'task': {'model': {'backbone': {
            'type': 'resnet_unet'}}}})
