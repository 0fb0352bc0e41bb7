"""TFLite conversion of an exported MaskConver SavedModel.

- Quantisation modes with Model Garden's `quant_type` names (`QUANT_TYPES`).
- Calibration on the experiment's records decoded and preprocessed exactly
  as at inference (`preprocess_image`), without augmentation.
- A fixed output contract in every mode: outputs named and ordered as
  `export_module.OUTPUT_ORDER`, masks / classes int32, scores float32; only
  the image input dtype changes with the int8 IO modes.
- Flatbuffer inspection (ops and their tensor dtypes), refusal of exports
  that would be silently wrong (Flex / custom ops, float kernels left in a
  full-int8 mode, int8 modes without int8 kernels) and JSON metadata
  embedded in the flatbuffer (`read_tflite_metadata`).
"""

import dataclasses
import glob
import hashlib
import json
import os
import re
from typing import (Callable, Dict, Iterable, List, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from maskconver_tf.modeling.layers import mask_embedding_generator
from maskconver_tf.ops import preprocess
from maskconver_tf.serving import export_module

QUANT_TYPES = ('none', 'fp16', 'default', 'int8_fallback', 'int8_full',
               'int8_full_fp32_io', 'int8_full_int8_io')
# Model Garden spellings of the same modes.
QUANT_ALIASES = {None: 'none', '': 'none', 'float32': 'none',
                 'int8': 'int8_fallback'}
INT8_TYPES = ('int8_fallback', 'int8_full', 'int8_full_fp32_io',
              'int8_full_int8_io')
FULL_INT8_TYPES = ('int8_full', 'int8_full_fp32_io', 'int8_full_int8_io')
INPUT_DTYPES = {'int8_full': np.uint8, 'int8_full_int8_io': np.int8}
# Ops that carry the multiply-adds; float versions in a full-int8 model
# mean the mode did not do what it says.
KERNEL_OPS = ('CONV_2D', 'DEPTHWISE_CONV_2D', 'FULLY_CONNECTED',
              'BATCH_MATMUL', 'TRANSPOSE_CONV', 'CONV_3D')
# Kept float by default in the int8 modes: the mask-embedding x per-pixel
# einsum has two activation operands; LiteRT runs it in int8 with a slow
# reference kernel (7.9 ms vs 0.3 ms float at 256 px, benchmarks/RESULTS.md)
# and its float output keeps the mask logits exact.
DEFAULT_INT8_DENYLIST = ('BATCH_MATMUL',)
# Ops that only move data: kept float when their input comes from a float op,
# so a float result is not requantised on its way to the float tail.
_LAYOUT_OPS = ('RESHAPE', 'TRANSPOSE', 'SQUEEZE', 'EXPAND_DIMS')
# The moments of a traced LayerNorm (tf.nn.moments inside its scope).
_LAYER_NORM_MOMENTS = re.compile(r'^(.+)/moments/(mean|variance|SquaredDifference)$')
METADATA_NAME = 'maskconver'
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith('_')}
_TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items()
               if not k.startswith('_')}


class ExportError(ValueError):
    """An export that would be wrong (or silently different) is refused."""


def canonical_quant_type(quant_type: Optional[str]) -> str:
    """Maps Model Garden spellings to QUANT_TYPES; rejects unknown names."""
    quant_type = QUANT_ALIASES.get(quant_type, quant_type)
    if quant_type not in QUANT_TYPES:
        raise ExportError(f'quant_type {quant_type!r}: expected one of '
                          f'{QUANT_TYPES} (int8 = int8_fallback)')
    return quant_type


# Calibration ------
def _decoder_for(data_config, descriptor):
    from maskconver_tf.dataloaders import decoder as decoder_lib
    d = data_config.decoder
    if d.type == 'tfds':
        return decoder_lib.TfdsPanopticDecoder(descriptor,
                                               skip_crowd=d.skip_crowd)
    return decoder_lib.TfExampleDecoder(
        panoptic_category_mask_key=d.panoptic_category_mask_key,
        panoptic_instance_mask_key=d.panoptic_instance_mask_key)


