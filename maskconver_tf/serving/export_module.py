"""SavedModel export module of MaskConver (Model Garden `ExportModule`).

Input types (Model Garden's names, signature `serving_default`, input
`inputs`):
- image_tensor: uint8 [B, None, None, 3];
- image_bytes: string [B] (JPEG / PNG; images of one batch may differ in
  size: each is decoded and preprocessed alone);
- tf_example: string [B] serialized tf.Examples with `image/encoded`;
- tflite: float32 [B, H, W, 3] already preprocessed by
  `maskconver_tf.ops.preprocess.preprocess_image` (normalised, resized,
  padded), so the graph holds no float preprocessing to quantise.

Outputs (dict keys, dtypes fixed in every mode):
- category_mask int32 [B, Hc, Wc]: dataset category ids, 0 = void;
- instance_mask int32 [B, Hc, Wc]: slot + 1 of thing segments, 0 otherwise;
- classes int32 [B, K]: dataset ids of kept segments, 0 = rejected slot;
- scores float32 [B, K];
- image_info float32 [B, 4, 2] (not for tflite);
- class_heatmaps float32 [B, h, w, C] and mask_logits float32 [B, h, w, K]
  when `include_logits`.
For image inputs the canvas (Hc, Wc) is the model's panoptic output size in
original-image pixels, top-left aligned (crop [:H, :W] for an H x W image).
For tflite it is the model input (H, W): the caller crops the scaled region
given by its own image_info and resizes back (nearest).
"""

import contextlib
import copy
import json
from typing import Dict, List, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras
from official.vision.serving import export_base

from maskconver_tf.configs import maskconver as maskconver_cfg
from maskconver_tf.modeling import factory
from maskconver_tf.ops import multiscale_targets
from maskconver_tf.serving import graph_rewrites
from maskconver_tf.ops import preprocess

INPUT_TYPES = ('image_tensor', 'image_bytes', 'tf_example', 'tflite')
# The output contract: name -> dtype, in this order everywhere.
OUTPUT_ORDER = ('category_mask', 'instance_mask', 'classes', 'scores')
OUTPUT_DTYPES = {'category_mask': tf.int32, 'instance_mask': tf.int32,
                 'classes': tf.int32, 'scores': tf.float32,
                 'image_info': tf.float32, 'class_heatmaps': tf.float32,
                 'mask_logits': tf.float32}
LOGIT_OUTPUTS = ('class_heatmaps', 'mask_logits')
SIDECAR_NAME = 'maskconver_export.json'
# Name scope of the proposal extraction and panoptic merge in the exported
# graph: the TFLite int8 modes keep the ops under it in float.
POSTPROCESS_SCOPE = 'maskconver_postprocess'


def input_stride(model_config) -> int:
    """The factor every input side must be a multiple of (coarsest level)."""
    level = int(model_config.max_level)
    decoder = model_config.decoder
    if decoder.type == 'aspp':
        level = max(level, int(decoder.aspp.level))
    return 2 ** level


def validate_input_size(model_config, input_image_size: Sequence[int]
                        ) -> List[int]:
    """Checks that the model can take an input of this (height, width).

    Raises:
      ValueError naming the constraint (two positive sides, each a multiple
      of the coarsest feature stride, else the decoder's upsampled features
      do not line up with the backbone's and the export fails or misaligns).
    """
    size = [int(v) for v in input_image_size]
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f'input_image_size {input_image_size!r}: expected '
                         'two positive ints "height,width"')
    stride = input_stride(model_config)
    bad = [v for v in size if v % stride]
    if bad:
        raise ValueError(
            f'input_image_size {size}: every side must be a multiple of '
            f'{stride} (2^level of the coarsest feature map of this model); '
            f'try {[max(stride, round(v / stride) * stride) for v in size]}')
    return size


def export_model_config(model_config, input_image_size: Sequence[int],
                        input_type: str):
    """The model config the export builds: input size set to the export's.

    For `tflite` the panoptic canvas is the model input (no image_info in a
    TFLite graph), so `panoptic_generator.output_size` becomes (H, W).
    """
    config = copy.deepcopy(model_config)
    h, w = validate_input_size(config, input_image_size)
    config.input_size = [h, w, 3]
    if input_type == 'tflite':
        config.panoptic_generator.output_size = [h, w]
    return config


