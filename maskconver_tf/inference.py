"""One inference wrapper over a checkpoint, a SavedModel or a `.tflite`.

    predictor = load_predictor(path)        # detects the backend
    out = predictor.predict(image)          # image: uint8 [H, W, 3] RGB
    out['category_mask']  int32 [H, W]  dataset category ids, 0 = void
    out['instance_mask']  int32 [H, W]  slot + 1 on thing segments, else 0
    out['classes']        int32 [K]     dataset ids of kept slots, 0 = none
    out['scores']         float32 [K]   scores of kept slots, 0 = none
    predictor.descriptor, predictor.input_size (h, w), predictor.backend

Every backend preprocesses with `ops.preprocess.preprocess_image` (in the
graph for the SavedModel, here for the others) and returns masks at the
ORIGINAL image size:
- checkpoint: the Keras model's dense outputs, then the panoptic merge run
  on an (H, W) canvas with the image's `image_info` (so any image size works,
  whatever the model's configured panoptic canvas is);
- SavedModel (`export_dir/saved_model`, signature `serving_default`): its
  canvas is in original-image pixels, top-left aligned: crop [:H, :W];
- TFLite: masks come on the model-input grid; the scaled image region
  round([H, W] * scale) is cropped and resized back with nearest neighbour.

Configs for checkpoints follow Model Garden's order: experiment defaults ->
the model_dir's params.yaml (written by the trainer) -> --config_file ->
--params_override. Labels for exports come from the sidecar JSON the export
writes (`maskconver_export.json` next to `saved_model/`, `<model>.json`
next to a `.tflite`).
"""

import glob
import inspect
import json
import os
from typing import Optional, Sequence, Union

from absl import logging
import numpy as np
from PIL import Image

BACKENDS = ('checkpoint', 'saved_model', 'tflite')
SAVED_MODEL_SIDECAR = 'maskconver_export.json'
OUTPUT_NAMES = ('category_mask', 'instance_mask', 'classes', 'scores')


class InferenceError(ValueError):
    """Bad model path, config or input; the message is one line for the CLI."""


# Images -------------------------------------------------------------------
def load_image(path) -> np.ndarray:
    """Reads an image file as uint8 [H, W, 3] RGB.

    Grayscale, palette, RGBA, CMYK, 16-bit ... are converted to RGB by
    `data.coco_panoptic.read_image` (which also fully decodes the file, so a
    truncated file fails here rather than later).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not a decodable image.
    """
    import io
    from maskconver_tf.data import coco_panoptic
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such file')
    encoded, _, _, _, _ = coco_panoptic.read_image(path)
    with Image.open(io.BytesIO(encoded)) as img:
        # read_image returned RGB JPEG / PNG bytes; convert() is a no-op
        # then and guards against e.g. a PNG with an RGB palette.
        return np.asarray(img.convert('RGB'), dtype=np.uint8)


def check_image(image) -> np.ndarray:
    """Validates a predictor input: uint8 [H, W, 3], H, W >= 1."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise InferenceError(f'expected an RGB image uint8 [H, W, 3], got '
                             f'shape {list(image.shape)}')
    if image.dtype != np.uint8:
        raise InferenceError(f'expected an RGB image uint8 [H, W, 3], got '
                             f'dtype {image.dtype}')
    return image


def resize_nearest(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer map [h, w] to (H, W).

    Half-pixel centres: output pixel i reads input floor((i + 0.5) * h / H),
    as tf.image.resize(method='nearest') does.
    """
    h, w = mask.shape
    out_h, out_w = (int(v) for v in size)
    rows = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(np.int64),
                      h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(np.int64),
                      w - 1)
    return mask[rows[:, None], cols[None, :]]


def map_back_from_input(mask: np.ndarray, image_info: np.ndarray
                        ) -> np.ndarray:
    """Model-input grid -> original image: crop the scaled region, resize.

    Args:
      mask: integer [h, w] on the model input (padded bottom / right); a
        canvas of another size covering the same input is rescaled.
      image_info: float [4, 2] of `preprocess_image`: [[H, W], [h, w],
        [scale y, x], [offset y, x]].
    Returns:
      The mask [H, W] (nearest neighbour).
    """
    info = np.asarray(image_info, np.float64)
    original = np.round(info[0]).astype(np.int64)
    ratio = np.asarray(mask.shape, np.float64) / info[1]
    offset = np.round(info[3] * ratio).astype(np.int64)
    scaled = np.round(info[0] * info[2] * ratio).astype(np.int64)
    scaled = np.clip(scaled, 1, np.asarray(mask.shape) - offset)
    region = mask[offset[0]:offset[0] + scaled[0],
                  offset[1]:offset[1] + scaled[1]]
    return resize_nearest(region, original)