def _raw_dataset(data_config) -> tf.data.Dataset:
    if data_config.tfds_name:
        import tensorflow_datasets as tfds
        builder = tfds.builder(data_config.tfds_name,
                               data_dir=data_config.tfds_data_dir or None)
        return builder.as_dataset(split=data_config.tfds_split,
                                  shuffle_files=False,
                                  decoders={'image': tfds.decode.SkipDecoding(),
                                            'panoptic_image':
                                                tfds.decode.SkipDecoding()})
    patterns = data_config.input_path
    if isinstance(patterns, str):
        patterns = patterns.split(',')
    files = sorted(f for p in patterns for f in glob.glob(p.strip()))
    if not files:
        raise ExportError(f'calibration data: no files match '
                          f'{data_config.input_path!r}')
    return tf.data.TFRecordDataset(files)


def calibration_images(data_config, input_image_size: Sequence[int],
                       num_images: int, descriptor=None) -> List[np.ndarray]:
    """The first `num_images` images of a data config, preprocessed.

    Model Garden's representative dataset runs the training parser, i.e.
    with scale jitter and flips; calibration must see what inference sees, so
    records are decoded and passed through `preprocess_image` only.

    Args:
      data_config: a `DataConfig` (input_path of TFRecords, or tfds_name).
      input_image_size: (height, width) of the model input.
      num_images: how many images (files in sorted order, no shuffling).
      descriptor: DatasetDescriptor (needed by the tfds decoder).

    Returns:
      list of float32 [height, width, 3] arrays (fewer if the data is
      shorter; the caller records the count).
    """
    decoder = _decoder_for(data_config, descriptor)

    def _image(record):
        image = decoder.decode(record)['image']
        return preprocess.preprocess_image(image, input_image_size)[0]

    dataset = _raw_dataset(data_config).take(num_images).map(_image)
    return [np.asarray(x, np.float32) for x in dataset]


def calibration_from_arrays(images: Iterable[np.ndarray],
                            input_image_size: Sequence[int]
                            ) -> List[np.ndarray]:
    """uint8 [H, W, 3] images (any sizes) -> preprocessed float32 inputs."""
    return [np.asarray(preprocess.preprocess_image(
        tf.convert_to_tensor(im), input_image_size)[0]) for im in images]


# Conversion ------
def _converter(saved_model_dir: str) -> tf.lite.TFLiteConverter:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _postprocess_scope():
    # TF uniquifies a reused scope name: scope/, scope_1/, ...
    names = '|'.join(re.escape(n) for n in (
        export_module.POSTPROCESS_SCOPE, mask_embedding_generator.FLOAT_SCOPE))
    return re.compile(f'({names})' + r'(_\d+)?/')


def layer_norm_scopes(names: Sequence[str]) -> List[str]:
    """Scopes of the LayerNorms among TFLite location names, sorted.

    A LayerNorm traces as `<scope>/moments/{mean,SquaredDifference,variance}`
    then `<scope>/batchnorm/...` (add, Rsqrt, mul, sub); BatchNorm folds into
    its convolution and has no `moments`.
    """
    scopes = set()
    for name in names:
        m = _LAYER_NORM_MOMENTS.match(name)
        if m:
            scopes.add(m.group(1))
    return sorted(scopes)


