"""Tests for the dataset descriptor and the tf_keras import contract."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from maskconver_tf.data.descriptor import DatasetDescriptor


def test_coco_builtin_raw_channels_match_reference():
    d = DatasetDescriptor.builtin('coco')
    assert len(d) == 133
    assert len(d.thing_ids) == 80 and len(d.stuff_ids) == 53
    # The reference configs: 201 channels, channel == COCO id.
    assert d.num_classes == 201
    assert d.channel(200) == 200 and d.channel(1) == 1
    assert d.id_to_channel[12] == -1  # 12 is not a COCO panoptic category
    assert d.is_thing_channel[90] and not d.is_thing_channel[92]
    assert not d.is_thing_channel[0]


def test_contiguous_mapping_with_noncontiguous_ids():
    d = DatasetDescriptor.builtin('shapes')
    assert d.num_classes == 8
    np.testing.assert_array_equal(d.channel_to_id, [0, 1, 2, 3, 4, 11, 12, 13])
    assert [d.channel(i) for i in (1, 4, 11, 13)] == [1, 4, 5, 7]
    np.testing.assert_array_equal(
        d.is_thing_channel, [False, True, True, True, True, False, False, False])
    for ch in range(1, d.num_classes):
        assert d.channel(d.category_id(ch)) == ch


def test_from_json_and_palette(tmp_path):
    cats = [{'id': 7, 'name': 'a', 'isthing': 1, 'color': [1, 2, 3]},
            {'id': 3, 'name': 'b', 'isthing': 0}]
    p = tmp_path / 'p.json'
    p.write_text(json.dumps({'categories': cats}))
    d = DatasetDescriptor.from_json(p)
    assert d.ids == [3, 7]
    assert d.palette()[7].tolist() == [1, 2, 3]
    assert d.palette()[3].sum() > 0  # a default colour was assigned
    assert d.stuff_ids == [3] and d.thing_ids == [7]


@pytest.mark.parametrize('cats, message', [
    ([{'id': 1, 'name': 'a', 'isthing': 1}, {'id': 1, 'name': 'b', 'isthing': 0}],
     'appears twice'),
    ([{'id': 0, 'name': 'a', 'isthing': 1}], 'must be positive'),
    ([{'id': 2, 'name': 'a'}], "lacks ['isthing']"),
    ([], 'empty'),
])
def test_bad_categories_are_named(cats, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
        DatasetDescriptor.from_categories(cats, source='my.json')


def test_unknown_id_error_names_source():
    d = DatasetDescriptor.builtin('shapes')
    with pytest.raises(KeyError, match='unknown category id 5'):
        d.category(5)


def test_import_works_with_keras3_behind_tf_keras():
    # tf.keras is Keras 3 in TF 2.20; our layers must still be Keras 2.
    code = ('import tensorflow as tf, maskconver_tf, tf_keras;'
            'assert tf.keras.__version__.startswith("3"), tf.keras.__version__;'
            'assert tf_keras.__version__.startswith("2.")')
    env = dict(os.environ, TF_USE_LEGACY_KERAS='0')
    subprocess.run([sys.executable, '-c', code], check=True, env=env)


def test_missing_tf_keras_gives_one_clear_error():
    code = ('import sys; sys.modules["tf_keras"] = None\n'
            'try:\n import maskconver_tf\nexcept ImportError as e:\n print(e)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert 'tf-keras==2.20.*' in out and 'pip install' in out