def _crop_canvas(mask: np.ndarray, height: int, width: int,
                 label: str) -> np.ndarray:
    """Top-left (H, W) of an original-coordinate canvas; void-pads if small."""
    if mask.shape[0] >= height and mask.shape[1] >= width:
        return mask[:height, :width]
    logging.warning('%s: the panoptic canvas %s is smaller than the image '
                    '%dx%d; the rest is void (export with a larger '
                    'panoptic_generator.output_size)', label,
                    list(mask.shape), height, width)
    out = np.zeros([height, width], mask.dtype)
    h, w = min(height, mask.shape[0]), min(width, mask.shape[1])
    out[:h, :w] = mask[:h, :w]
    return out


# Configs ------------------------------------------------------------------
def _task_config_of(params_yaml: str):
    """The bare task config a trainer's params.yaml was written from: the
    multi-scale one when its parser has FPN level ranges."""
    import yaml
    from maskconver_tf.configs import maskconver_task as task_cfg
    from maskconver_tf.configs import multiscale_maskconver_task as ms_cfg
    with open(params_yaml) as f:
        task = (yaml.safe_load(f) or {}).get('task') or {}
    parser = (task.get('train_data') or {}).get('parser') or {}
    if 'fpn_low_range' in parser:
        return ms_cfg.MultiScaleMaskConverTask()
    return task_cfg.MaskConverTask()


def load_params(experiment: Optional[str] = None,
                config_file: Union[None, str, Sequence[str]] = None,
                params_override: Optional[str] = None,
                params_yaml: Optional[str] = None):
    """Builds the ExperimentConfig as Model Garden's train.py would.

    Order: `experiment` defaults (or a bare single- or multi-scale MaskConver
    task, as `params_yaml` says, when only it is given) -> params_yaml ->
    config_file(s) -> params_override.

    Raises:
      InferenceError: neither an experiment nor a params.yaml, or an unknown
        experiment.
    """
    import maskconver_tf.registry_imports  # noqa: F401  (registrations)
    from official.core import config_definitions as cfg
    from official.core import exp_factory
    from official.modeling import hyperparams

    if experiment:
        try:
            params = exp_factory.get_exp_config(experiment)
        except KeyError:
            raise InferenceError(
                f'unknown experiment {experiment!r}') from None
    elif params_yaml:
        params = cfg.ExperimentConfig(task=_task_config_of(params_yaml))
    else:
        raise InferenceError(
            'no config: pass --experiment (and --config_file) or a model_dir '
            'holding the params.yaml the trainer writes')
    files = []
    if params_yaml:
        files.append(params_yaml)
    if config_file:
        files += [config_file] if isinstance(config_file, str) else list(
            config_file)
    for path in files:
        if not os.path.isfile(path):
            raise InferenceError(f'{path}: no such config file')
        # Not strict for the trainer's full dump: it may carry keys an
        # experiment's defaults lack (a bare task's `restrictions`, ...).
        params = hyperparams.override_params_dict(
            params, path, is_strict=path != params_yaml)
    if params_override:
        params = hyperparams.override_params_dict(params, params_override,
                                                  is_strict=True)
    params.validate()
    params.lock()
    return params


def find_checkpoint(path: str):
    """A checkpoint file or model_dir -> (checkpoint prefix, its directory).

    Raises:
      InferenceError: no such path or no checkpoint in the directory.
    """
    import tensorflow as tf
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            indexes = sorted(glob.glob(os.path.join(path, 'ckpt-*.index')),
                             key=lambda p: int(p.split('-')[-1][:-6])
                             if p.split('-')[-1][:-6].isdigit() else -1)
            if not indexes:
                raise InferenceError(f'{path}: directory holds no checkpoint '
                                     '(no "checkpoint" file, no ckpt-*.index)')
            latest = indexes[-1][:-len('.index')]
        return latest, path
    if os.path.isfile(path + '.index'):
        return path, os.path.dirname(os.path.abspath(path))
    if path.endswith('.index') and os.path.isfile(path):
        return path[:-len('.index')], os.path.dirname(os.path.abspath(path))
    raise InferenceError(f'{path}: no such checkpoint (expected a model_dir '
                         'or a checkpoint prefix such as model_dir/ckpt-1000)')


def _descriptor_from_labels(meta: dict, source: str):
    from maskconver_tf.data.descriptor import DatasetDescriptor
    labels = meta.get('labels')
    if not labels:
        raise InferenceError(f'{source}: no "labels" (COCO categories) in the '
                             'export metadata')
    return DatasetDescriptor.from_categories(
        labels, label_mode=meta.get('label_mode') or 'contiguous',
        source=source)


