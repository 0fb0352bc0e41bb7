"""MaskEmbeddingGenerator: center + class embeddings -> MLP -> mask logits."""

import tensorflow as tf
import tf_keras
from official.modeling import tf_utils

COMBINATIONS = ('product', 'sum')
# Ops under this name scope stay float in int8 exports (the TFLite
# conversion keeps them out of quantisation): the offset added to the float
# mask-logit matmul, which int8 would requantise (losing the logits' float
# precision) with a slow broadcast ADD.
FLOAT_SCOPE = 'maskconver_float'


def gather_slots(features, center_indices):
    """Features at the slots: float [B, h, w, C] with int32 [B, K, 2] (y, x),
    or [B, N, C] with flat int32 [B, K] -> [B, K, C]."""
    if features.shape.rank == 4:
        return tf.gather_nd(features, center_indices, batch_dims=1)
    return tf.gather(features, center_indices, batch_dims=1)


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskEmbeddingGenerator(tf_keras.layers.Layer):
    """Turns K (center, class) proposals into K mask logit maps.

    For every slot k: e = center_embeddings at the slot's location;
    c = class_embedding[max(class, 0)]; m = MLP(e * c) ('product', the
    reference single-scale model) or MLP(e + c) ('sum', the paper and the
    multi-scale model); without `use_class_embedding`, m = MLP(e).
    MLP = Dense(mlp_hidden_size) -> LayerNorm(1e-6) -> activation ->
    Dense(embedding_size). Mask logits = <m, per_pixel_embeddings[y, x]>.

    The class embedding is what separates two proposals of different classes
    at the same cell. Where centers come from (ground truth or proposals) is
    the model's business; sigmoid, resizing and merging are post-processing.

    Call args:
      center_embeddings: float [B, h, w, E] with center_indices int32
        [B, K, 2] as (y, x) on that grid; or float [B, N, E] (levels
        flattened and concatenated) with center_indices int32 [B, K] flat.
      per_pixel_embeddings: float [B, H, W, E].
      center_indices: see above.
      classes: int32 [B, K] class channels; -1 (padding) reads row 0.
    Returns: mask logits float32 [B, H, W, K].
    L2 on both Dense kernels and the embedding table.
    """

    def __init__(self,
                 num_classes: int,
                 embedding_size: int = 256,
                 mlp_hidden_size: int = 0,
                 combination: str = 'product',
                 use_class_embedding: bool = True,
                 activation: str = 'relu',
                 kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        if combination not in COMBINATIONS:
            raise ValueError(f'MaskEmbeddingGenerator: combination must be one '
                             f'of {COMBINATIONS}, received {combination!r}')
        self._num_classes = num_classes
        self._embedding_size = embedding_size
        self._mlp_hidden_size = mlp_hidden_size
        self._combination = combination
        self._use_class_embedding = use_class_embedding
        self._activation = activation
        self._kernel_regularizer = tf_keras.regularizers.get(
            kernel_regularizer)

        self._class_embedding = None
        if use_class_embedding:
            self._class_embedding = tf_keras.layers.Embedding(
                num_classes, embedding_size,
                embeddings_regularizer=self._kernel_regularizer,
                name='class_embedding')
        self._dense_hidden = tf_keras.layers.Dense(
            mlp_hidden_size or embedding_size,
            kernel_regularizer=self._kernel_regularizer, name='mlp_hidden')
        self._norm = tf_keras.layers.LayerNormalization(epsilon=1e-6,
                                                        name='mlp_norm')
        self._activation_fn = tf_utils.get_activation(activation)
        self._dense_output = tf_keras.layers.Dense(
            embedding_size, kernel_regularizer=self._kernel_regularizer,
            name='mlp_output')

    def mask_embeddings(self, center_embeddings, center_indices, classes):
        """Final per-slot embeddings, float [B, K, E] (compute dtype)."""
        return self.mlp(gather_slots(center_embeddings, center_indices),
                        classes)

    def mlp(self, x, classes):
        """Slot features float [B, K, E] + classes [B, K] -> final slot
        embeddings [B, K, E] (class embedding, MLP)."""
        if self._class_embedding is not None:
            c = tf.cast(self._class_embedding(tf.maximum(classes, 0)), x.dtype)
            x = x * c if self._combination == 'product' else x + c
        x = self._dense_hidden(x)
        x = self._activation_fn(self._norm(x))
        return self._dense_output(x)

    def call(self, center_embeddings, per_pixel_embeddings, center_indices,
             classes):
        m = self.mask_embeddings(center_embeddings, center_indices, classes)
        logits = tf.einsum('bkc,bhwc->bhwk', m,
                           tf.cast(per_pixel_embeddings, m.dtype))
        return tf.cast(logits, tf.float32)

    @staticmethod
    def logits_through_linear(mask_embeddings, features, kernel, bias=None):
        """Mask logits against per-pixel embeddings features @ kernel + bias,
        without forming them: <m, W f + b> = <W^T m, f> + <m, b>.

        Equal to `call`'s dot product with the 1x1-conv embeddings up to
        float rounding, at K x E x C multiply-adds instead of h x w x E x C.

        Args:
          mask_embeddings: float [B, K, E].
          features: float [B, h, w, C], the input of the 1x1 conv.
          kernel: [1, 1, C, E] (or [C, E]) conv kernel; bias: optional [E].

        Returns:
          float32 [B, h, w, K].
        """
        m = mask_embeddings
        kernel = tf.cast(tf.reshape(kernel, [-1, kernel.shape[-1]]), m.dtype)
        m_in = tf.einsum('bke,ce->bkc', m, kernel)
        dynamic = tf.shape(features)
        b, h, w, c = (d if d is not None else dynamic[i]
                      for i, d in enumerate(features.shape))
        pixels = tf.reshape(tf.cast(features, m.dtype), [b, h * w, c])
        # [B, h * w, K] straight from the matmul: no transpose.
        logits = tf.matmul(pixels, m_in, transpose_b=True)
        if bias is not None:
            offset = tf.einsum('bke,e->bk', m, tf.cast(bias, m.dtype))
            with tf.name_scope(FLOAT_SCOPE):
                logits += offset[:, tf.newaxis, :]
        logits = tf.reshape(logits, [b, h, w, m.shape[1] or -1])
        return tf.cast(logits, tf.float32)

    def get_config(self):
        config = super().get_config()
        config.update({
            'num_classes': self._num_classes,
            'embedding_size': self._embedding_size,
            'mlp_hidden_size': self._mlp_hidden_size,
            'combination': self._combination,
            'use_class_embedding': self._use_class_embedding,
            'activation': self._activation,
            'kernel_regularizer': tf_keras.regularizers.serialize(
                self._kernel_regularizer),
        })
        return config
