"""The converter of official MaskConver YAMLs (`configs/from_reference.py`).

On the official files, vendored unchanged (tests/fixtures/reference_yamls):
- the mobile 256 / 640 px and the flagship YAML convert; the written files
  (comment header + config) load strictly into the printed experiment and
  build the model the reference builds (mobile: 3,441,897 trainable
  parameters; flagship: 57,854,601 weights, its ResNet-50 ConvNeXt-UNet
  55,205,440); mask weight, K, thresholds, batch sizes, learning rate,
  schedule and steps survive the round trip;
- every key of the file is accounted for exactly once (mapped, fixed,
  dropped or not carried), and the dropped / not carried ones are those
  listed here, with the header and the printed report naming them;
- against our hand translations in experiments/, the converted configs
  differ only where the reference file says something else.
Bad input: a key neither project has, the SpineNet-Seg backbone, a
MaskConver-Seg file, an unsupported fusion or value, and a reference default
that cannot be honoured each fail with the file, the key path and what was
expected; the CLI prints the experiment or the errors.
"""

import copy
import hashlib
import os

import numpy as np
import pytest
import tf_keras
import yaml

from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams

from maskconver_tf.configs import from_reference

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, 'fixtures', 'reference_yamls')
MOBILE_256 = os.path.join(FIXTURES,
                          'maskconver_mobilenetv3p5_rf_256_coco.yaml')
MOBILE_640 = os.path.join(FIXTURES,
                          'maskconver_mobilenetv3p5_rf_640_coco.yaml')
FLAGSHIP = os.path.join(FIXTURES, 'multiscale_maskconver_resnetufpn_coco.yaml')
MOBILE = 'maskconver_mobilenet_mh_coco'
FLAGSHIP_EXPERIMENT = 'maskconver_r50_convnext_unet_coco'
SOURCE_COMMIT = 'dc3384769fbf10280d56b505061bcd74f62e936d'
# git blob ids of the upstream files (equal bytes give equal ids).
BLOBS = {MOBILE_256: 'ab53f2d30e69e343a8a7e21878b702abfe6d2ad1',
         MOBILE_640: 'fd6bc6589bb6f56334626829fe53932770df648c',
         FLAGSHIP: '85e0cbed61eb177324f6ce4b3fed93d12b13871c'}
MOBILE_PARAMS = 3_441_897  # trainable; the reference README's 3.4M

FLAGSHIP_DROPPED = {
    'task.model.level', 'task.model.num_anchors',
    'task.model.panoptic_fusion_num_filters',
    'task.model.anchor.anchor_size', 'task.model.anchor.aspect_ratios',
    'task.model.anchor.num_scales',
    'task.model.per_pixel_embedding_head.decoder_min_level',
    'task.model.per_pixel_embedding_head.decoder_max_level',
    'task.losses.ignore_label', 'task.losses.use_groundtruth_dimension',
    'task.losses.top_k_percent_pixels_category',
    'task.losses.top_k_percent_pixels_instance',
    'task.train_data.num_examples', 'task.validation_data.num_examples',
    'task.train_data.parser.segmentation_groundtruth_padded_size',
    'task.train_data.parser.segmentation_resize_eval_groundtruth',
    'task.train_data.parser.segmentation_ignore_label',
    'task.validation_data.parser.segmentation_ignore_label',
    'task.train_data.decoder.simple_decoder.mask_binarize_threshold',
    'task.train_data.decoder.simple_decoder.regenerate_source_id',
    'task.validation_data.decoder.simple_decoder.mask_binarize_threshold',
    'task.validation_data.decoder.simple_decoder.regenerate_source_id',
    'task.validation_data.parser.aug_rand_hflip',
    'task.validation_data.parser.aug_scale_min',
    'task.validation_data.parser.aug_scale_max',
    'task.validation_data.parser.aug_type',
    'task.validation_data.parser.fpn_low_range',
    'task.validation_data.parser.fpn_high_range',
}
MOBILE_FIXED = {'task.model.panoptic_generator.rescale_predictions',
                'task.validation_data.parser.'
                'segmentation_resize_eval_groundtruth'}


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _leaves(node, path=''):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, f'{path}.{k}' if path else k)
    else:
        yield path


def _written(conversion, tmp_path, name):
    path = str(tmp_path / name)
    from_reference.write(conversion, path)
    return path


def _params(conversion, path):
    """The experiment loaded as the train CLI does: factory, then file."""
    params = hyperparams.override_params_dict(
        exp_factory.get_exp_config(conversion.experiment), path,
        is_strict=True)
    params.validate()
    return params


