"""benchmarks/model_stats.py: the reference mobile parameters and MACs."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    'model_stats', ROOT / 'benchmarks' / 'model_stats.py')
model_stats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_stats)

# reference_numbers.md section 3: README 1.5B / 9.58B "FLOPs" (= MACs).
REFERENCE = {
    256: {'dense_network': 1.532e9, 'backbone': 0.611e9, 'decoder': 0.205e9,
          'class_head': 0.229e9, 'center_head': 0.244e9},
    640: {'dense_network': 9.577e9, 'backbone': 3.818e9, 'decoder': 1.278e9,
          'class_head': 1.434e9, 'center_head': 1.524e9},
}


@pytest.mark.parametrize('size', [256, 640])
def test_reference_mobile_macs_and_parameters(size):
    stats = model_stats.model_stats('maskconver_mobilenet_mh_coco', size)
    macs = stats['multiply_adds']
    for key, want in REFERENCE[size].items():
        assert abs(macs[key] / want - 1) < 0.005, (key, macs[key], want)
    assert macs['mask_feature_head'] == macs['center_head']
    # Reported apart, at the head grid (stride 8): K x E x h x w.
    assert macs['mask_einsum'] == 50 * 256 * (size // 8) ** 2
    assert macs['mlp'] == 50 * 2 * 256 * 256
    params = stats['parameters']
    assert params['total'] == {'trainable': 3_441_897, 'all': 3_480_425}
    assert params['decoder'] == {'trainable': 916_288, 'all': 919_360}


def test_cli_json():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    result = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'model_stats.py'),
         '--experiment', 'maskconver_shapes', '--image_size', '64', '--json'],
        capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    stats = json.loads(result.stdout)
    assert stats['image_size'] == [64, 64] and stats['num_classes'] == 8
    # Same architecture as the reference, only 8 class channels:
    # 3,441,897 - (201 - 8) * (256 + 1) (classifier) - (201 - 8) * 256 (table).
    assert stats['parameters']['total']['trainable'] == (
        3_441_897 - 193 * 257 - 193 * 256)
