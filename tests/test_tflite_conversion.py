"""TFLite conversion: quant modes, output contract, int8 kernels, refusals."""

import json

import numpy as np
import pytest
import tensorflow as tf

from maskconver_tf import registry_imports  # noqa: F401
from maskconver_tf.data import create_tfrecords
from maskconver_tf.data import shapes
from maskconver_tf.dataloaders import decoder as decoder_lib
from maskconver_tf.modeling.layers import mask_embedding_generator
from maskconver_tf.ops import preprocess
from maskconver_tf.serving import export_module
from maskconver_tf.serving import tflite_conversion as tc

SIZE = 64
NUM_CALIBRATION = 6
CONTRACT = [('category_mask', np.int32, [1, SIZE, SIZE]),
            ('instance_mask', np.int32, [1, SIZE, SIZE]),
            ('classes', np.int32, [1, 50]),
            ('scores', np.float32, [1, 50])]
INPUT_DTYPES = {'int8_full': np.uint8, 'int8_full_int8_io': np.int8}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """SavedModel (tflite input, batch 1), its sidecar, calibration data."""
    root = tmp_path_factory.mktemp('tflite')
    json_path = shapes.generate_dataset(str(root / 'shapes'), 8,
                                        image_size=80, seed=4)
    report = create_tfrecords.convert(
        image_dir=root / 'shapes' / 'images', panoptic_json=json_path,
        panoptic_masks_dir=root / 'shapes' / 'panoptic',
        output_prefix=str(root / 'records' / 'train'))
    params = export_module.load_params('maskconver_shapes')
    params.task.train_data.input_path = str(root / 'records' / 'train*')
    tf.keras.utils.set_random_seed(1)
    module = export_module.export_saved_model(
        params, str(root / 'export'), batch_size=1, input_type='tflite',
        input_image_size=[SIZE, SIZE], experiment='maskconver_shapes')
    meta = json.loads((root / 'export' / export_module.SIDECAR_NAME)
                      .read_text())
    calibration = tc.calibration_images(params.task.train_data, [SIZE, SIZE],
                                        NUM_CALIBRATION)
    return {'root': root, 'saved_model': str(root / 'export' / 'saved_model'),
            'meta': meta, 'calibration': calibration, 'module': module,
            'records': report.output_files}


def test_calibration_is_inference_preprocessing(exported):
    """Decoded records through preprocess_image only: no jitter, no flip."""
    images = exported['calibration']
    assert len(images) == NUM_CALIBRATION
    decoder = decoder_lib.TfExampleDecoder()
    records = list(tf.data.TFRecordDataset(exported['records'])
                   .take(NUM_CALIBRATION))
    for record, image in zip(records, images):
        raw = decoder.decode(record)['image']
        want = preprocess.preprocess_image(raw, (SIZE, SIZE))[0]
        np.testing.assert_array_equal(image, np.asarray(want))
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32


@pytest.mark.parametrize('quant_type', tc.QUANT_TYPES)
def test_every_mode_converts_with_the_same_contract(exported, quant_type):
    path = str(exported['root'] / f'{quant_type}.tflite')
    sidecar = tc.export_tflite(
        exported['saved_model'], path, quant_type=quant_type,
        calibration=exported['calibration'], base_metadata=exported['meta'],
        calibration_source='test records')
    with open(path, 'rb') as f:
        model = f.read()
    ops = tc.list_ops(model)
    assert not tc.custom_ops(ops)
    assert all(op.name != 'CUSTOM' for op in ops)
    interpreter = tc.make_interpreter(model)
    outputs = interpreter.get_output_details()
    assert [(d['name'], d['dtype'], list(d['shape'])) for d in outputs] == [
        (n, t, s) for n, t, s in CONTRACT]
    (detail,) = interpreter.get_input_details()
    assert detail['name'] == 'inputs'
    assert list(detail['shape']) == [1, SIZE, SIZE, 3]
    assert detail['dtype'] == INPUT_DTYPES.get(quant_type, np.float32)
    result = tc.run_tflite(interpreter, exported['calibration'][0][np.newaxis])
    assert list(result) == [n for n, _, _ in CONTRACT]
    ids = set(exported['meta']['labels'][i]['id']
              for i in range(len(exported['meta']['labels']))) | {0}
    assert set(np.unique(result['category_mask'])) <= ids
    assert set(np.unique(result['classes'])) <= ids
    # Metadata: embedded == sidecar minus the file hash and size.
    embedded = tc.read_tflite_metadata(path)
    with open(tc.sidecar_path(path)) as f:
        on_disk = json.load(f)
    assert on_disk.pop('sha256') == tc.sha256(model)
    assert on_disk.pop('size_bytes') == len(model)
    assert embedded == on_disk == {k: v for k, v in sidecar.items()
                                   if k not in ('sha256', 'size_bytes')}
    assert embedded['quant_type'] == quant_type
    assert embedded['labels'] == exported['meta']['labels']
    assert embedded['input']['mean_rgb'] == exported['meta']['input'][
        'mean_rgb']
    int8 = tc.int8_kernels(ops)
    floats = tc.float_kernels(ops)
    if quant_type in tc.INT8_TYPES:
        assert embedded['calibration_images'] == NUM_CALIBRATION
        # Every conv / depthwise / dense of the CNN really is int8.
        assert sum(op.name == 'CONV_2D' for op in int8) >= 50
        assert sum(op.name == 'DEPTHWISE_CONV_2D' for op in int8) >= 20
        assert all(op.weights[0] == 'int8' for op in int8 if op.weights)
        # The default denylist keeps only the embedding einsum float.
        assert embedded['denylisted_ops'] == ['BATCH_MATMUL']
        assert [op.name for op in floats] == ['BATCH_MATMUL']
        # The post-processing tail runs in float.
        assert embedded['float_postprocessing'] is True
        assert _tail_dtypes(ops) == {'float32'}
        assert not tc.quantized_tail_ops(ops)
        quant = embedded['input']['quantization']
        if quant_type in INPUT_DTYPES:
            assert quant['dtype'] == np.dtype(INPUT_DTYPES[quant_type]).name
            assert quant['scale'] > 0
        else:
            assert quant is None
    else:
        assert embedded['calibration_images'] == 0
        assert embedded['denylisted_ops'] == []
        assert not int8 and len(floats) >= 70
        weights = {w for op in floats for w in op.weights}
        if quant_type == 'fp16':
            # fp16 weights, dequantised to float32 kernels at load.
            assert 'float16' in {t for op in ops for t in op.weights}
        if quant_type == 'default':
            assert 'int8' in weights  # dynamic range: int8 weights


