"""The one inference preprocessing shared by eval, serving, export and predict.

Normalise with ImageNet mean/std, resize keeping the aspect ratio so the image
fits the model input, pad bottom/right with zeros. Training adds jitter and
flips on top of the same Model Garden ops (`dataloaders/maskconver_input.py`).
A `.tflite` exported with input type 'tflite' expects the output of
`preprocess_image` (the metadata records MEAN_RGB / STDDEV_RGB and the size).
"""

from typing import Optional, Sequence, Tuple

import tensorflow as tf

from official.vision.ops import preprocess_ops

MEAN_RGB = preprocess_ops.MEAN_RGB
STDDEV_RGB = preprocess_ops.STDDEV_RGB


def preprocess_image(image: tf.Tensor, output_size: Sequence[int],
                     padded_size: Optional[Sequence[int]] = None
                     ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Normalises, resizes (aspect kept) and pads one image.

    Args:
      image: uint8 (or float in [0, 255]) [H, W, 3], RGB.
      output_size: (height, width) the image is resized to fit.
      padded_size: (height, width) after zero padding; None = output_size.

    Returns:
      image: float32 [*padded_size, 3], normalised, zero-padded bottom/right.
      image_info: float32 [4, 2] = [[H, W], [desired h, w], [scale y, x],
        [offset y, x]] (Model Garden's convention: row 1 is the model input
        size, the scaled image is round([H, W] * scale); offset is 0 here).
    """
    image = tf.convert_to_tensor(image)
    if image.dtype.is_integer:
        image = preprocess_ops.normalize_image(image)
    else:
        image = preprocess_ops.normalize_image(
            tf.cast(image, tf.float32), offset=MEAN_RGB, scale=STDDEV_RGB)
    padded_size = list(padded_size or output_size)
    image, image_info = preprocess_ops.resize_and_crop_image(
        image, output_size, padded_size=padded_size,
        aug_scale_min=1.0, aug_scale_max=1.0)
    image.set_shape([padded_size[0], padded_size[1], 3])
    return image, image_info


def preprocess_batch(images: tf.Tensor, output_size: Sequence[int]
                     ) -> Tuple[tf.Tensor, tf.Tensor]:
    """`preprocess_image` over a batch of same-sized images.

    Args:
      images: uint8 [B, H, W, 3].
      output_size: (height, width).

    Returns:
      float32 [B, height, width, 3] and image_info float32 [B, 4, 2].
    """
    # Every image has the same size here, so one vectorised map is exact.
    return tf.map_fn(
        lambda im: preprocess_image(im, output_size), images,
        fn_output_signature=(
            tf.TensorSpec([output_size[0], output_size[1], 3], tf.float32),
            tf.TensorSpec([4, 2], tf.float32)))