def float_tail(model: bytes, denylisted_ops: Sequence[str] = ()
               ) -> Tuple[List[str], List[str]]:
    """What a calibrated model keeps in float in the int8 modes.

    The post-processing (ops under `export_module.POSTPROCESS_SCOPE`) counts
    pixels, compares scores with thresholds, tests peaks for equality with
    their max-pooled neighbourhood and one-hot encodes winners: in int8 those
    tests are always false or saturate (measured: PQ 0 on a trained model
    with 57.8 in float), and it is a small share of the time. Also kept
    float: ops under `mask_embedding_generator.FLOAT_SCOPE` (the offset of
    the float mask-logit matmul), ops producing float graph outputs from
    float inputs, the ops of every LayerNorm (`layer_norm_scopes`: in int8
    their broadcast SUB / SQUARED_DIFFERENCE run on slow reference kernels,
    measured 1.56 s of the flagship's 2.17 s at 640 px, and XNNPACK runs
    them fast in float), and layout ops fed by a float op (a denylisted op
    or another such layout op; not the int32 proposal cells, which feed the
    center head's gathers). A graph without the scope (the CNN alone)
    keeps its LayerNorms and the denylisted ops float.

    Args:
      model: a calibrated (not yet quantised) flatbuffer.
      denylisted_ops: TFLite op names that stay float.

    Returns:
      (node names, op names): the ops' location names (first output tensor
      name) for `mlir_quantize(denylisted_nodes=...)`, and the op types that
      occur only in the tail. The quantiser matches plain locations only, so
      fused ops ('a;b') of the tail are kept float by their type.
    """
    m = _load(model)
    graph = m.subgraphs[0]
    outputs = set(graph.outputs)
    scope = _postprocess_scope()
    norms = tuple(f'{s}/{part}/' for s in layer_norm_scopes(
        [_tensor_name(graph.tensors[op.outputs[0]]) for op in graph.operators])
        for part in ('moments', 'batchnorm'))
    float_tensors = set()
    names, tail_types, other_types = [], set(), set()
    for op in graph.operators:
        op_name = _opcode_name(m.operatorCodes[op.opcodeIndex])
        out = op.outputs[0]
        data_input = op.inputs[0] if len(op.inputs) else -1
        location = _tensor_name(graph.tensors[out])
        in_scope = bool(scope.search(location))
        from_float = any(t in float_tensors for t in op.inputs)
        keep = (in_scope or location.startswith(norms)
                or (out in outputs and from_float
                    and graph.tensors[out].type == schema.TensorType.FLOAT32)
                or (op_name in _LAYOUT_OPS and data_input in float_tensors
                    and graph.tensors[data_input].type
                    == schema.TensorType.FLOAT32))
        if op_name in denylisted_ops or keep:
            float_tensors.update(op.outputs)
        if keep:
            names.append(_tensor_name(graph.tensors[out]))
        (tail_types if in_scope else other_types).add(op_name)
    return names, sorted(tail_types - other_types)


def quantized_tail_ops(ops: Sequence['OpInfo']) -> List['OpInfo']:
    """Post-processing ops of a converted model that compute in int8."""
    scope = _postprocess_scope()
    return [op for op in ops if scope.search(op.output_name)
            and 'int8' in op.inputs + op.outputs]


def convert_saved_model(saved_model_dir: str, quant_type: str = 'none',
                        calibration: Optional[Sequence[np.ndarray]] = None,
                        denylisted_ops: Optional[Sequence[str]] = None,
                        float_postprocessing: bool = True) -> bytes:
    """Converts a SavedModel exported with input_type tflite and batch 1.

    Args:
      saved_model_dir: the `saved_model` directory.
      quant_type: one of QUANT_TYPES (or a Model Garden alias).
      calibration: float32 [H, W, 3] preprocessed images (int8 modes).
      denylisted_ops: TFLite op names (e.g. 'LOGISTIC', 'ARG_MAX') kept in
        float in the int8 modes.
      float_postprocessing: int8 modes keep the post-processing tail in
        float (`float_tail`); False quantises it too (it then scores
        0 PQ: kept only to measure that).

    Returns:
      The converted flatbuffer (not yet `finalize`d).
    """
    quant_type = canonical_quant_type(quant_type)
    converter = _converter(saved_model_dir)
    if quant_type == 'none':
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant_type == 'fp16':
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    if quant_type == 'default':
        return converter.convert()
    if not calibration:
        raise ExportError(f'quant_type {quant_type} needs calibration images')

    def _representative():
        for image in calibration:
            yield [np.asarray(image, np.float32)[np.newaxis]]

    converter.representative_dataset = _representative
    if quant_type in FULL_INT8_TYPES:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # Calibrate, then quantise ourselves: this is the only way to combine
    # denylisted ops with int8 IO, and keeps scores float32 in every mode.
    # pylint: disable-next=protected-access
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    from tensorflow.lite.python import convert as lite_convert
    input_type = {'int8_full': tf.uint8,
                  'int8_full_int8_io': tf.int8}.get(quant_type, tf.float32)
    # As TFLiteConverter._quantize does (fully_quantize would also make the
    # float outputs int8).
    denylisted_ops = list(denylisted_ops or [])
    nodes = []
    if float_postprocessing:
        nodes, tail_types = float_tail(calibrated, denylisted_ops)
        denylisted_ops += [t for t in tail_types if t not in denylisted_ops]
    model = lite_convert.mlir_quantize(
        calibrated, input_data_type=input_type, output_data_type=tf.float32,
        denylisted_ops=denylisted_ops or None, denylisted_nodes=nodes or None)
    if float_postprocessing:
        bad = quantized_tail_ops(list_ops(model))
        if bad:
            raise ExportError(
                'the post-processing should stay float but the quantiser '
                f'made {len(bad)} op(s) int8: '
                f'{[(op.name, op.output_name) for op in bad][:5]}')
    return model