# Ops only the post-processing uses (peak test, top-K, areas, winners).
TAIL_OPS = ('LOGISTIC', 'MAX_POOL_2D', 'TOPK_V2', 'ARG_MAX', 'SUM')


def _tail_dtypes(ops):
    # int32 inputs are index sorts (proposal cells), never quantised.
    return {op.inputs[0] for op in ops if op.name in TAIL_OPS and op.inputs
            } - {'int32'}


def test_quantised_tail_only_on_request(exported):
    """float_postprocessing=False quantises the tail (the PQ-0 defect)."""
    assert {op.name for op in tc.list_ops(tc.convert_saved_model(
        exported['saved_model'], 'none'))} >= set(TAIL_OPS)
    quantised = tc.convert_saved_model(
        exported['saved_model'], 'int8_full_fp32_io', exported['calibration'],
        denylisted_ops=['BATCH_MATMUL'], float_postprocessing=False)
    # The stage-1 top-K of the proposals sorts dequantised cell maxima.
    assert {op.inputs[0] for op in tc.list_ops(quantised) if op.name in (
        'LOGISTIC', 'MAX_POOL_2D', 'ARG_MAX', 'SUM')} == {'int8'}
    assert tc.quantized_tail_ops(tc.list_ops(quantised))
    names, types = tc.float_tail(tc.convert_saved_model(
        exported['saved_model'], 'none'), ['BATCH_MATMUL'])
    assert len(names) >= 40
    # The tail, graph outputs, and the mask-logit offset with the reshape
    # after it (float matmul -> float add -> layout op).
    assert all(export_module.POSTPROCESS_SCOPE in n or ':' in n
               or n.startswith('mask_embedding_generator/') for n in names
               ), names
    assert any(mask_embedding_generator.FLOAT_SCOPE in n for n in names)
    # Op types only the tail uses (the CNN has no top-K, argmax or segment
    # sums).
    assert {'TOPK_V2', 'ARG_MAX', 'UNSORTED_SEGMENT_SUM'} <= set(types)
    assert not {'CONV_2D', 'ADD', 'MUL', 'RESIZE_BILINEAR'} & set(types)