# Predictors ---------------------------------------------------------------
class Predictor:
    """Runs one image through a model; subclasses implement `_run`.

    Attributes:
      backend: 'checkpoint', 'saved_model' or 'tflite'.
      path: what was loaded.
      descriptor: `DatasetDescriptor` (labels, colours, thing flags).
      input_size: (height, width) of the model input.
    """

    backend = ''

    def __init__(self, path, descriptor, input_size):
        self.path = path
        self.descriptor = descriptor
        self.input_size = tuple(int(v) for v in input_size)

    def predict(self, image) -> dict:
        """image uint8 [H, W, 3] RGB -> dict of numpy outputs (module doc)."""
        image = check_image(image)
        out = self._run(image)
        h, w = image.shape[:2]
        for key in ('category_mask', 'instance_mask'):
            if out[key].shape != (h, w):
                raise AssertionError(f'{self.backend}: {key} is '
                                     f'{out[key].shape}, expected {(h, w)}')
        return {'category_mask': out['category_mask'].astype(np.int32),
                'instance_mask': out['instance_mask'].astype(np.int32),
                'classes': np.asarray(out['classes'], np.int32).reshape(-1),
                'scores': np.asarray(out['scores'], np.float32).reshape(-1)}

    def _preprocess(self, image):
        from maskconver_tf.ops.preprocess import preprocess_image
        x, info = preprocess_image(image, self.input_size)
        return x.numpy(), info.numpy()

    def _run(self, image: np.ndarray) -> dict:
        raise NotImplementedError

    def __repr__(self):
        return (f'{type(self).__name__}({self.path!r}, input_size='
                f'{self.input_size}, {self.descriptor!r})')


class KerasPredictor(Predictor):
    """A built Keras MaskConver model (restored from a checkpoint)."""

    backend = 'checkpoint'

    def __init__(self, model, params, descriptor, path='<keras model>'):
        """Args:
          model: a built (Multi)MaskConverModel; its panoptic merger is
            detached (the merge is re-run per image size, see module doc).
          params: its ExperimentConfig.
          descriptor: the data set's DatasetDescriptor.
        """
        import tensorflow as tf
        from maskconver_tf.modeling.layers import post_processing
        super().__init__(path, descriptor, params.task.model.input_size[:2])
        self.params = params
        self.model = model
        merger = model.panoptic_merger
        if merger is None:
            raise InferenceError('the model has no panoptic merger')
        # The merge kwargs of the merger's config (not the Layer's own keys).
        accepted = inspect.signature(post_processing.panoptic_merge).parameters
        self._merge_config = {k: v for k, v in merger.get_config().items()
                              if k in accepted}
        self._merge_config['input_size'] = list(self.input_size)
        # The merge runs here at (H, W) per image; the model returns the
        # pre-merge proposals (channels, scores) and logits.
        model.panoptic_merger = None
        self._merge = post_processing.panoptic_merge
        h, w = self.input_size
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32)])

    def _run(self, image):
        import tensorflow as tf
        x, info = self._preprocess(image)
        out = self._forward(tf.constant(x[None]))
        h, w = image.shape[:2]
        config = dict(self._merge_config, output_size=[h, w])
        merged = self._merge(out['mask_logits'], out['classes'],
                             out['scores'], image_info=tf.constant(info[None]),
                             **config)
        return {k: merged[k].numpy()[0] for k in OUTPUT_NAMES}


