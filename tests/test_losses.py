"""MaskConver losses against numpy formulas on small tensors."""

import numpy as np
import pytest
import tensorflow as tf

from maskconver_tf.losses import maskconver_losses as losses


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_focal(logits, targets, num_instances, weights):
    p = np.clip(sigmoid(logits), 1e-4, 1 - 1e-4)
    pos = targets == 1.0
    loss = np.where(pos, -(1 - p) ** 2 * np.log(p),
                    -(1 - targets) ** 4 * p ** 2 * np.log(1 - p))
    loss = loss * weights[..., None]
    per_image = loss.reshape(len(loss), -1).sum(1) / (num_instances + 1)
    return per_image.mean()


def mask_case(seed=0):
    """Batch 2, K 3, logits 4x4 -> targets 8x8; slot 2 of image 1 padded."""
    rng = np.random.RandomState(seed)
    logits = rng.randn(2, 4, 4, 3).astype(np.float32)
    targets = (rng.rand(2, 8, 8, 3) > 0.5).astype(np.float32)
    targets[1, :, :, 2] = -1.0
    weights = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    padding = np.zeros([2, 8, 8], np.float32)
    padding[0, 6:] = 1.0
    return logits, targets, weights, padding


def np_mask_terms(logits, targets, weights, padding):
    up = tf.image.resize(logits, targets.shape[1:3], method='bilinear').numpy()
    w = (targets >= 0) * weights[:, None, None, :] * (1 - padding[..., None])
    gt = np.maximum(targets, 0)
    return up, gt, w


def test_focal_loss_matches_numpy_and_normalises_per_image():
    rng = np.random.RandomState(0)
    logits = rng.randn(2, 4, 5, 3).astype(np.float32) * 3
    targets = rng.rand(2, 4, 5, 3).astype(np.float32) * 0.9
    targets[0, 1, 2, 1] = targets[1, 3, 4, 2] = targets[1, 0, 0, 0] = 1.0
    num = np.array([1, 2], np.float32)
    weights = np.ones([2, 4, 5], np.float32)
    weights[1, :, 4] = 0.0
    got = losses.focal_loss(logits, targets, num, weights).numpy()
    np.testing.assert_allclose(got, np_focal(logits, targets, num, weights),
                               rtol=1e-5)
    # Per-image normalisation: image 0 alone / 2 and image 1 alone / 3.
    one = [losses.focal_loss(logits[i:i + 1], targets[i:i + 1], num[i:i + 1],
                             weights[i:i + 1]).numpy() for i in range(2)]
    np.testing.assert_allclose(got, np.mean(one), rtol=1e-6)
    no_weights = losses.focal_loss(logits, targets, num).numpy()
    np.testing.assert_allclose(
        no_weights, np_focal(logits, targets, num, np.ones([2, 4, 5])), rtol=1e-5)


def test_focal_loss_hand_value_and_clipping():
    # One positive with p = sigmoid(0) = 0.5, one negative t = 0.5 with p 0.5,
    # N = 0: (0.25 * log 2 + 0.0625 * 0.25 * log 2) / 1.
    got = losses.focal_loss(np.zeros([1, 1, 2, 1]),
                            np.array([[[[1.0], [0.5]]]]), [0]).numpy()
    np.testing.assert_allclose(got, (0.25 + 0.0625 * 0.25) * np.log(2), rtol=1e-6)
    # Saturated wrong logits are bounded by the 1e-4 clip: -log(1e-4).
    got = losses.focal_loss(np.full([1, 1, 1, 1], -100.0), np.ones([1, 1, 1, 1]),
                            [0]).numpy()
    np.testing.assert_allclose(got, (1 - 1e-4) ** 2 * -np.log(1e-4), rtol=1e-4)


def test_mask_bce_matches_numpy_with_padding_slots():
    logits, targets, weights, padding = mask_case()
    up, gt, w = np_mask_terms(logits, targets, weights, padding)
    bce = np.maximum(up, 0) - up * gt + np.log1p(np.exp(-np.abs(up)))
    expected = (bce * w).sum() / (w.sum() + 1)
    got = losses.mask_bce_loss(logits, targets, weights, padding).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The -1 padding slot contributes nothing whatever its logits.
    logits2 = logits.copy()
    logits2[1, ..., 2] = 50.0
    np.testing.assert_allclose(
        losses.mask_bce_loss(logits2, targets, weights, padding).numpy(), got,
        rtol=1e-6)