def test_cnn_alone_is_fully_int8(exported):
    """Without the post-processing scope nothing but the denylist is float."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from benchmarks import tflite_matrix
    path = str(exported['root'] / 'cnn_only')
    tflite_matrix.save_cnn(exported['module'].model, SIZE, path, split=False)
    names, types = tc.float_tail(tc.convert_saved_model(path, 'none'))
    assert names == [] and types == []
    model = tc.convert_saved_model(path, 'int8_full_fp32_io',
                                   exported['calibration'])
    ops = tc.check_model(model, 'int8_full_fp32_io')
    assert not tc.float_kernels(ops) and len(tc.int8_kernels(ops)) >= 70


def test_split_heads_carry_their_batch_norm(exported):
    """The split 7x7 convs hold the BatchNorm after them, so int8 quantises
    normalised sums: no separate norm MUL/ADD, and the ReLU fused into the
    last partial sum of each conv."""
    ops = tc.list_ops(tc.convert_saved_model(
        exported['saved_model'], 'int8_full_fp32_io', exported['calibration']))
    tower = [op for op in ops if 'tower_depthwise_' in op.output_name]
    assert not [op for op in tower if 'tower_depthwise_norm' in op.output_name
                and op.name in ('MUL', 'ADD')]
    pieces = [op for op in tower if op.name == 'DEPTHWISE_CONV_2D']
    # 3 heads x 2 towers x (7x3 + 7x3 + 7x1), all int8.
    assert len(pieces) == 18 and all(op.outputs == ['int8'] for op in pieces)
    assert sum(op.name == 'ADD' and 'Relu' in op.output_name
               for op in tower) == 6


def test_full_int8_with_float_kernels_is_refused(exported):
    model = tc.convert_saved_model(exported['saved_model'], 'int8_full',
                                   exported['calibration'],
                                   denylisted_ops=['FULLY_CONNECTED'])
    ops = tc.list_ops(model)
    # The mask-embedding MLP's two, and the sparse heads' two slot-side
    # products (classifier kernel and bias of the mask-feature head).
    assert [op.name for op in tc.float_kernels(ops)] == ['FULLY_CONNECTED'] * 4
    with pytest.raises(tc.ExportError, match='full int8 but 4 multiply-add'):
        tc.check_model(model, 'int8_full')
    # Denylisting on purpose is allowed.
    tc.check_model(model, 'int8_full', denylisted_ops=['FULLY_CONNECTED'])


def test_refusals_and_names(exported):
    float_model = tc.convert_saved_model(exported['saved_model'])
    with pytest.raises(tc.ExportError, match='no int8'):
        tc.check_model(float_model, 'int8_full_fp32_io')
    with pytest.raises(tc.ExportError, match='quant_type'):
        tc.canonical_quant_type('int4')
    assert tc.canonical_quant_type('int8') == 'int8_fallback'
    assert tc.canonical_quant_type(None) == 'none'
    with pytest.raises(tc.ExportError, match='calibration'):
        tc.convert_saved_model(exported['saved_model'], 'int8_full')
    with pytest.raises(tc.ExportError, match='input_type tflite'):
        tc.export_tflite(exported['saved_model'],
                         str(exported['root'] / 'x.tflite'),
                         base_metadata=dict(exported['meta'], input={
                             'type': 'image_tensor', 'batch_size': 1}))
    flex = tc.OpInfo(0, 'CUSTOM', 'FlexErf', ['float32'], [], ['float32'])
    assert tc.custom_ops([flex]) == ['FlexErf']
    with pytest.raises(tc.ExportError, match='Flex/custom'):
        tc.check_model(_with_custom_opcode(float_model), 'none')
    with pytest.raises(KeyError, match='maskconver'):
        tc.read_tflite_metadata(float_model)  # not finalized: no metadata


def _with_custom_opcode(model):
    """The model with its first op code turned into a Flex op."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    m.operatorCodes[0].builtinCode = schema.BuiltinOperator.CUSTOM
    m.operatorCodes[0].deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    m.operatorCodes[0].customCode = b'FlexConv2D'
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def test_layer_norms_stay_float_in_int8(tmp_path):
    """conv -> LayerNorm -> conv -> conv: the norm's moments and batchnorm
    ops run in float, the convolutions before and after it in int8, and the
    result tracks float."""
    import tf_keras
    tf_keras.utils.set_random_seed(0)  # unseeded weights made the bound flaky
    inputs = tf_keras.Input([16, 16, 3], batch_size=1)
    x = tf_keras.layers.Conv2D(8, 3, padding='same', name='conv_a')(inputs)
    x = tf_keras.layers.LayerNormalization(epsilon=1e-6, name='norm')(x)
    x = tf_keras.layers.Conv2D(8, 1, activation='relu', name='conv_b')(x)
    x = tf_keras.layers.Conv2D(4, 1, name='conv_c')(x)
    # A fixed name: Keras uniquifies default model names per process.
    model = tf_keras.Model(inputs, x, name='ln_model')
    path = str(tmp_path / 'ln')
    tf.saved_model.save(model, path)
    rng = np.random.default_rng(0)
    calibration = [rng.uniform(-1, 1, [16, 16, 3]).astype(np.float32)
                   for _ in range(8)]
    float_ops = tc.list_ops(tc.convert_saved_model(path, 'none'))
    assert tc.layer_norm_scopes([op.output_name for op in float_ops]) == [
        'ln_model/norm']
    quantised = tc.convert_saved_model(path, 'int8_full_fp32_io', calibration)
    ops = tc.list_ops(quantised)
    norm_ops = [op for op in ops if op.output_name.startswith('ln_model/norm/')]
    assert {op.name for op in norm_ops} >= {'MEAN', 'SQUARED_DIFFERENCE',
                                            'RSQRT', 'SUB'}
    assert all(op.outputs == ['float32'] for op in norm_ops), norm_ops
    convs = [op for op in ops if op.name == 'CONV_2D']
    assert [op.inputs[0] for op in convs] == ['int8'] * 3
    interpreter = tc.make_interpreter(quantised)
    interpreter.allocate_tensors()
    for image in calibration[:3]:
        got, = tc.run_tflite(interpreter, image[None]).values()
        want = model(image[None]).numpy()
        # Relative RMS error: 1.2-2.0% over seeds 0-5; max error up to 5%.
        rms = np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2))
        assert rms < 0.035, rms
