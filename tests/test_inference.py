"""Inference wrapper: backends agree, any image size maps back, bad paths."""

import copy
import json
import os
import shutil

import numpy as np
import pytest

from maskconver_tf import inference

import inference_test_utils as utils  # noqa: E402  (tests/ is on sys.path)


@pytest.fixture(scope='module')
def art(tmp_path_factory):
    return utils.artifacts(tmp_path_factory)


@pytest.fixture(scope='module')
def predictors(art):
    return {name: inference.load_predictor(art[key]) for name, key in (
        ('checkpoint', 'model_dir'), ('saved_model', 'export_dir'),
        ('tflite', 'tflite'))}


def test_resize_nearest_and_map_back():
    mask = np.arange(4, dtype=np.int32).reshape(2, 2)
    np.testing.assert_array_equal(
        inference.resize_nearest(mask, (4, 4)),
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    # A 2x4 image scaled by 2 into a 8x8 input: rows 0-3, cols 0-7 hold it.
    grid = np.zeros([8, 8], np.int32)
    grid[:4, :] = np.repeat(np.repeat([[1, 2, 3, 4], [5, 6, 7, 8]], 2, 0),
                            2, 1)
    grid[4:, :] = 9  # padding: must not leak back
    info = np.array([[2, 4], [8, 8], [2, 2], [0, 0]], np.float32)
    np.testing.assert_array_equal(inference.map_back_from_input(grid, info),
                                  [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_backends_detected(predictors, art):
    assert {k: p.backend for k, p in predictors.items()} == {
        'checkpoint': 'checkpoint', 'saved_model': 'saved_model',
        'tflite': 'tflite'}
    for p in predictors.values():
        assert p.input_size == (utils.INPUT_SIZE, utils.INPUT_SIZE)
        assert p.descriptor.ids == [1, 2, 3, 4, 11, 12, 13]
    assert inference.detect_backend(art['saved_model_dir']) == 'saved_model'
    assert inference.detect_backend(art['checkpoint']) == 'checkpoint'


def test_checkpoint_saved_model_tflite_agree(predictors, art):
    categories, kept = set(), 0
    for image in art['images']:
        outs = {k: p.predict(image) for k, p in predictors.items()}
        ref = outs['checkpoint']
        assert ref['category_mask'].dtype == np.int32
        assert ref['category_mask'].shape == image.shape[:2]
        categories |= set(np.unique(ref['category_mask']).tolist())
        kept += int((ref['classes'] > 0).sum())
        for name in ('saved_model', 'tflite'):
            out = outs[name]
            agree = (out['category_mask'] == ref['category_mask']).mean()
            assert agree >= 0.999, (name, agree)
            same = out['instance_mask'] == ref['instance_mask']
            assert same.mean() >= 0.999
            np.testing.assert_allclose(out['scores'], ref['scores'], atol=1e-4)
            # Classes must match wherever the scores are clearly separated.
            s = ref['scores']
            gaps = np.minimum(np.abs(np.diff(s, prepend=np.inf)),
                              np.abs(np.diff(s, append=-np.inf)))
            clear = gaps > 1e-3
            np.testing.assert_array_equal(out['classes'][clear],
                                          ref['classes'][clear])
    # Non-trivial outputs: several segments and more than one category.
    assert kept >= 4
    assert len(categories - {0}) >= 2


def test_odd_size_maps_back_to_original(predictors):
    rng = np.random.RandomState(1)
    image = rng.randint(0, 256, (37, 91, 3)).astype(np.uint8)
    outs = {k: p.predict(image) for k, p in predictors.items()}
    for out in outs.values():
        assert out['category_mask'].shape == (37, 91)
        assert out['instance_mask'].shape == (37, 91)
    # Checkpoint and SavedModel merge in original pixels: identical.
    np.testing.assert_array_equal(outs['saved_model']['category_mask'],
                                  outs['checkpoint']['category_mask'])
    # TFLite merges on the input grid and maps back with nearest neighbour.
    agree = (outs['tflite']['category_mask'] ==
             outs['checkpoint']['category_mask']).mean()
    assert agree >= 0.98


def test_bad_image_inputs(predictors):
    p = predictors['tflite']
    with pytest.raises(inference.InferenceError, match='uint8'):
        p.predict(np.zeros([8, 8, 3], np.float32))
    with pytest.raises(inference.InferenceError, match=r'\[H, W, 3\]'):
        p.predict(np.zeros([8, 8], np.uint8))


def test_load_errors(art, tmp_path):
    with pytest.raises(inference.InferenceError, match='no such model'):
        inference.load_predictor(str(tmp_path / 'nope'))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(inference.InferenceError, match='no checkpoint'):
        inference.load_predictor(str(empty))
    # A checkpoint without params.yaml needs --experiment.
    bare = tmp_path / 'bare'
    bare.mkdir()
    for f in os.listdir(art['model_dir']):
        if f != 'params.yaml':
            shutil.copy(os.path.join(art['model_dir'], f), bare / f)
    with pytest.raises(inference.InferenceError, match='params.yaml'):
        inference.load_predictor(str(bare))
    p = inference.load_predictor(str(bare), experiment=utils.EXPERIMENT,
                                 params_override=utils.PARAMS_OVERRIDE_STR)
    image = art['images'][0]
    ref = inference.load_predictor(art['model_dir']).predict(image)
    np.testing.assert_array_equal(p.predict(image)['category_mask'],
                                  ref['category_mask'])
    # Wrong architecture for the checkpoint: a clear restore error.
    override = copy.deepcopy(utils.PARAMS_OVERRIDE)
    override['task']['model']['embedding_size'] = 32
    with pytest.raises(inference.InferenceError, match='cannot restore'):
        inference.load_predictor(str(bare), experiment=utils.EXPERIMENT,
                                 params_override=json.dumps(override))