class MaskConverModule(export_base.ExportModule):
    """Export module: preprocessing + (MultiScale)MaskConverModel +
    post-processing."""

    def __init__(self, params, *, batch_size: Optional[int],
                 input_image_size: Sequence[int],
                 input_type: str = 'image_tensor', num_channels: int = 3,
                 model: Optional[tf_keras.Model] = None,
                 input_name: Optional[str] = None,
                 include_logits: bool = False, merge_stride: int = 1,
                 split_depthwise: Optional[bool] = None,
                 sparse_heads: Optional[bool] = None, descriptor=None):
        """Args:
          params: ExperimentConfig with a `MaskConverTask` task config.
          batch_size: int or None (None only for non-tflite inputs).
          input_image_size: (height, width) of the model input.
          input_type: one of INPUT_TYPES.
          num_channels: must be 3.
          model: optional built model (else built from params; its input size
            and, for tflite, its panoptic canvas follow the export).
          input_name: signature input name (default `inputs`).
          include_logits: also output class_heatmaps and mask_logits.
          merge_stride: panoptic merge on a canvas this many times coarser
            (see `graph_rewrites.merge_at_stride`); 1 = the model's own merge.
          split_depthwise: trace depthwise kernels of more than 25 taps as
            sums of tiles of <= 25 taps (`graph_rewrites.split_large_depthwise`); None = on
            for tflite.
          sparse_heads: run the center-embedding head's last depthwise conv
            and pointwise tail at the K proposals only and fold the
            mask-feature classifier into the slot embeddings
            (`graph_rewrites.sparse_heads`, the same function); None = on
            when the model supports it.
          descriptor: DatasetDescriptor; default from `params.task`.
        """
        if input_type not in INPUT_TYPES:
            raise ValueError(f'input_type {input_type!r}: expected one of '
                             f'{INPUT_TYPES}')
        if num_channels != 3:
            raise ValueError('MaskConver takes RGB images (num_channels 3)')
        if input_type == 'tflite' and batch_size is None:
            raise ValueError('input_type tflite needs a fixed batch size '
                             '(TFLite graphs are static); use --batch_size 1')
        if merge_stride < 1:
            raise ValueError(f'merge_stride {merge_stride} must be >= 1')
        if descriptor is None:
            from maskconver_tf.tasks.maskconver import descriptor_for
            descriptor = descriptor_for(params.task)
        self.descriptor = descriptor
        self._model_config = export_model_config(
            params.task.model, input_image_size, input_type)
        self._include_logits = bool(include_logits)
        self._merge_stride = int(merge_stride)
        self._split_depthwise = (input_type == 'tflite' if split_depthwise
                                 is None else bool(split_depthwise))
        size = list(self._model_config.input_size[:2])
        super().__init__(params, batch_size=batch_size,
                         input_image_size=size, input_type=input_type,
                         num_channels=num_channels, model=model,
                         input_name=input_name)
        supported = graph_rewrites.supports_sparse_heads(self.model)
        if sparse_heads and not supported:
            raise ValueError('sparse_heads needs a single-scale model whose '
                             'center and mask-feature heads end in 1x1 '
                             'classifiers without upsampling')
        self._sparse_heads = (supported if sparse_heads is None
                              else bool(sparse_heads))

    # Model ----------------------------------------------------------------
    def _build_model(self):
        input_specs = tf_keras.layers.InputSpec(
            shape=[self._batch_size] + list(self._model_config.input_size))
        return factory.build_maskconver_model(
            input_specs=input_specs, model_config=self._model_config,
            descriptor=self.descriptor)

    @property
    def model_config(self):
        return self._model_config

    def get_inference_signatures(self, function_keys):
        """Model Garden's signatures, traced with split depthwise if set."""
        scope = (graph_rewrites.split_large_depthwise(self.model) if self._split_depthwise
                 else contextlib.nullcontext())
        with scope:
            return super().get_inference_signatures(function_keys)

    # Preprocessing --------------------------------------------------------
    def _preprocess_one(self, image: tf.Tensor):
        """uint8 [H, W, 3] -> (float32 [h, w, 3], image_info [4, 2])."""
        return preprocess.preprocess_image(image, self._input_image_size)

    def _map_preprocess(self, fn, elems):
        h, w = self._input_image_size
        return tf.map_fn(
            fn, elems, parallel_iterations=32,
            fn_output_signature=(tf.TensorSpec([h, w, 3], tf.float32),
                                 tf.TensorSpec([4, 2], tf.float32)))

    # Inference ------------------------------------------------------------
    def _forward(self, images: tf.Tensor,
                 image_info: Optional[tf.Tensor]) -> Dict[str, tf.Tensor]:
        """images float32 [B, h, w, 3] preprocessed -> output dict."""
        model = self.model

        def propose(heatmaps):
            with tf.name_scope(POSTPROCESS_SCOPE):
                return model.propose(heatmaps)

        if image_info is not None and not self._sparse_heads:
            return self._result(model(images, image_info=image_info,
                                      training=False), image_info)
        if self._sparse_heads:
            outputs = graph_rewrites.sparse_heads(model, images, propose)
        else:
            heatmaps, centers, pixels = model.dense_outputs(images,
                                                            training=False)
            outputs = {'class_heatmaps': heatmaps, **propose(heatmaps)}
            outputs['mask_logits'] = model.mask_embedding_generator(
                centers, pixels, outputs['center_indices'],
                outputs['classes'])
        if image_info is not None:
            outputs.update(model.panoptic_merger(
                outputs['mask_logits'], outputs['classes'],
                outputs['scores'], image_info=image_info))
        else:
            # Canvas = model input whatever the model's own merger says.
            with tf.name_scope(POSTPROCESS_SCOPE):
                outputs.update(graph_rewrites.merge_at_stride(
                    model, outputs['mask_logits'], outputs['classes'],
                    outputs['scores'], self._input_image_size,
                    self._merge_stride))
        return self._result(outputs, image_info)

    def _result(self, outputs, image_info):
        """The contract outputs (names, dtypes, order) of `outputs`."""
        names = list(OUTPUT_ORDER)
        if self._include_logits:
            names += list(LOGIT_OUTPUTS)
        result = {k: tf.cast(outputs[k], OUTPUT_DTYPES[k]) for k in names}
        if image_info is not None:
            result['image_info'] = tf.cast(image_info, tf.float32)
        return result

    def serve(self, images: tf.Tensor) -> Mapping[str, tf.Tensor]:
        """images: uint8 [B, H, W, 3] (or float32 preprocessed for tflite)."""
        if self._input_type == 'tflite':
            return self._forward(tf.cast(images, tf.float32), None)
        with tf.device('cpu:0'):
            images, image_info = self._map_preprocess(self._preprocess_one,
                                                      images)
        return self._forward(images, image_info)

    def _decode_and_preprocess(self, decode_fn, inputs: tf.Tensor):
        # Each image is decoded and preprocessed alone, so one batch may mix
        # sizes (Model Garden's base stacks decoded images, which cannot).
        with tf.device('cpu:0'):
            images, image_info = self._map_preprocess(
                lambda x: self._preprocess_one(decode_fn(x)), inputs)
        return self._forward(images, image_info)

    @tf.function
    def inference_from_image_bytes(self, inputs: tf.Tensor):
        return self._decode_and_preprocess(self._decode_image, inputs)

    @tf.function
    def inference_from_tf_example(self, inputs: tf.Tensor):
        return self._decode_and_preprocess(self._decode_tf_example, inputs)

    # Description ----------------------------------------------------------
    def output_spec(self) -> Dict[str, dict]:
        """name -> {dtype, shape} of the serving outputs (None = dynamic)."""
        b = self._batch_size
        cfg = self._model_config
        k = int(cfg.num_instances)
        if self._input_type == 'tflite':
            hc, wc = self._input_image_size
        else:
            hc, wc = (list(cfg.panoptic_generator.output_size)
                      or self._input_image_size)
        height, width = self._input_image_size
        c = int(cfg.num_classes)
        if isinstance(cfg, maskconver_cfg.MultiScaleMaskConverModel):
            heatmaps = [b, multiscale_targets.num_cells(
                height, width, cfg.min_level, cfg.max_level), c]
        else:
            stride = 2 ** int(cfg.level)
            heatmaps = [b, height // stride, width // stride, c]
        head = cfg.mask_feature_head
        mask_level = (head.level if head.feature_fusion in (None,
                                                            'pyramid_fusion')
                      else min(head.level, head.low_level))
        stride = 2 ** mask_level // int(head.upsample_factor)
        shapes = {'category_mask': [b, hc, wc], 'instance_mask': [b, hc, wc],
                  'classes': [b, k], 'scores': [b, k],
                  'image_info': [b, 4, 2], 'class_heatmaps': heatmaps,
                  'mask_logits': [b, height // stride, width // stride, k]}
        names = list(OUTPUT_ORDER)
        if self._include_logits:
            names += list(LOGIT_OUTPUTS)
        if self._input_type != 'tflite':
            names.append('image_info')
        return {n: {'dtype': OUTPUT_DTYPES[n].name, 'shape': shapes[n]}
                for n in names}

    def metadata(self, experiment: Optional[str] = None) -> dict:
        """The sidecar / TFLite metadata dict (JSON-serialisable)."""
        return build_metadata(
            experiment=experiment, input_image_size=self._input_image_size,
            input_type=self._input_type, batch_size=self._batch_size,
            descriptor=self.descriptor, model_config=self._model_config,
            outputs=self.output_spec(), merge_stride=self._merge_stride,
            split_depthwise=self._split_depthwise,
            sparse_heads=self._sparse_heads)


def build_metadata(*, experiment, input_image_size, input_type, batch_size,
                   descriptor, model_config, outputs, merge_stride=1,
                   split_depthwise=False, sparse_heads=False) -> dict:
    """Everything a consumer needs besides the graph: labels, normalisation."""
    h, w = (int(v) for v in input_image_size)
    return {
        'format': 'maskconver_export/1',
        'experiment': experiment,
        'input': {
            'name': 'inputs',
            'type': input_type,
            'batch_size': batch_size,
            'height': h,
            'width': w,
            'dtype': 'float32' if input_type == 'tflite' else (
                'uint8' if input_type == 'image_tensor' else 'string'),
            'preprocessing': (
                'maskconver_tf.ops.preprocess.preprocess_image: RGB, '
                '(x - MEAN_RGB) / STDDEV_RGB on 0-255 values, resize keeping '
                'the aspect ratio to fit (height, width), zero-pad '
                'bottom/right' + (' (done by the caller)'
                                  if input_type == 'tflite' else
                                  ' (inside the graph)')),
            'mean_rgb': [float(v) for v in preprocess.MEAN_RGB],
            'stddev_rgb': [float(v) for v in preprocess.STDDEV_RGB],
        },
        'outputs': outputs,
        'output_order': list(outputs),
        'num_instances': int(model_config.num_instances),
        'num_classes': int(model_config.num_classes),
        'label_mode': descriptor.label_mode,
        'merge_stride': int(merge_stride),
        'split_depthwise': bool(split_depthwise),
        'sparse_heads': bool(sparse_heads),
        'post_processing': {
            k: v for k, v in model_config.panoptic_generator.as_dict().items()},
        'labels': descriptor.to_coco_categories(),
    }


def load_params(experiment: str, config_files=None, params_override=''):
    """Experiment config with YAML files, then overrides (Model Garden order).

    Import `maskconver_tf.registry_imports` first so experiments exist.
    """
    from official.core import exp_factory
    from official.modeling import hyperparams
    params = exp_factory.get_exp_config(experiment)
    for path in config_files or []:
        params = hyperparams.override_params_dict(params, path,
                                                  is_strict=True)
    if params_override:
        params = hyperparams.override_params_dict(params, params_override,
                                                  is_strict=True)
    params.validate()
    return params


def write_sidecar(metadata: dict, path: str):
    """Writes the metadata dict as indented JSON."""
    with tf.io.gfile.GFile(path, 'w') as f:
        f.write(json.dumps(metadata, indent=1, sort_keys=False))



def export_saved_model(params, export_dir: str, *,
                       checkpoint_path: Optional[str] = None,
                       batch_size: Optional[int] = 1,
                       input_type: str = 'image_tensor',
                       input_image_size: Optional[Sequence[int]] = None,
                       include_logits: bool = False, merge_stride: int = 1,
                       split_depthwise: Optional[bool] = None,
                       sparse_heads: Optional[bool] = None,
                       experiment: Optional[str] = None,
                       model: Optional[tf_keras.Model] = None,
                       log_model_flops_and_params: bool = False
                       ) -> MaskConverModule:
    """Exports with Model Garden's `export_inference_graph` + our sidecar.

    Writes export_dir/saved_model, export_dir/checkpoint,
    export_dir/params.yaml and export_dir/maskconver_export.json.

    Args:
      params: ExperimentConfig (MaskConver task).
      export_dir: output directory.
      checkpoint_path: trained checkpoint file or directory (None = the
        freshly initialised weights, for tests and latency runs).
      batch_size, input_type, input_image_size, include_logits,
      merge_stride, split_depthwise, sparse_heads: see `MaskConverModule`;
        input_image_size defaults to the model's input size.
      experiment: experiment name recorded in the sidecar.
      model: optional already-built model to export (weights as they are
        unless checkpoint_path is given).

    Returns:
      The export module (its `metadata()` is what the sidecar holds).
    """
    from official.vision.serving import export_saved_model_lib
    from tf_keras.src.saving.legacy.saved_model import (
        utils as saved_model_utils)
    if input_image_size is None:
        input_image_size = list(params.task.model.input_size[:2])
    module = MaskConverModule(
        params, batch_size=batch_size, input_image_size=input_image_size,
        input_type=input_type, model=model, include_logits=include_logits,
        merge_stride=merge_stride, split_depthwise=split_depthwise,
        sparse_heads=sparse_heads)
    params = copy.deepcopy(params)
    params.task.model = module.model_config
    # Keras would also trace and save every layer's call (about 20 s for the
    # mobile model); the serving signatures are all a consumer loads.
    with saved_model_utils.keras_option_scope(save_traces=False):
        export_saved_model_lib.export_inference_graph(
            input_type=input_type, batch_size=batch_size,
            input_image_size=list(module.model_config.input_size[:2]),
            params=params, checkpoint_path=checkpoint_path,
            export_dir=export_dir, export_module=module,
            export_checkpoint_subdir='checkpoint',
            export_saved_model_subdir='saved_model',
            log_model_flops_and_params=log_model_flops_and_params)
    write_sidecar(module.metadata(experiment),
                  f'{export_dir.rstrip("/")}/{SIDECAR_NAME}')
    return module
