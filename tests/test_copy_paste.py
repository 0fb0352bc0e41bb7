"""Copy-paste on two hand-made 8 x 8 samples.

Category values index is_stuff = [F, F, F, T, T] (0 void, 1-2 things, 3-4
stuff, -1 padding). Sample 1: stuff 3 in cols 0..3; thing id 1 (class 1)
rows 0..1 x cols 4..5; thing id 2 (class 2) rows 6..7 x cols 6..7; max id 2,
so pasted ids are offset by 3. Pixels 10.
Sample 2 (pixels 200): thing id 1 (class 2) rows 3..4 x cols 3..5 (6 px);
thing id 5 (class 1) row 0 x cols 0..1 (2 px); stuff 4 rows 6..7 x cols
0..3 (8 px); stuff 3 row 1 x cols 4..7 (4 px, over sample 1's thing 1);
padding row 7 x cols 4..7; void elsewhere. p = 1 pastes 20 pixels.
"""

import numpy as np
import tensorflow as tf

from maskconver_tf.ops import copy_paste

IS_STUFF = [False, False, False, True, True]


def _samples():
    c1 = np.zeros([8, 8], np.int32)
    i1 = np.zeros([8, 8], np.int32)
    c1[:, :4] = 3
    c1[0:2, 4:6], i1[0:2, 4:6] = 1, 1
    c1[6:8, 6:8], i1[6:8, 6:8] = 2, 2
    c2 = np.zeros([8, 8], np.int32)
    i2 = np.zeros([8, 8], np.int32)
    c2[3:5, 3:6], i2[3:5, 3:6] = 2, 1
    c2[0, 0:2], i2[0, 0:2] = 1, 5
    c2[6:8, 0:4] = 4
    c2[1, 4:8] = 3
    c2[7, 4:8] = -1
    im1 = np.full([8, 8, 3], 10, np.uint8)
    im2 = np.full([8, 8, 3], 200, np.uint8)
    return im1, c1, i1, im2, c2, i2


def _run(p, seed=None):
    out = copy_paste.copy_paste(*_samples(), is_stuff=IS_STUFF,
                                probability=p, seed=seed)
    return [x.numpy() for x in out]


def test_probability_zero_is_identity():
    im1, c1, i1, *_ = _samples()
    image, category, instance = _run(0.0)
    np.testing.assert_array_equal(image, im1)
    np.testing.assert_array_equal(category, c1)
    np.testing.assert_array_equal(instance, i1)


def test_probability_one_pastes_everything():
    _, c1, i1, _, c2, i2 = _samples()
    image, category, instance = _run(1.0)
    pasted = image[..., 0] == 200
    assert pasted.sum() == 20
    assert np.all(image[~pasted] == 10)
    expected = (i2 > 0) | (c2 == 3) | (c2 == 4)
    np.testing.assert_array_equal(pasted, expected)
    np.testing.assert_array_equal(category[pasted], c2[pasted])
    np.testing.assert_array_equal(category[~pasted], c1[~pasted])
    # Thing ids offset past sample 1's max id (2): 1 -> 4, 5 -> 8.
    assert np.all(instance[3:5, 3:6] == 4) and np.all(instance[0, 0:2] == 8)
    # Pasted stuff clears instance ids: sample 1's thing 1 keeps row 0 only.
    assert np.all(instance[1, 4:8] == 0)
    assert (instance == 1).sum() == 2 and np.all(instance[0, 4:6] == 1)
    assert np.all(instance[6:8, 6:8] == 2)  # untouched thing
    # Padding (row 7, cols 4..7) and void of sample 2 are never pasted.
    assert np.all(category[7, 4:6] == c1[7, 4:6])
    assert sorted(np.unique(instance).tolist()) == [0, 1, 2, 4, 8]


def test_half_probability_pastes_whole_segments():
    _, _, _, _, c2, i2 = _samples()
    regions = [i2 == 1, i2 == 5, c2 == 4, c2 == 3]
    seen = set()
    for s in range(12):
        image, _, _ = _run(0.5, seed=tf.constant([s, 7]))
        pasted = image[..., 0] == 200
        decision = []
        for region in regions:
            # Each instance / stuff class is pasted entirely or not at all.
            assert pasted[region].all() or not pasted[region].any()
            decision.append(bool(pasted[region].all()))
        assert pasted.sum() == sum(r.sum() for r, d in zip(regions, decision)
                                   if d)
        seen.add(tuple(decision))
    assert len(seen) > 2  # independent draws per segment


def test_float_images_and_static_shapes():
    im1, c1, i1, im2, c2, i2 = _samples()
    fn = tf.function(lambda *a: copy_paste.copy_paste(
        *a, is_stuff=IS_STUFF, probability=1.0))
    specs = [tf.TensorSpec([8, 8, 3], tf.float32),
             tf.TensorSpec([8, 8], tf.int32), tf.TensorSpec([8, 8], tf.int32)]
    concrete = fn.get_concrete_function(*(specs + specs))
    assert [o.shape.as_list() for o in concrete.outputs] == [
        [8, 8, 3], [8, 8], [8, 8]]
    image, _, _ = fn(im1.astype(np.float32), c1, i1, im2.astype(np.float32),
                     c2, i2)
    assert image.dtype == tf.float32 and (image.numpy() == 200).sum() == 60