def test_mask_bce_padding_mask_is_resized_to_target():
    logits, targets, weights, _ = mask_case()
    padding = np.zeros([2, 16, 16], np.float32)
    padding[0, 12:] = 1.0  # = rows 6.. at 8x8
    small = np.zeros([2, 8, 8], np.float32)
    small[0, 6:] = 1.0
    np.testing.assert_allclose(
        losses.mask_bce_loss(logits, targets, weights, padding).numpy(),
        losses.mask_bce_loss(logits, targets, weights, small).numpy(), rtol=1e-6)


def test_dice_global_matches_numpy():
    logits, targets, weights, padding = mask_case()
    up, gt, w = np_mask_terms(logits, targets, weights, padding)
    p, g = sigmoid(up) * w, gt * w
    d = 2 * (p * g).sum() / ((p + g).sum() + 1e-7)
    got = losses.dice_loss(logits, targets, weights, padding).numpy()
    np.testing.assert_allclose(got, 1 - d * np.exp(1 - d), rtol=1e-5)
    # Nothing to compare (all slots padded) -> 0.
    zero = losses.dice_loss(logits, targets, np.zeros_like(weights)).numpy()
    assert zero == 0.0


def test_dice_per_mask_matches_numpy():
    logits, targets, weights, padding = mask_case()
    up, gt, w = np_mask_terms(logits, targets, weights, padding)
    p, g = sigmoid(up) * w, gt * w
    d = 2 * (p * g).sum((1, 2)) / ((p + g).sum((1, 2)) + 1e-7)  # [B, K]
    expected = (1 - d)[weights > 0].mean()
    got = losses.dice_loss(logits, targets, weights, padding,
                           mode='per_mask').numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # A perfect prediction gives 0 up to the sigmoid's saturation.
    perfect = np.where(targets > 0, 30.0, -30.0).astype(np.float32)
    got = losses.dice_loss(perfect, targets, weights, mode='per_mask').numpy()
    assert got < 1e-6
    with pytest.raises(ValueError, match='per_mask'):
        losses.dice_loss(logits, targets, weights, mode='mean')


def test_maskconver_losses_combines_components():
    rng = np.random.RandomState(1)
    logits, targets, weights, _ = mask_case()
    padding = np.zeros([2, 16, 16], np.float32)
    padding[:, :, 8:] = 1.0
    targets16 = np.repeat(np.repeat(targets, 2, 1), 2, 2)
    heat_logits = rng.randn(2, 2, 2, 4).astype(np.float32)
    heat = rng.rand(2, 2, 2, 4).astype(np.float32) * 0.5
    heat[0, 0, 0, 1] = 1.0
    labels = {'heatmaps': heat, 'num_instances': np.array([1, 0], np.int32),
              'masks': targets16, 'mask_weights': weights,
              'padding_mask': padding}
    out = losses.maskconver_losses(heat_logits, logits, labels,
                                   mask_weight=5.0, dice_weight=2.0)
    center_w = np.ones([2, 2, 2], np.float32)
    center_w[:, :, 1] = 0.0  # right half padded
    np.testing.assert_allclose(
        out['center_loss'], np_focal(heat_logits, heat, np.array([1, 0]), center_w),
        rtol=1e-5)
    np.testing.assert_allclose(
        out['mask_bce_loss'],
        losses.mask_bce_loss(logits, targets16, weights, padding), rtol=1e-6)
    np.testing.assert_allclose(
        out['total_loss'],
        out['center_loss'] + 5.0 * out['mask_bce_loss']
        + 2.0 * out['mask_dice_loss'], rtol=1e-6)
    assert set(out) == {'center_loss', 'mask_bce_loss', 'mask_dice_loss',
                        'total_loss'}
    # dice_weight defaults to mask_weight (the reference).
    out = losses.maskconver_losses(heat_logits, logits, labels, mask_weight=5.0)
    np.testing.assert_allclose(
        out['total_loss'], out['center_loss'] + 5.0 * (
            out['mask_bce_loss'] + out['mask_dice_loss']), rtol=1e-6)
    out3 = losses.maskconver_losses(heat_logits, logits, labels,
                                    mask_weight=5.0, center_weight=3.0)
    np.testing.assert_allclose(
        out3['total_loss'], 3.0 * out['center_loss'] + 5.0 * (
            out['mask_bce_loss'] + out['mask_dice_loss']), rtol=1e-6)
    # 0 is a weight, not "unset".
    assert losses.effective_dice_weight(5.0, 0.0) == 0.0
    assert losses.effective_dice_weight(5.0, None) == 5.0