# Inspection ------
@dataclasses.dataclass
class OpInfo:
    """One operator of subgraph 0: name and tensor dtypes."""
    index: int
    name: str
    custom_code: str
    inputs: List[str]    # dtypes of the non-constant inputs
    weights: List[str]   # dtypes of constant inputs
    outputs: List[str]
    output_name: str = ''  # name of the first output tensor


def _load(model: Union[bytes, str]):
    if isinstance(model, str):
        with open(model, 'rb') as f:
            model = f.read()
    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model))


def _opcode_name(opcode) -> str:
    code = max(int(opcode.builtinCode), int(opcode.deprecatedBuiltinCode))
    return _OP_NAMES.get(code, str(code))


def list_ops(model: Union[bytes, str]) -> List[OpInfo]:
    """Operators of the main subgraph with input / weight / output dtypes."""
    m = _load(model)
    graph = m.subgraphs[0]
    ops = []
    for i, op in enumerate(graph.operators):
        opcode = m.operatorCodes[op.opcodeIndex]
        inputs, weights = [], []
        for t in op.inputs:
            if t < 0:
                continue
            tensor = graph.tensors[t]
            data = m.buffers[tensor.buffer].data if tensor.buffer else None
            (weights if data is not None and len(data) else inputs).append(
                _TYPE_NAMES[tensor.type])
        outputs = [_TYPE_NAMES[graph.tensors[t].type] for t in op.outputs]
        custom = opcode.customCode
        ops.append(OpInfo(i, _opcode_name(opcode),
                          custom.decode() if isinstance(custom, bytes)
                          else (custom or ''), inputs, weights, outputs,
                          _tensor_name(graph.tensors[op.outputs[0]])
                          if len(op.outputs) else ''))
    return ops


def op_histogram(ops: Sequence[OpInfo]) -> Dict[str, int]:
    """'NAME(dtype)' -> count, dtype = the op's first input dtype."""
    counts = {}
    for op in ops:
        key = f'{op.name}({op.inputs[0] if op.inputs else "-"})'
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def custom_ops(ops: Sequence[OpInfo]) -> List[str]:
    """Names of Flex (select TF) and custom ops."""
    return [op.custom_code or op.name for op in ops
            if op.name == 'CUSTOM' or op.custom_code]


def float_kernels(ops: Sequence[OpInfo]) -> List[OpInfo]:
    """Multiply-add ops (KERNEL_OPS) that run in float."""
    return [op for op in ops if op.name in KERNEL_OPS
            and op.inputs and op.inputs[0] in ('float32', 'float16')]


def int8_kernels(ops: Sequence[OpInfo]) -> List[OpInfo]:
    """Multiply-add ops with int8 activations and int8 weights."""
    return [op for op in ops if op.name in KERNEL_OPS
            and op.inputs and op.inputs[0] == 'int8'
            and (not op.weights or op.weights[0] == 'int8')]


