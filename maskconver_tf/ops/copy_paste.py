"""Copy-paste augmentation between two samples of the same size.

Our implementation of the reference's panoptic copy-paste (section 3.4): every
thing instance and every stuff class of a second image is pasted onto the
first with probability p each. Both samples must already be flipped and
resized / cropped / padded to the same size by the caller, each with its own
randomness, so this works the same with flipping on or off (the reference
only works with flip on).
"""

from typing import Optional, Sequence

import tensorflow as tf


def _per_value_keep(values, probability, seed):
    """bool [n]: an independent Bernoulli(probability) draw per value.

    Args:
      values: int32 [n] (any ids; equal ids get the same draw).
      probability: float scalar.
      seed: None (stateful draw) or a shape [2] int seed (stateless).

    Returns:
      keep: bool [n].
    """
    unique, index = tf.unique(values)
    shape = tf.shape(unique)
    if seed is None:
        draws = tf.random.uniform(shape)
    else:
        draws = tf.random.stateless_uniform(shape, seed=seed)
    return tf.gather(draws < probability, index)


def copy_paste(image, category, instance, image2, category2, instance2,
               is_stuff: Sequence[bool], probability: float = 0.5,
               seed: Optional[tf.Tensor] = None):
    """Pastes things and stuff of sample 2 onto sample 1.

    Thing instances of sample 2 (instance2 > 0) are pasted with probability
    p each: image and category pixels are replaced and the instance id
    becomes id2 + max(instance) + 1, so it never collides with an id of
    sample 1. Stuff classes of sample 2 (pixels whose category c has
    is_stuff[c] and that are not thing pixels) are pasted with probability p
    per class: image and category replaced, instance id cleared to 0. Void
    (category 0 / not stuff) and padded (category < 0) pixels of sample 2
    are never pasted. Instances of sample 1 that end up fully covered simply
    disappear from its maps.

    Args:
      image, image2: [H, W, 3] images of one dtype (uint8 or float).
      category, category2: int32 [H, W] category values (dataset ids or
        model channels: any values that index `is_stuff`; < 0 = padding).
      instance, instance2: int32 [H, W] instance ids (0 none).
      is_stuff: bool [C], indexed by category value.
      probability: float, paste probability per thing instance and per
        stuff class (0 = identity, 1 = paste all).
      seed: optional int32 [2] seed for stateless draws (tests); None draws
        statefully.

    Returns:
      (image [H, W, 3], category int32 [H, W], instance int32 [H, W]), the
      static shapes of the inputs.
    """
    category = tf.cast(category, tf.int32)
    instance = tf.cast(instance, tf.int32)
    category2 = tf.cast(category2, tf.int32)
    instance2 = tf.cast(instance2, tf.int32)
    is_stuff = tf.convert_to_tensor(is_stuff, tf.bool)
    num_values = tf.shape(is_stuff)[0]
    thing_seed = stuff_seed = None
    if seed is not None:
        seeds = tf.random.experimental.stateless_split(seed, 2)
        thing_seed, stuff_seed = seeds[0], seeds[1]

    flat_instance2 = tf.reshape(instance2, [-1])
    keep_thing = tf.reshape(
        _per_value_keep(flat_instance2, probability, thing_seed),
        tf.shape(instance2))
    paste_thing = tf.logical_and(instance2 > 0, keep_thing)

    in_range = tf.logical_and(category2 >= 0, category2 < num_values)
    stuff2 = tf.logical_and(
        in_range, tf.gather(is_stuff, tf.clip_by_value(category2, 0,
                                                       num_values - 1)))
    stuff2 = tf.logical_and(stuff2, instance2 <= 0)
    keep_stuff = tf.reshape(
        _per_value_keep(tf.reshape(category2, [-1]), probability, stuff_seed),
        tf.shape(category2))
    paste_stuff = tf.logical_and(stuff2, keep_stuff)

    paste = tf.logical_or(paste_thing, paste_stuff)
    offset = tf.reduce_max(tf.concat([[0], tf.reshape(instance, [-1])], 0)) + 1
    new_image = tf.where(paste[..., tf.newaxis], tf.cast(image2, image.dtype),
                         image)
    new_category = tf.where(paste, category2, category)
    new_instance = tf.where(paste_thing, instance2 + offset,
                            tf.where(paste_stuff, 0, instance))
    return (tf.ensure_shape(new_image, image.shape),
            tf.ensure_shape(new_category, category.shape),
            tf.ensure_shape(new_instance, instance.shape))