class SavedModelPredictor(Predictor):
    """A SavedModel's `serving_default` (image_tensor, image_bytes, tflite)."""

    backend = 'saved_model'

    def __init__(self, saved_model_dir, descriptor, input_size):
        import tensorflow as tf
        super().__init__(saved_model_dir, descriptor, input_size)
        self._loaded = tf.saved_model.load(saved_model_dir)
        if 'serving_default' not in self._loaded.signatures:
            raise InferenceError(f'{saved_model_dir}: no serving_default '
                                 'signature')
        self._fn = self._loaded.signatures['serving_default']
        _, kwargs = self._fn.structured_input_signature
        if len(kwargs) != 1:
            raise InferenceError(f'{saved_model_dir}: serving_default takes '
                                 f'{sorted(kwargs)}; expected one image input')
        (self._input_name, self._spec), = kwargs.items()
        missing = [n for n in OUTPUT_NAMES
                   if n not in self._fn.structured_outputs]
        if missing:
            raise InferenceError(f'{saved_model_dir}: serving_default lacks '
                                 f'outputs {missing}')

    def _run(self, image):
        import tensorflow as tf
        h, w = image.shape[:2]
        dtype = self._spec.dtype
        if dtype == tf.uint8:
            inputs = tf.constant(image[None])
        elif dtype == tf.string:
            inputs = tf.constant([tf.io.encode_png(image).numpy()])
        elif dtype == tf.float32:
            x, info = self._preprocess(image)
            inputs = tf.constant(x[None])
        else:
            raise InferenceError(f'{self.path}: unsupported input dtype '
                                 f'{dtype.name}')
        out = {k: v.numpy() for k, v in self._fn(
            **{self._input_name: inputs}).items()}
        result = {'classes': out['classes'][0], 'scores': out['scores'][0]}
        for key in ('category_mask', 'instance_mask'):
            if dtype == tf.float32:  # input_type tflite: model-input grid
                result[key] = map_back_from_input(out[key][0], info)
            else:
                result[key] = _crop_canvas(out[key][0], h, w, self.path)
        return result


class TFLitePredictor(Predictor):
    """A `.tflite` taking preprocess_image output (float or quantised)."""

    backend = 'tflite'

    def __init__(self, tflite_path, descriptor=None, num_threads=None):
        from ai_edge_litert import interpreter as litert
        self._interpreter = litert.Interpreter(model_path=tflite_path,
                                               num_threads=num_threads)
        signatures = self._interpreter.get_signature_list()
        self._runner = None
        if signatures:
            key = ('serving_default' if 'serving_default' in signatures
                   else sorted(signatures)[0])
            self._runner = self._interpreter.get_signature_runner(key)
            inputs = self._runner.get_input_details()
            if len(inputs) != 1:
                raise InferenceError(f'{tflite_path}: signature {key} takes '
                                     f'{sorted(inputs)}; expected one image')
            (self._input_name, self._input), = inputs.items()
            names = set(self._runner.get_output_details())
        else:
            self._interpreter.allocate_tensors()
            inputs = self._interpreter.get_input_details()
            if len(inputs) != 1:
                raise InferenceError(f'{tflite_path}: {len(inputs)} inputs; '
                                     'expected one image')
            self._input = inputs[0]
            self._outputs = {
                self._output_key(d['name']): d
                for d in self._interpreter.get_output_details()}
            names = set(self._outputs)
        missing = [n for n in OUTPUT_NAMES if n not in names]
        if missing:
            raise InferenceError(f'{tflite_path}: outputs {sorted(names)} '
                                 f'lack {missing} (found by name)')
        shape = list(self._input['shape'])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise InferenceError(f'{tflite_path}: input shape {shape}; '
                                 'expected [1, H, W, 3]')
        super().__init__(tflite_path, descriptor, shape[1:3])

    @staticmethod
    def _output_key(name):
        # Without signatures the tensor names may carry a prefix / suffix
        # ('StatefulPartitionedCall:category_mask', 'classes:0').
        for n in OUTPUT_NAMES:
            if (name == n or name.endswith((':' + n, '/' + n))
                    or name.startswith(n + ':')):
                return n
        return name

    def _quantise(self, x):
        dtype = np.dtype(self._input['dtype'])
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero_point = self._input['quantization']
        if not scale:
            raise InferenceError(f'{self.path}: {dtype} input without '
                                 'quantisation parameters')
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _run(self, image):
        x, info = self._preprocess(image)
        x = self._quantise(x[None])
        if self._runner is not None:
            out = self._runner(**{self._input_name: x})
        else:
            interp = self._interpreter
            interp.set_tensor(self._input['index'], x)
            interp.invoke()
            out = {k: interp.get_tensor(d['index'])
                   for k, d in self._outputs.items()}
        result = {'classes': np.asarray(out['classes'])[0],
                  'scores': np.asarray(out['scores'], np.float32)[0]}
        for key in ('category_mask', 'instance_mask'):
            result[key] = map_back_from_input(np.asarray(out[key])[0], info)
        return result


# Loading ------------------------------------------------------------------
def detect_backend(path: str) -> str:
    """'tflite' (a .tflite file), 'saved_model' (a dir with saved_model.pb
    or a saved_model/ subdir) or 'checkpoint' (a model_dir or ckpt prefix).

    Raises:
      InferenceError: the path does not exist.
    """
    if os.path.isfile(path) and path.endswith('.tflite'):
        return 'tflite'
    if os.path.isdir(path):
        if (os.path.isfile(os.path.join(path, 'saved_model.pb')) or
                os.path.isfile(os.path.join(path, 'saved_model',
                                            'saved_model.pb'))):
            return 'saved_model'
        return 'checkpoint'
    if os.path.isfile(path + '.index') or (
            path.endswith('.index') and os.path.isfile(path)):
        return 'checkpoint'
    if os.path.exists(path):
        raise InferenceError(f'{path}: not a .tflite, SavedModel directory, '
                             'model_dir or checkpoint')
    raise InferenceError(f'{path}: no such model file or directory')


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InferenceError(f'{path}: unreadable metadata ({e})') from None