def check_model(model: bytes, quant_type: str,
                denylisted_ops: Sequence[str] = ()) -> List[OpInfo]:
    """Refuses a converted model that is not what the mode promises.

    Raises ExportError for: Flex or custom ops (any mode); in the int8 modes,
    no int8 kernel at all; in the full-int8 modes, a float multiply-add op
    that was not explicitly denylisted. Returns the op list.
    """
    quant_type = canonical_quant_type(quant_type)
    ops = list_ops(model)
    bad = custom_ops(ops)
    if bad:
        raise ExportError(f'the converted model holds Flex/custom ops '
                          f'{sorted(set(bad))}; only TFLite builtins are '
                          'allowed')
    if quant_type in INT8_TYPES and not int8_kernels(ops):
        raise ExportError(f'quant_type {quant_type}: the model holds no int8 '
                          'convolution / matmul kernel (calibration did not '
                          'quantise anything)')
    if quant_type in FULL_INT8_TYPES:
        allowed = set(denylisted_ops or ())
        floats = [op for op in float_kernels(ops) if op.name not in allowed]
        if floats:
            names = sorted({op.name for op in floats})
            raise ExportError(
                f'quant_type {quant_type} asks for full int8 but {len(floats)} '
                f'multiply-add ops stay float ({names}); use int8_fallback, or '
                'list the ops in --denylisted_ops to keep them float on '
                'purpose')
    return ops


# Output contract and metadata ------
def _tensor_name(tensor) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else name


def finalize(model: bytes, metadata: dict,
             output_order: Optional[Sequence[str]] = None) -> bytes:
    """Names and orders the outputs by contract and embeds the metadata.

    The converter orders signature outputs alphabetically and names the
    tensors after graph nodes; this renames the output tensors to their
    signature keys, orders subgraph outputs (and the signature) as
    `output_order`, and adds a metadata entry `maskconver` holding the JSON
    bytes of `metadata`.
    """
    if output_order is None:
        output_order = [k for k in metadata.get(
            'output_order', export_module.OUTPUT_ORDER) if k != 'image_info']
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = m.subgraphs[0]
    signature = m.signatureDefs[0]
    by_key = {}
    for item in signature.outputs:
        key = item.name.decode() if isinstance(item.name, bytes) else item.name
        by_key[key] = item
    missing = [k for k in output_order if k not in by_key]
    if missing or len(by_key) != len(output_order):
        raise ExportError(f'model outputs {sorted(by_key)} differ from the '
                          f'contract {list(output_order)}')
    for key, item in by_key.items():
        graph.tensors[item.tensorIndex].name = key.encode()
    graph.outputs = [by_key[k].tensorIndex for k in output_order]
    signature.outputs = [by_key[k] for k in output_order]
    inputs = {i.name.decode() if isinstance(i.name, bytes) else i.name: i
              for i in signature.inputs}
    if len(inputs) == 1:
        item = next(iter(inputs.values()))
        graph.tensors[item.tensorIndex].name = b'inputs'
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(
        json.dumps(metadata, sort_keys=False).encode(), np.uint8)
    m.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(m.buffers) - 1
    m.metadata = [e for e in (m.metadata or [])
                  if (e.name.decode() if isinstance(e.name, bytes)
                      else e.name) != METADATA_NAME] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def read_tflite_metadata(model: Union[bytes, str]) -> dict:
    """The JSON dict stored under the `maskconver` metadata entry."""
    m = _load(model)
    for entry in m.metadata or []:
        name = entry.name.decode() if isinstance(entry.name,
                                                 bytes) else entry.name
        if name == METADATA_NAME:
            return json.loads(bytes(m.buffers[entry.buffer].data).decode())
    raise KeyError(f'no {METADATA_NAME!r} metadata entry in the model')