def test_float16_inputs_give_float32_results():
    logits, targets, weights, padding = mask_case()
    rng = np.random.RandomState(2)
    heat_logits = rng.randn(2, 4, 4, 3)
    heat = rng.rand(2, 4, 4, 3)
    heat[0, 1, 1, 1] = 1.0
    num = np.array([1, 0], np.int32)
    # float32 references on the float16-representable values.
    f16 = [x.astype(np.float16) for x in (heat_logits, heat, logits)]
    heat_logits, heat, logits = [x.astype(np.float32) for x in f16]
    mask_f16 = [tf.constant(x, tf.float16)
                for x in (f16[2], targets, weights, padding)]
    pairs = [
        (losses.focal_loss(heat_logits, heat, num),
         losses.focal_loss(f16[0], f16[1], num)),
        (losses.mask_bce_loss(logits, targets, weights, padding),
         losses.mask_bce_loss(*mask_f16)),
        (losses.dice_loss(logits, targets, weights, padding),
         losses.dice_loss(*mask_f16)),
    ]
    for ref, half in pairs:
        assert half.dtype == tf.float32
        np.testing.assert_allclose(half.numpy(), ref.numpy(), rtol=1e-5)


def test_center_class_loss_ranks_channels_at_centers():
    # Two center cells: (0, 0) with one positive (channel 1) and (1, 1) with
    # two (a ring and its disc: channels 1 and 2); cell (0, 1) is a Gaussian
    # tail (0.6) and is not a center. Logits l: cell (0, 0) [0, 2, 1],
    # cell (1, 1) [1, 0, 0].
    logits = np.zeros([1, 2, 2, 3], np.float32)
    logits[0, 0, 0] = [0.0, 2.0, 1.0]
    logits[0, 1, 1] = [1.0, 0.0, 0.0]
    logits[0, 0, 1] = [5.0, -5.0, 3.0]
    targets = np.zeros([1, 2, 2, 3], np.float32)
    targets[0, 0, 0, 1] = 1.0
    targets[0, 1, 1, 1:] = 1.0
    targets[0, 0, 1, 1] = 0.6
    lse = lambda v: np.log(np.sum(np.exp(v)))  # noqa: E731
    first = lse([0.0, 2.0, 1.0]) - 2.0
    second = lse([1.0, 0.0, 0.0]) - lse([0.0, 0.0])
    np.testing.assert_allclose(
        losses.center_class_loss(logits, targets), (first + second) / 2,
        rtol=1e-6)
    # Weight 0 on cell (1, 1) (padding): only the first center counts.
    weights = np.ones([1, 2, 2], np.float32)
    weights[0, 1, 1] = 0.0
    np.testing.assert_allclose(
        losses.center_class_loss(logits, targets, weights), first, rtol=1e-6)
    # The right class far above the others: ~0; no centers at all: 0.
    logits[0, 0, 0] = [0.0, 30.0, 0.0]
    logits[0, 1, 1] = [0.0, 30.0, 30.0]
    assert float(losses.center_class_loss(logits, targets)) < 1e-6
    assert float(losses.center_class_loss(logits, targets * 0.5)) == 0.0
    # In the total with class_weight; absent (and not computed) at 0.
    labels = {'heatmaps': targets, 'num_instances': np.array([2], np.int32),
              'masks': np.zeros([1, 4, 4, 1], np.float32),
              'mask_weights': np.ones([1, 1], np.float32),
              'padding_mask': np.zeros([1, 4, 4], np.float32)}
    mask_logits = np.zeros([1, 4, 4, 1], np.float32)
    logits[0, 0, 0] = [0.0, 2.0, 1.0]
    out = losses.maskconver_losses(logits, mask_logits, labels,
                                   class_weight=0.5)
    base = losses.maskconver_losses(logits, mask_logits, labels)
    assert 'center_class_loss' not in base
    np.testing.assert_allclose(out['center_class_loss'],
                               (first + lse([0.0, 30.0, 30.0]) - lse(
                                   [30.0, 30.0])) / 2, rtol=1e-5)
    np.testing.assert_allclose(
        out['total_loss'], base['total_loss'] + 0.5 * out['center_class_loss'],
        rtol=1e-6)