def _config_descriptor(experiment, config_file, params_override, what):
    from maskconver_tf.tasks.maskconver import descriptor_for
    if not (experiment or config_file):
        raise InferenceError(f'{what}: no sidecar metadata with labels; pass '
                             '--experiment / --config_file')
    params = load_params(experiment, config_file, params_override)
    return params, descriptor_for(params.task)


def load_predictor(path: str, experiment: Optional[str] = None,
                   config_file=None, params_override: Optional[str] = None
                   ) -> Predictor:
    """Loads a checkpoint (dir or file), a SavedModel dir or a .tflite.

    Args:
      path: model_dir / checkpoint prefix (needs params.yaml next to it or
        `experiment`), export dir or its saved_model/ subdir, or a .tflite.
      experiment, config_file, params_override: the config (see
        `load_params`); for exports only used when the sidecar is missing.
    Returns:
      A `Predictor`.
    Raises:
      InferenceError: a one-line reason (missing path, no config, ...).
    """
    path = os.fspath(path)
    backend = detect_backend(path)
    if backend == 'tflite':
        meta_path = os.path.splitext(path)[0] + '.json'
        if os.path.isfile(meta_path):
            descriptor = _descriptor_from_labels(_read_json(meta_path),
                                                 meta_path)
        else:
            _, descriptor = _config_descriptor(experiment, config_file,
                                               params_override, path)
        return TFLitePredictor(path, descriptor)
    if backend == 'saved_model':
        sm_dir = path
        if not os.path.isfile(os.path.join(path, 'saved_model.pb')):
            sm_dir = os.path.join(path, 'saved_model')
        meta_path = next((p for p in (
            os.path.join(path, SAVED_MODEL_SIDECAR),
            os.path.join(os.path.dirname(os.path.abspath(sm_dir)),
                         SAVED_MODEL_SIDECAR)) if os.path.isfile(p)), None)
        if meta_path:
            meta = _read_json(meta_path)
            descriptor = _descriptor_from_labels(meta, meta_path)
            size = (meta.get('input', {}).get('height'),
                    meta.get('input', {}).get('width'))
        else:
            params, descriptor = _config_descriptor(
                experiment, config_file, params_override, path)
            size = params.task.model.input_size[:2]
        if None in size:
            raise InferenceError(f'{meta_path}: no input height / width')
        return SavedModelPredictor(sm_dir, descriptor, size)
    return load_checkpoint_predictor(path, experiment, config_file,
                                     params_override)


def load_checkpoint_predictor(path, experiment=None, config_file=None,
                              params_override=None) -> KerasPredictor:
    """Builds the model from the config and restores the checkpoint."""
    import tensorflow as tf
    import tf_keras
    from maskconver_tf.modeling import factory
    from maskconver_tf.tasks.maskconver import descriptor_for

    checkpoint, model_dir = find_checkpoint(path)
    params_yaml = os.path.join(model_dir, 'params.yaml')
    if not os.path.isfile(params_yaml):
        params_yaml = None
        if not experiment:
            raise InferenceError(
                f'{model_dir}: no params.yaml next to the checkpoint; pass '
                '--experiment (and --config_file / --params_override)')
    params = load_params(experiment, config_file, params_override, params_yaml)
    descriptor = descriptor_for(params.task)
    model_config = params.task.model
    if model_config.num_classes != descriptor.num_classes:
        raise InferenceError(
            f'model.num_classes {model_config.num_classes} != dataset '
            f'{params.task.dataset!r} class channels {descriptor.num_classes}')
    input_specs = tf_keras.layers.InputSpec(
        shape=[1] + list(model_config.input_size))
    model = factory.build_maskconver_model(input_specs, model_config,
                                           descriptor=descriptor)
    try:
        status = tf.train.Checkpoint(model=model).read(checkpoint)
        status.expect_partial().assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        raise InferenceError(f'{checkpoint}: cannot restore into the '
                             f'configured model ({type(e).__name__}: '
                             f'{first})') from None
    logging.info('Restored %s', checkpoint)
    return KerasPredictor(model, params, descriptor, path=checkpoint)