def _trainable(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


@pytest.fixture(scope='module')
def converted():
    return {p: from_reference.convert(p) for p in (MOBILE_256, MOBILE_640,
                                                   FLAGSHIP)}


def test_fixtures_are_the_official_files():
    for path, blob in BLOBS.items():
        with open(path, 'rb') as f:
            data = f.read()
        got = hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()
        assert got == blob, path
    with open(os.path.join(FIXTURES, 'README.md')) as f:
        notice = f.read()
    assert SOURCE_COMMIT in notice and 'Apache License, Version 2.0' in notice
    with open(os.path.join(FIXTURES, 'LICENSE')) as f:
        assert 'Apache License' in f.read()


@pytest.mark.parametrize('path,experiment,mapped,fixed,dropped', [
    (MOBILE_256, MOBILE, 79, 2, 0),
    (MOBILE_640, MOBILE, 79, 2, 0),
    (FLAGSHIP, FLAGSHIP_EXPERIMENT, 154, 14, 28)])
def test_every_key_is_accounted_for_once(converted, path, experiment, mapped,
                                         fixed, dropped):
    c = converted[path]
    assert c.experiment == experiment
    assert (len(c.mapped), len(c.fixed), len(c.dropped),
            len(c.not_carried)) == (mapped, fixed, dropped, 1)
    own = [e.path for e in c.entries if e.from_file]
    for leaf in _leaves(_load(path)):
        owners = [p for p in own if leaf == p or leaf.startswith(p + '.')]
        assert len(owners) == 1, (leaf, owners)
    assert len(own) == mapped + fixed + dropped + 1


def test_dropped_fixed_and_not_carried_keys(converted):
    flagship = converted[FLAGSHIP]
    assert {e.path for e in flagship.dropped} == FLAGSHIP_DROPPED
    assert {e.path for e in converted[MOBILE_256].fixed} == MOBILE_FIXED
    assert 'task.model.mask_decoder' in {e.path for e in flagship.fixed}
    for c, checkpoint in ((converted[MOBILE_256],
                           'maskconver_seg_mnv3p5rf_coco_200k/43437096'),
                          (flagship, 'resnetubn_fpn_seg_coco1024_1811se/'
                                     '48546144/ema_checkpoints')):
        (entry,) = c.not_carried
        assert (entry.path, entry.value) == ('task.init_checkpoint',
                                             checkpoint)
        assert 'internal' in entry.outcome.reason
        assert 'init_checkpoint' not in c.config['task']


def test_written_file_header_names_source_and_dropped_keys(converted,
                                                           tmp_path):
    c = converted[FLAGSHIP]
    path = _written(c, tmp_path, 'flagship.yaml')
    with open(path) as f:
        text = f.read()
    header = text[:text.index('\nruntime:')].splitlines()
    assert all(line.startswith('#') for line in header)
    assert FLAGSHIP in header[0]
    assert f'--experiment {FLAGSHIP_EXPERIMENT} --config_file {path}' in text
    for key in FLAGSHIP_DROPPED:
        assert sum(line.startswith(f'#   {key}: ') for line in header) == 1
    assert "#   task.init_checkpoint = 'resnetubn_fpn_seg" in text
    assert yaml.safe_load(text) == c.config


@pytest.mark.parametrize('path,size', [(MOBILE_256, 256), (MOBILE_640, 640)])
def test_mobile_values_survive_and_model_is_the_reference(converted, tmp_path,
                                                          path, size):
    c = converted[path]
    params = _params(c, _written(c, tmp_path, f'mobile_{size}.yaml'))
    task, model_cfg = params.task, params.task.model
    assert list(model_cfg.input_size) == [size, size, 3]
    assert (model_cfg.num_instances, model_cfg.embedding_size,
            model_cfg.num_classes, model_cfg.level) == (50, 256, 201, 3)
    assert model_cfg.backbone.type == 'mobilenet_trunk'
    trunk = model_cfg.backbone.mobilenet_trunk
    assert (trunk.model_id, trunk.output_stride) == ('MobileNetMultiAVGSeg',
                                                     16)
    assert model_cfg.decoder.type == 'aspp'
    assert list(model_cfg.decoder.aspp.dilation_rates) == [6, 12, 18]
    for head in (model_cfg.class_head, model_cfg.center_head,
                 model_cfg.mask_feature_head):
        assert (head.feature_fusion, head.level, head.low_level,
                head.low_level_num_filters, head.num_convs,
                head.depthwise_kernel_size) == ('sum', 4, 3, 256, 2, 7)
    assert model_cfg.mask_embedding.combination == 'product'
    assert model_cfg.norm_activation.use_sync_bn is True
    gen = model_cfg.panoptic_generator
    assert (list(gen.output_size), gen.object_mask_threshold,
            gen.small_area_threshold, gen.overlap_threshold) == (
                [640, 640], 0.01, 256, 0.7)
    assert (task.losses.mask_weight, task.losses.dice_weight,
            task.losses.l2_weight_decay) == (5.0, 5.0, 1e-5)
    assert (task.train_data.global_batch_size,
            task.validation_data.global_batch_size) == (64, 1)
    p = task.train_data.parser
    assert (p.aug_scale_min, p.aug_scale_max, p.aug_type, p.gaussian_iou,
            p.max_num_stuff_centers, p.center_type) == (0.1, 1.9, None, 0.7,
                                                        1, 'box')
    assert list(task.validation_data.parser
                .segmentation_groundtruth_padded_size) == [640, 640]
    assert task.init_checkpoint is None
    assert list(task.init_checkpoint_modules) == ['backbone', 'decoder']
    opt = params.trainer.optimizer_config
    assert (opt.optimizer.type, opt.optimizer.sgd.momentum) == ('sgd', 0.9)
    assert (opt.learning_rate.type, opt.learning_rate.cosine
            .initial_learning_rate, opt.learning_rate.cosine.decay_steps) == (
                'cosine', 0.04, 500000)
    assert opt.warmup.linear.warmup_steps == 2000
    t = params.trainer
    assert (t.train_steps, t.validation_steps, t.steps_per_loop,
            t.validation_interval, t.checkpoint_interval) == (
                500000, 5000, 100, 1000, 1000)
    assert params.runtime.distribution_strategy == 'tpu'
    tf_keras.utils.set_random_seed(0)
    model = task_factory.get_task(task).build_model()
    assert _trainable(model) == MOBILE_PARAMS


def test_flagship_values_survive_and_model_is_the_reference(converted,
                                                            tmp_path):
    c = converted[FLAGSHIP]
    params = _params(c, _written(c, tmp_path, 'flagship.yaml'))
    task, m = params.task, params.task.model
    assert (list(m.input_size), m.num_instances, m.embedding_size,
            m.min_level, m.max_level) == ([1280, 1280, 3], 256, 256, 3, 7)
    assert (m.backbone.type, m.backbone.resnet_unet.bn_trainable,
            list(m.backbone.resnet_unet.upsample_repeats),
            m.backbone.resnet_unet.stochastic_depth_drop_rate) == (
                'resnet_unet', False, [18, 1, 1], 0.1)
    fpn = m.decoder.maskconver_fpn
    assert (m.decoder.type, fpn.fusion_type, fpn.use_separable_conv) == (
        'maskconver_fpn', 'concat', True)
    assert (m.mask_feature_head.feature_fusion, m.mask_feature_head.level,
            m.class_head.num_convs, m.center_head.prediction_kernel_size) == (
                'pyramid_fusion', 2, 4, 1)
    assert (m.mask_embedding.combination,
            m.mask_embedding.mlp_hidden_size) == ('sum', 1024)
    assert (m.norm_activation.activation,
            m.norm_activation.norm_momentum) == ('gelu', 0.0)
    gen = m.panoptic_generator
    assert (list(gen.output_size), gen.object_mask_threshold,
            gen.small_area_threshold, gen.overlap_threshold) == (
                [640, 640], 0.2, 16, 0.75)
    assert (task.losses.mask_weight, task.losses.dice_weight,
            task.losses.l2_weight_decay) == (10.0, 10.0, 0.0)
    assert (task.train_data.global_batch_size,
            task.validation_data.global_batch_size) == (128, 16)
    p = task.train_data.parser
    assert (p.aug_scale_min, p.aug_scale_max, p.copypaste_frequency,
            p.copypaste_aug_scale_min, p.copypaste_aug_scale_max) == (
                0.05, 2.9, 0.5, 0.025, 1.5)
    assert (p.aug_type, p.mask_target_stride, p.center_type,
            p.stuff_centers) == ('panoptic_deeplab_policy', 2, 'centroid',
                                 'class')
    ranges = ([0, 100, 200, 400, 800], [100, 200, 400, 800, 12500000])
    for parser in (p, task.validation_data.parser):
        assert (list(parser.fpn_low_range),
                list(parser.fpn_high_range)) == ranges
    opt = params.trainer.optimizer_config
    adamw = opt.optimizer.adamw
    assert (opt.optimizer.type, adamw.weight_decay_rate,
            list(adamw.include_in_weight_decay),
            list(adamw.exclude_from_weight_decay),
            adamw.gradient_clip_norm) == ('adamw', 0.05,
                                          ['.*(kernel|weight):0$'], ['.*'],
                                          1.0)
    assert (opt.ema.average_decay, opt.ema.trainable_weights_only) == (
        0.99996, False)
    assert (opt.learning_rate.cosine.initial_learning_rate,
            opt.learning_rate.cosine.decay_steps,
            opt.warmup.linear.warmup_steps) == (0.001, 270000, 500)
    t = params.trainer
    assert (t.train_steps, t.validation_steps, t.validation_interval,
            t.steps_per_loop, t.best_checkpoint_eval_metric) == (
                270000, 312, 308, 25, 'panoptic_quality/All_pq')
    assert list(task.init_checkpoint_modules) == ['backbone']
    # The architecture does not depend on the input size: build at 128 px.
    params.task.model.input_size = [128, 128, 3]
    tf_keras.utils.set_random_seed(0)
    model = task_factory.get_task(params.task).build_model()
    assert model.backbone.count_params() == 55_205_440
    assert model.count_params() == 57_854_601


@pytest.mark.parametrize('path,hand,differences', [
    (MOBILE_256, 'maskconver_mobilenet_mh_coco_256.yaml', {
        # The reference restores both modules and sets every one of these.
        'task.init_checkpoint_modules': (['backbone', 'decoder'], 'all'),
        'task.losses.dice_weight': (5.0, None),  # None = mask_weight (5)
        'task.model.min_level': (2, 3), 'task.model.max_level': (6, 4),
        'task.model.norm_activation.use_sync_bn': (True, False),
        'task.train_data.prefetch_buffer_size': (8, None),
        'task.validation_data.global_batch_size': (1, 8),
        'task.validation_data.prefetch_buffer_size': (8, None),
        'task.validation_data.shuffle_buffer_size': (10000, 1000),
        'trainer.checkpoint_interval': (1000, 2000),
        'trainer.steps_per_loop': (100, 2000),
        'trainer.summary_interval': (1000, 2000),
        'trainer.validation_interval': (1000, 2000),
        'trainer.validation_steps': (5000, 625)}),
    (FLAGSHIP, 'maskconver_r50_convnext_unet_coco.yaml', {
        'task.init_checkpoint_modules': (['backbone'], 'backbone'),
        'task.train_data.input_path': (
            'datasets/coco/tfrecords/train-nocrowd',
            'coco/tfrecords/train-nocrowd*'),
        'task.validation_data.input_path': (
            'datasets/coco/tfrecords/val-nocrowd',
            'coco/tfrecords/val-nocrowd*'),
        'task.train_data.prefetch_buffer_size': (2, None),
        'task.validation_data.prefetch_buffer_size': (8, None),
        'task.validation_data.shuffle_buffer_size': (10000, 1000)}),
])
def test_differences_from_our_hand_translations(converted, path, hand,
                                                differences):
    c = converted[path]
    ours = hyperparams.override_params_dict(
        exp_factory.get_exp_config(c.experiment), c.config, is_strict=True)
    theirs = hyperparams.override_params_dict(
        exp_factory.get_exp_config(c.experiment),
        os.path.join(REPO, 'experiments', hand), is_strict=True)

    def flat(tree, prefix=''):
        out = {}
        for k, v in tree.items():
            key = f'{prefix}.{k}' if prefix else k
            out.update(flat(v, key) if isinstance(v, dict) and v
                       else {key: v})
        return out

    a, b = flat(ours.as_dict()), flat(theirs.as_dict())
    got = {k: (a.get(k), b.get(k)) for k in set(a) | set(b)
           if a.get(k) != b.get(k)}
    assert got == differences


def test_reference_defaults_fill_unset_keys():
    # A short single-scale file: the rest is maskconver_coco's defaults.
    raw = {'task': {'model': {'backbone': {'type': 'mobilenet'}},
                    'validation_data': {'parser': {
                        'segmentation_resize_eval_groundtruth': False}}}}
    c = from_reference.convert(raw, source='short.yaml')
    task = c.config['task']
    assert task['losses']['mask_weight'] == task['losses']['dice_weight'] == 10
    assert task['model']['num_instances'] == 100
    assert task['model']['class_head']['feature_fusion'] is None
    assert task['model']['decoder']['type'] == 'identity'
    # Model Garden's MobileNet default, not our trunk's MobileNet-MH.
    assert task['model']['backbone']['mobilenet_trunk']['model_id'] == (
        'MobileNetV2')
    parser = task['train_data']['parser']
    assert (parser['aug_type'], parser['max_num_stuff_centers'],
            parser['aug_scale_min']) == ('panoptic_deeplab_policy', 3, 0.5)
    lr = c.config['trainer']['optimizer_config']['learning_rate']['cosine']
    assert lr == {'initial_learning_rate': 0.08, 'decay_steps': 200000}
    # The public ResNet-50 checkpoint of the default is carried (a URL).
    assert task['init_checkpoint'].startswith('gs://cloud-tpu-checkpoints/')
    assert not c.dropped
    assert [e.path for e in c.mapped] == ['task.model.backbone.type']
    # Leaving the eval ground truth unset means the reference resizes it.
    del raw['task']['validation_data']
    with pytest.raises(from_reference.ConversionError) as e:
        from_reference.convert(raw, source='short.yaml')
    assert ('short.yaml: task.validation_data.parser.'
            'segmentation_resize_eval_groundtruth: is True; only False can be '
            'honoured') in str(e.value)
    assert 'the default of maskconver_coco' in str(e.value)
    # The reference's default backbone is internal: a file must name one.
    _fails({'runtime': {'num_gpus': 0}},
           'bad.yaml: task.model.backbone.type: is unset')


def _fails(raw, *expected):
    with pytest.raises(from_reference.ConversionError) as e:
        from_reference.convert(raw, source='bad.yaml')
    text = str(e.value)
    for piece in expected:
        assert piece in text, text
    return e.value


def test_unknown_keys_fail_naming_file_and_key():
    raw = _load(MOBILE_256)
    raw['task']['model']['mask_embeding_head'] = {'num_convs': 2}
    raw['trainer']['optimizer_config']['optimizer']['sgd']['momentun'] = 0.9
    error = _fails(raw, 'bad.yaml: task.model.mask_embeding_head.num_convs: '
                   'unknown key',
                   'bad.yaml: trainer.optimizer_config.optimizer.sgd.momentun:'
                   ' unknown key: neither the reference nor '
                   'maskconver_mobilenet_mh_coco has it')
    assert len(error.problems) == 2


def test_models_that_cannot_be_built_here_fail():
    raw = _load(MOBILE_640)
    raw['task']['model']['backbone'] = {'type': 'spinenet_seg',
                                        'spinenet_seg': {'model_id': '49'}}
    raw['task']['model']['per_pixel_embedding_head'][
        'feature_fusion'] = 'panoptic_fpn_fusion'
    raw['task']['model']['panoptic_generator']['rescale_predictions'] = False
    error = _fails(
        raw, "task.model.backbone.type: is 'spinenet_seg'",
        'Google-internal',
        "task.model.per_pixel_embedding_head.feature_fusion: is "
        "'panoptic_fpn_fusion'",
        'task.model.panoptic_generator.rescale_predictions: is False; only '
        'True can be honoured')
    assert len(error.problems) == 3

    flagship = _load(FLAGSHIP)
    del flagship['task']['model']['mask_decoder']
    flagship['task']['train_data']['parser']['aug_scale_max'] = 1.5
    flagship['task']['train_data']['parser']['aug_type']['autoaug'][
        'augmentation_name'] = 'v0'
    _fails(flagship, 'task.model.mask_decoder: is ',
           'the default of multiscale_maskconver_coco',
           'task.train_data.parser.aug_scale_max: is 1.5: with copy-paste',
           "task.train_data.parser.aug_type: autoaug.augmentation_name 'v0' "
           'moves pixels')


def test_maskconver_seg_files_fail():
    raw = _load(MOBILE_256)
    raw['task']['train_data'] = {'output_size': [640, 640],
                                 'global_batch_size': 32}
    _fails(raw, 'bad.yaml: task.train_data.output_size: a MaskConver-Seg',
           'panoptic task only')


def test_cli_prints_experiment_and_report(tmp_path, capsys):
    out = str(tmp_path / 'ours.yaml')
    assert from_reference.main([FLAGSHIP, '--output', out]) == 0
    printed = capsys.readouterr().out
    assert f'experiment: {FLAGSHIP_EXPERIMENT}\n' in printed
    assert 'dropped: task.model.num_anchors: never read\n' in printed
    assert sum(line.startswith('dropped: ') for line in
               printed.splitlines()) == len(FLAGSHIP_DROPPED)
    assert 'not carried: task.init_checkpoint = ' in printed
    assert os.path.exists(out)

    bad = tmp_path / 'bad.yaml'
    raw = copy.deepcopy(_load(MOBILE_256))
    raw['task']['model']['embedding_sizes'] = 128
    bad.write_text(yaml.safe_dump(raw))
    assert from_reference.main([str(bad), '--output', out + '2']) == 1
    err = capsys.readouterr().err
    assert f'{bad}: task.model.embedding_sizes: unknown key' in err
    assert not os.path.exists(out + '2')