def input_quantization(model: bytes) -> Optional[dict]:
    """{'dtype', 'scale', 'zero_point'} of a quantised image input."""
    m = _load(model)
    graph = m.subgraphs[0]
    tensor = graph.tensors[graph.inputs[0]]
    q = tensor.quantization
    if q is None or q.scale is None or not len(q.scale):
        return None
    return {'dtype': _TYPE_NAMES[tensor.type], 'scale': float(q.scale[0]),
            'zero_point': int(q.zeroPoint[0])}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_tflite(saved_model_dir: str, tflite_path: str, *,
                  quant_type: str = 'none',
                  calibration: Optional[Sequence[np.ndarray]] = None,
                  denylisted_ops: Optional[Sequence[str]] = None,
                  base_metadata: Optional[dict] = None,
                  calibration_source: str = '',
                  float_postprocessing: bool = True) -> dict:
    """Converts, checks, finalises and writes `tflite_path` + its sidecar.

    Args:
      saved_model_dir: `export_dir/saved_model` of an export with
        input_type tflite and batch size 1.
      tflite_path: output .tflite; the sidecar is `<path without .tflite>.json`.
      quant_type, calibration, float_postprocessing: see
        `convert_saved_model`.
      denylisted_ops: ops kept float in the int8 modes; None =
        DEFAULT_INT8_DENYLIST, [] = quantise everything that can be.
      base_metadata: the SavedModel sidecar dict (labels, normalisation, ...).
      calibration_source: where the calibration images came from.

    Returns:
      The metadata dict written (also embedded in the flatbuffer; the
      sidecar adds the file's sha256, which the embedded copy cannot hold).
    """
    quant_type = canonical_quant_type(quant_type)
    if denylisted_ops is None:
        denylisted_ops = (list(DEFAULT_INT8_DENYLIST)
                          if quant_type in INT8_TYPES else [])
    base = dict(base_metadata or {})
    if base.get('input', {}).get('type', 'tflite') != 'tflite' or base.get(
            'input', {}).get('batch_size', 1) != 1:
        raise ExportError('TFLite conversion needs a SavedModel exported with '
                          '--input_type tflite --batch_size 1 (got '
                          f'{base.get("input")})')
    model = convert_saved_model(saved_model_dir, quant_type, calibration,
                                denylisted_ops, float_postprocessing)
    ops = check_model(model, quant_type, denylisted_ops or ())
    uses_calibration = quant_type in INT8_TYPES
    metadata = dict(base)
    metadata.update({
        'quant_type': quant_type,
        'calibration_images': len(calibration) if uses_calibration else 0,
        'calibration_source': calibration_source if uses_calibration else '',
        'denylisted_ops': list(denylisted_ops or []),
        'float_postprocessing': bool(float_postprocessing
                                     and uses_calibration),
        'op_histogram': op_histogram(ops),
    })
    metadata['input'] = dict(metadata.get('input', {}))
    quant = input_quantization(model)
    metadata['input']['dtype'] = quant['dtype'] if quant else 'float32'
    metadata['input']['quantization'] = quant
    model = finalize(model, metadata)
    os.makedirs(os.path.dirname(os.path.abspath(tflite_path)), exist_ok=True)
    with open(tflite_path, 'wb') as f:
        f.write(model)
    sidecar = dict(metadata, sha256=sha256(model), size_bytes=len(model))
    export_module.write_sidecar(sidecar, sidecar_path(tflite_path))
    return sidecar


def sidecar_path(tflite_path: str) -> str:
    root, ext = os.path.splitext(tflite_path)
    return (root if ext == '.tflite' else tflite_path) + '.json'


# Running ------
def make_interpreter(model: Union[bytes, str], num_threads: int = 2,
                     use_xnnpack: bool = True):
    """A LiteRT interpreter; use_xnnpack False = builtin kernels only."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kwargs = dict(num_threads=num_threads)
    if not use_xnnpack:
        kwargs['experimental_op_resolver_type'] = (
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    if isinstance(model, str):
        kwargs['model_path'] = model
    else:
        kwargs['model_content'] = bytes(model)
    interpreter = Interpreter(**kwargs)
    interpreter.allocate_tensors()
    return interpreter


def quantize_input(image: np.ndarray, input_detail: dict) -> np.ndarray:
    """float32 preprocessed image -> the model's input dtype."""
    dtype = input_detail['dtype']
    if dtype == np.float32:
        return image.astype(np.float32)
    scale, zero_point = input_detail['quantization']
    info = np.iinfo(dtype)
    q = np.round(image / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def run_tflite(interpreter, image: np.ndarray) -> Dict[str, np.ndarray]:
    """image float32 [1, H, W, 3] preprocessed -> outputs by name, in order."""
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail['index'], quantize_input(image, detail))
    interpreter.invoke()
    return {d['name']: interpreter.get_tensor(d['index'])
            for d in interpreter.get_output_details()}


def predict_fn(model: Union[bytes, str], num_threads: int = 2
               ) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
    """A callable running one preprocessed [1, H, W, 3] image."""
    interpreter = make_interpreter(model, num_threads)
    return lambda image: run_tflite(interpreter, image)
