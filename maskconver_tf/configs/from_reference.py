r"""Converts an official MaskConver experiment YAML into one of ours.

    python -m maskconver_tf.configs.from_reference REFERENCE.yaml \
        --output OURS.yaml [--reference_experiment auto|maskconver_coco|
                            multiscale_maskconver_coco]

REFERENCE.yaml is an experiment file of the official project
(tensorflow/models `official/projects/maskconver/configs/experiments/`, e.g.
`maskconver_mobilenetv3p5_rf_256_coco.yaml`). OURS.yaml loads strictly into
the experiment the command prints, with the same model and recipe:

    python -m maskconver_tf.train --experiment <printed> \
        --config_file OURS.yaml --params_override 'task.train_data...' ...

Single-scale files (the reference's `maskconver_coco`, e.g. the mobile
MobileNet-MH ones) become `maskconver_mobilenet_mh_coco`; multi-scale files
(`multiscale_maskconver_coco`, e.g. the ResNet-50 ConvNeXt-UNet flagship)
become `maskconver_r50_convnext_unet_coco`. The kind is told by the keys
only the multi-scale parser has (FPN level ranges, mask target level)
unless `--reference_experiment` names it.

A reference file means "the reference experiment's defaults, overridden by
these keys", so the keys it leaves unset take the defaults of that
experiment (`REFERENCE_DEFAULTS`, read from `configs/maskconver.py` and
`configs/multiscale_maskconver.py` of the reference) before conversion.
Every key then ends in exactly one of (the tables of `_rules`):
- mapped: written to our field(s) with the same meaning (renamed, e.g.
  `mask_embedding_head` -> `center_head`, or under the same path where both
  projects use Model Garden's config: runtime, trainer, data input);
- fixed: our code always does what the value asks (e.g.
  `rescale_predictions: true`); other values are an error;
- dropped: the reference never reads it, or reads it only for outputs it
  throws away (Mask R-CNN anchors and RPN targets); listed one per line;
- not carried: cannot be honoured here, and leaving it out keeps the model
  and the recipe (the internal init checkpoints: start from your own);
  listed with the reason;
- an error: a key neither project knows, or a value whose result here
  would not be the same model or recipe (SpineNet-Seg, the MaskConver-Seg
  semantic task, a second mask decoder, ...). All errors are reported
  together, each with the file, the key path and what was expected.
Values the reference fixes in code or by its data (class embedding by
product or sum, the MLP width, center and stuff-center policies, raw COCO
ids, dice weight = mask weight, ...) are written too, so that the file does
not depend on our experiment's defaults.
"""

import argparse
import copy
import dataclasses
import math
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.vision.ops import augment

from maskconver_tf import registry_imports  # noqa: F401  (registrations)
from maskconver_tf.dataloaders import maskconver_input

SINGLE = 'maskconver_coco'
MULTI = 'multiscale_maskconver_coco'
OUR_EXPERIMENT = {SINGLE: 'maskconver_mobilenet_mh_coco',
                  MULTI: 'maskconver_r50_convnext_unet_coco'}
TRAIN, VAL = 'task.train_data', 'task.validation_data'
DATA = (TRAIN, VAL)
# Reference head name -> ours.
HEADS = {'class_head': 'class_head', 'mask_embedding_head': 'center_head',
         'per_pixel_embedding_head': 'mask_feature_head'}
# Reference feature fusion -> ours; any other name falls through to
# decoder[level] in the reference head, as our None does.
FUSIONS = {'deeplabv3plus': 'concat', 'deeplabv3plus_sum_to_merge': 'sum',
           'pyramid_fusion': 'pyramid_fusion', None: None}
COCO_CHANNELS, COCO_THING_CHANNELS = 201, 91
# Model Garden's AutoAugment constants, the ones our parser builds it with.
AUTOAUG_CONSTS = {'cutout_const': 100, 'translate_const': 250}
COPYPASTE_KEYS = ('copypaste_frequency', 'aug_scale_min', 'aug_scale_max',
                  'copypaste_aug_scale_min', 'copypaste_aug_scale_max')
# Config nodes whose `type` selects one child: the others are never read.
ONEOFS = ('task.model.backbone', 'task.model.decoder', f'{TRAIN}.decoder',
          f'{VAL}.decoder', 'trainer.optimizer_config.optimizer',
          'trainer.optimizer_config.learning_rate',
          'trainer.optimizer_config.warmup')
# Converted as a whole (their keys interact).
GROUPS = ('task.model.mask_decoder', f'{TRAIN}.parser.aug_type',
          f'{VAL}.parser.aug_type', f'{TRAIN}.parser.copypaste',
          f'{VAL}.parser.copypaste')
# Keys a MaskConver-Seg data config (SegDataConfig) has at the data level.
SEG_DATA_KEYS = ('output_size', 'crop_size', 'resize_eval_groundtruth',
                 'groundtruth_padded_size', 'aug_policy',
                 'preserve_aspect_ratio')
# Our parser fields that only shape targets; the reference's eval parser
# builds none, ours builds them for the validation loss: they follow train.
TARGET_FIELDS = ('gaussian_iou', 'max_num_stuff_centers', 'min_stuff_area',
                 'stuff_dilation', 'center_type', 'stuff_centers',
                 'fpn_low_range', 'fpn_high_range', 'mask_target_stride')


class ConversionError(ValueError):
    """The reference file cannot be converted; `problems` lists why."""

    def __init__(self, source: str, problems: List[str]):
        self.source = source
        self.problems = list(problems)
        lines = '\n'.join(f'  {source}: {p}' for p in self.problems)
        super().__init__(f'{source}: cannot convert ({len(self.problems)} '
                         f'problem(s)):\n{lines}')


class _Problem(Exception):
    """One key that cannot be converted (message: what was expected)."""


# Outcomes ----------------------------------------------------------------
@dataclasses.dataclass
class Mapped:
    """Written to our config: (our path, value) pairs, and why if not plain."""
    writes: List[Tuple[str, Any]]
    note: str = ''


@dataclasses.dataclass
class Fixed:
    """Our code always does what the value asks; nothing to write."""
    reason: str


@dataclasses.dataclass
class Dropped:
    """The reference never reads it (or only for outputs it discards)."""
    reason: str


@dataclasses.dataclass
class NotCarried:
    """Cannot be honoured here; the model and recipe stay the same."""
    reason: str


@dataclasses.dataclass
class Entry:
    """One reference key and what became of it."""
    path: str
    value: Any
    outcome: Any
    from_file: bool


# Rule constructors -------------------------------------------------------
# A rule is fn(value, ctx, key, rest) -> outcome; `key` is the table entry
# it matched and `rest` the remainder of the path below it ('' if exact).
Rule = Callable[[Any, '_Context', str, str], Any]


def same() -> Rule:
    """The same path in ours (Model Garden configs both projects use)."""
    return lambda v, ctx, key, rest: Mapped([(key + rest, v)])


def to(*targets: str, convert: Optional[Callable] = None) -> Rule:
    """Our path(s) (with the remainder appended), optionally converted."""
    def rule(v, ctx, key, rest):
        value = convert(v) if convert else v
        return Mapped([(t + rest, value) for t in targets])
    return rule


def fixed(expected, reason: str) -> Rule:
    """Ours always behaves as `expected`; any other value is an error."""
    def rule(v, ctx, key, rest):
        if not _equal(v, expected):
            raise _Problem(f'is {v!r}; only {expected!r} can be honoured '
                           f'({reason})')
        return Fixed(reason)
    return rule


def drop(reason: str) -> Rule:
    """Never read by the reference: listed, not written."""
    return lambda v, ctx, key, rest: Dropped(reason)


def _equal(a, b):
    """Value equality for config values (1 == 1.0, True != 1)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


# Rules needing more than one key ------------------------------------------
def _backbone_type(v, ctx, key, rest):
    """Backbone kind; MobileNet becomes our trunk, SpineNet-Seg fails."""
    if v == 'spinenet_seg':
        raise _Problem("is 'spinenet_seg': the SpineNet-Seg backbone is "
                       'Google-internal (its config and builder are not '
                       'public), so no one outside can build that model')
    if v == 'mobilenet':
        return Mapped([(key, 'mobilenet_trunk')],
                      'Model Garden MobileNet without its classification '
                      'tail (global pool + 1x1 conv, unused by MaskConver)')
    return Mapped([(key, v)])


def feature_fusion(target: str) -> Rule:
    """Reference fusion name -> ours, written to `target`."""
    def rule(v, ctx, key, rest):
        if v == 'panoptic_fpn_fusion':
            names = sorted(k for k in FUSIONS if k)
            raise _Problem("is 'panoptic_fpn_fusion': our heads fuse by "
                           "'sum', 'concat' or 'pyramid_fusion' only "
                           f'(expected one of {names} or null)')
        if v in FUSIONS:
            return Mapped([(target, FUSIONS[v])])
        if isinstance(v, str):
            # The reference head reads decoder[level] for any other name.
            return Mapped([(target, None)], f'{v!r} is no fusion in the '
                          'reference head (it reads decoder[level]): '
                          'written as null')
        raise _Problem(f'is {v!r}; expected a fusion name or null')
    return rule


def _mask_decoder(v, ctx, key, rest):
    """Only 'no second decoder' exists here (multi-scale)."""
    if ctx.kind == SINGLE:
        return Dropped('the single-scale model never builds a mask decoder')
    if v is not None:
        raise _Problem(f'is {v!r}: a second decoder for the mask features '
                       'does not exist here (expected null, the flagship\'s '
                       'value); the reference default is an identity '
                       'decoder, so set it to null explicitly')
    return Fixed('no second decoder: the mask-feature head reads the '
                 'decoder')


def _init_checkpoint(v, ctx, key, rest):
    """Public paths (URL or absolute) are kept; internal ones are not."""
    if not v:
        return Mapped([(key, None)])
    if '://' in v or os.path.isabs(v):
        return Mapped([(key, v)], 'restored by module name; a checkpoint of '
                      'the reference model must have matching variables')
    return NotCarried('an internal checkpoint of the reference authors (a '
                      'path on their storage, not public); set '
                      'task.init_checkpoint to your own, e.g. with '
                      '--params_override (expect a lower PQ from scratch)')


def _init_checkpoint_modules(v, ctx, key, rest):
    """The modules to restore, in our spelling ('all' or a list)."""
    modules = [v] if isinstance(v, str) else list(v or [])
    unknown = [m for m in modules if m not in ('all', 'backbone', 'decoder')]
    if unknown:
        raise _Problem(f'is {v!r}; expected "all" or a list of backbone, '
                       f'decoder (unknown: {unknown})')
    if not modules:
        return Dropped('an empty list restores nothing')
    return Mapped([(key, 'all' if modules == ['all'] else modules)])


def _num_classes(v, ctx, key, rest):
    """Class channels; anything but COCO's needs task.dataset."""
    note = ''
    if v != COCO_CHANNELS:
        note = (f'{v} channels is not COCO\'s {COCO_CHANNELS}: set '
                'task.dataset to the panoptic JSON of your data')
    return Mapped([(key, v)], note)


def _num_thing_classes(v, ctx, key, rest):
    """Checked against the COCO split; ours takes it from task.dataset."""
    if ctx.get('task.model.num_classes') == COCO_CHANNELS and \
            v != COCO_THING_CHANNELS:
        raise _Problem(f'is {v!r}; with COCO\'s {COCO_CHANNELS} channels '
                       f'the things are ids 1-90 (expected '
                       f'{COCO_THING_CHANNELS}), which task.dataset: coco '
                       'gives')
    return Fixed('the thing / stuff split comes from task.dataset (COCO: '
                 'ids 1-90 are things)')


def _num_categories(v, ctx, key, rest):
    """The PQ evaluator's size: ours follows task.dataset."""
    n = ctx.get('task.model.num_classes')
    if v != n:
        raise _Problem(f'is {v!r}; our evaluator is sized from task.dataset '
                       f'as the model (expected model.num_classes = {n})')
    return Fixed('sized from task.dataset (COCO: 201 = largest id + 1)')


def _is_thing(v, ctx, key, rest):
    """Evaluator thing flags: must agree with num_thing_classes."""
    n = ctx.get('task.model.num_classes')
    things = ctx.get('task.model.num_thing_classes')
    expected = [0 < i < things for i in range(n)]
    if not _equal([bool(x) for x in v], expected):
        raise _Problem(f'disagrees with the model\'s num_thing_classes '
                       f'{things}; ours takes thing flags from task.dataset '
                       f'(expected ids 1..{things - 1} to be things)')
    return Fixed('thing flags come from task.dataset')


def _single_scale_max_level(v, ctx, key, rest):
    """Decoder levels; the padded input size must come out the same."""
    # The reference pads inputs to a multiple of 2^max_level; our
    # single-scale parser to one of 2^max(level, 6).
    size = ctx.get('task.model.input_size')[:2]
    level = ctx.get('task.model.level')
    ref = [math.ceil(s / 2 ** v) * 2 ** v for s in size]
    ours = [math.ceil(s / 2 ** max(level, 6)) * 2 ** max(level, 6)
            for s in size]
    if ref != ours:
        raise _Problem(f'is {v}: the reference pads {size} to {ref}, ours '
                       f'to {ours} (expected a max_level that gives the '
                       'same padded size, e.g. 6)')
    return Mapped([(key, v)])


def _mask_target_level(v, ctx, key, rest):
    """Mask targets at 2^level: our stride."""
    return Mapped([(f'{TRAIN}.parser.mask_target_stride', 2 ** int(v))],
                  f'mask targets at stride 2^{v}')


def _max_num_instances(v, ctx, key, rest):
    """Target slots: ours are the K proposals."""
    k = ctx.get('task.model.num_instances')
    if v != k:
        raise _Problem(f'is {v}: ours has one K for target slots and '
                       f'proposals (expected model.num_instances = {k})')
    return Fixed('K = model.num_instances for targets and proposals')


def _multiscale_aug_scale(v, ctx, key, rest):
    """The parser's jitter; with copy-paste it must be the identity."""
    # With copy-paste on, the reference jitters the main image in the
    # copy-paste step (copypaste.aug_scale_*) and the parser jitters again.
    if ctx.get(f'{TRAIN}.parser.copypaste') is None:
        return Mapped([(key, v)])
    if not _equal(v, 1.0):
        raise _Problem(f'is {v}: with copy-paste the main image is jittered '
                       'by parser.copypaste.aug_scale_min/max; a second '
                       'jitter here has no equivalent (expected 1.0)')
    return Fixed('the main image is jittered once, by '
                 'parser.copypaste.aug_scale_min/max')


def _copypaste(v, ctx, key, rest):
    """The copy-paste step: its frequency, sizes and main-image jitter."""
    p = f'{TRAIN}.parser'
    if ctx.kind == SINGLE:
        return Dropped('the single-scale task has no copy-paste')
    if v is None:
        return Mapped([(f'{p}.copypaste_frequency', 0.0)], 'copy-paste off')
    unknown = sorted(set(v) - set(COPYPASTE_KEYS))
    if unknown:
        raise _Problem(f'has unknown keys {unknown}; expected '
                       f'{list(COPYPASTE_KEYS)}')
    return Mapped([(f'{p}.{k}', v[k]) for k in COPYPASTE_KEYS if k in v],
                  'its aug_scale_min/max are the main image\'s jitter, '
                  'written as parser.aug_scale_min/max')


def _aug_type(v, ctx, key, rest):
    """Model Garden's Augmentation OneOf -> our photometric policy name."""
    target = key  # the same path in ours, as a policy name
    if v is None or v.get('type') is None:
        return Mapped([(target, None)])
    if v['type'] != 'autoaug':
        raise _Problem(f"type is {v['type']!r}; our parser applies only "
                       "AutoAugment (expected 'autoaug' or null)")
    autoaug = dict(v.get('autoaug') or {})
    name = autoaug.pop('augmentation_name', 'v0')
    for k, value in autoaug.items():
        if k not in AUTOAUG_CONSTS:
            raise _Problem(f'autoaug.{k} is an unknown key; expected '
                           f'augmentation_name, {", ".join(AUTOAUG_CONSTS)}')
        if not _equal(value, AUTOAUG_CONSTS[k]):
            raise _Problem(f'autoaug.{k} is {value}; our parser builds '
                           f'AutoAugment with {k} {AUTOAUG_CONSTS[k]}')
    try:
        policies = augment.AutoAugment(augmentation_name=name).policies
    except ValueError as e:
        raise _Problem(f'autoaug.augmentation_name {name!r}: {e}') from None
    ops = {op[0] for sub in policies for op in sub}
    # pylint: disable=protected-access
    moving = sorted(ops - maskconver_input._PHOTOMETRIC_OPS)
    # pylint: enable=protected-access
    if moving:
        raise _Problem(f'autoaug.augmentation_name {name!r} moves pixels '
                       f'({moving}) without the masks; our parser takes '
                       "photometric policies only (e.g. "
                       "'panoptic_deeplab_policy')")
    return Mapped([(target, name)])


def _include_in_weight_decay(v, ctx, key, rest):
    """AdamW's decay patterns, always a list."""
    if isinstance(v, str):
        # Model Garden iterates it: a bare string would be one pattern per
        # character ('.' matches every name).
        return Mapped([(key, [v])], 'a single pattern, written as a list')
    return Mapped([(key, v)])


def _exclude_from_weight_decay(v, ctx, key, rest):
    """AdamW's exclusions; null next to an include list means "the rest"."""
    include = ctx.get('trainer.optimizer_config.optimizer.adamw.'
                      'include_in_weight_decay')
    if v is None and include:
        return Mapped([(key, ['.*'])],
                      'the reference names only the include pattern, so '
                      'the variables it matches are the ones meant to decay; '
                      'Model Garden would decay the rest as well without an '
                      'exclude list, hence [".*"] (as in '
                      'maskconver_r50_convnext_unet_coco)')
    return Mapped([(key, v)])


def _distribution_strategy(v, ctx, key, rest):
    """Kept; a TPU file needs another strategy off TPU."""
    note = ''
    if v == 'tpu':
        note = ('the reference trains on a TPU slice; elsewhere override '
                'runtime.distribution_strategy (mirrored, one_device)')
    return Mapped([(key, v)], note)


def _optimizer_type(v, ctx, key, rest):
    """The optimizer kind (the multi-scale default has none)."""
    if v is None:
        raise _Problem('is unset: the reference experiment has no default '
                       'optimizer (expected e.g. sgd or adamw)')
    return Mapped([(key, v)])


# The rule tables ---------------------------------------------------------
def _data_rules(kind) -> Dict[str, Rule]:
    """Rules of task.train_data / task.validation_data."""
    r = {}
    # Model Garden's DataConfig fields, and file_type of its detection ones.
    base = [f.name for f in dataclasses.fields(cfg.DataConfig)] + [
        'file_type']
    eval_only = 'read only by the eval parser'
    for d in DATA:
        for name in base:
            r[f'{d}.{name}'] = same()
        r[f'{d}.dtype'] = to(f'{d}.dtype', f'{d}.parser.dtype')
        r[f'{d}.num_examples'] = drop('used by Mask R-CNN\'s COCO '
                                      'annotation file only')
        r[f'{d}.weights'] = fixed(None, 'one input, no weighted mixture')
        dec = f'{d}.decoder'
        r[f'{dec}.type'] = to(dec + '.type', convert=_decoder_type)
        sd = f'{dec}.simple_decoder'
        r[f'{sd}.include_panoptic_masks'] = fixed(
            True, 'the panoptic masks are always decoded')
        r[f'{sd}.mask_binarize_threshold'] = drop(
            'never read (the decoder passes None to Model Garden\'s)')
        r[f'{sd}.regenerate_source_id'] = drop(
            'changes only the source_id string, which PQ does not read')
        r[f'{sd}.attribute_names'] = drop('never passed to the decoder')
        for k in ('panoptic_category_mask_key', 'panoptic_instance_mask_key'):
            r[f'{sd}.{k}'] = to(f'{dec}.{k}')
        p = f'{d}.parser'
        r[f'{p}.panoptic_ignore_label'] = fixed(
            0, 'padding and void are 0 in the panoptic ground truth')
        r[f'{p}.segmentation_ignore_label'] = drop(
            'pads the semantic mask, which neither targets nor PQ read')
        r[f'{p}.aug_type'] = _aug_type
        r[f'{p}.copypaste'] = _copypaste
        for k in ('aug_rand_vflip', 'num_channels', 'match_threshold',
                  'unmatched_threshold'):
            r[f'{p}.{k}'] = drop('not passed to the parser by the task')
        for k in ('rpn_match_threshold', 'rpn_unmatched_threshold',
                  'rpn_batch_size_per_im', 'rpn_fg_fraction'):
            r[f'{p}.{k}'] = drop('RPN targets, which the task discards')
        r[f'{p}.mask_crop_size'] = drop(
            'instance-mask crops, which the task discards')
        r[f'{p}.skip_crowd_during_training'] = drop(
            'filters the Mask R-CNN boxes only; crowd is void in the '
            '-nocrowd TFRecords (create_tfrecords --skip_crowd)')
        for k in ('pad', 'keep_aspect_ratio'):
            r[f'{p}.{k}'] = fixed(True, 'inputs are resized keeping the '
                                  'aspect ratio and padded')
        if kind == SINGLE:
            r[f'{p}.max_num_instances'] = drop(
                'not passed: the task uses model.num_instances')
            r[f'{p}.include_panoptic_masks'] = fixed(
                True, 'targets come from the panoptic masks')
        else:
            r[f'{p}.include_panoptic_masks'] = drop(
                'not passed by the multi-scale task')
    tp, vp = f'{TRAIN}.parser', f'{VAL}.parser'
    for k in ('aug_rand_hflip', 'fpn_low_range', 'fpn_high_range'):
        r[f'{tp}.{k}'] = same()
    r[f'{tp}.gaussaian_iou'] = to(f'{tp}.gaussian_iou')  # (sic)
    r[f'{tp}.segmentation_resize_eval_groundtruth'] = drop(eval_only)
    r[f'{tp}.segmentation_groundtruth_padded_size'] = drop(eval_only)
    if kind == SINGLE:
        for k in ('aug_scale_min', 'aug_scale_max', 'max_num_stuff_centers'):
            r[f'{tp}.{k}'] = same()
    else:
        for k in ('aug_scale_min', 'aug_scale_max'):
            r[f'{tp}.{k}'] = _multiscale_aug_scale
        r[f'{tp}.max_num_instances'] = _max_num_instances
        r[f'{tp}.mask_target_level'] = _mask_target_level
    no_targets = ('the eval parser neither augments nor builds targets '
                  '(ours builds them as train does, for the validation loss)')
    for k in ('aug_rand_hflip', 'aug_scale_min', 'aug_scale_max', 'aug_type',
              'gaussaian_iou', 'max_num_stuff_centers', 'fpn_low_range',
              'fpn_high_range', 'max_num_instances', 'mask_target_level',
              'copypaste'):
        r[f'{vp}.{k}'] = drop(no_targets)
    r[f'{vp}.segmentation_resize_eval_groundtruth'] = fixed(
        False, 'the eval ground truth stays at its original size, padded to '
        'segmentation_groundtruth_padded_size')
    r[f'{vp}.segmentation_groundtruth_padded_size'] = same()
    return r


def _decoder_type(v):
    """The reference's only decoder reads what our tfrecord one reads."""
    if v != 'simple_decoder':
        raise _Problem(f"is {v!r}; expected 'simple_decoder' (Model Garden "
                       'panoptic TFRecords, our tfrecord decoder)')
    return 'tfrecord'


def _model_rules(kind) -> Dict[str, Rule]:
    """Rules of task.model."""
    m = 'task.model'
    r = {
        f'{m}.input_size': same(),
        f'{m}.num_classes': _num_classes,
        f'{m}.num_thing_classes': _num_thing_classes,
        f'{m}.num_instances': same(),
        f'{m}.embedding_size': same(),
        f'{m}.padded_output_size': to(
            f'{m}.panoptic_generator.output_size'),
        f'{m}.min_level': same(),
        f'{m}.max_level': (_single_scale_max_level if kind == SINGLE
                           else same()),
        f'{m}.norm_activation': same(),
        f'{m}.backbone': same(),
        f'{m}.backbone.type': _backbone_type,
        f'{m}.backbone.mobilenet': to(f'{m}.backbone.mobilenet_trunk'),
        # Reached only when backbone.type selects it, which is refused.
        f'{m}.backbone.spinenet_seg': drop('settings of the refused '
                                           'spinenet_seg backbone'),
        f'{m}.decoder': same(),
        f'{m}.mask_decoder': _mask_decoder,
        f'{m}.anchor': drop('anchors of the Mask R-CNN RPN targets, which '
                            'the task discards' if kind == SINGLE else
                            'never read by the multi-scale task'),
        f'{m}.num_anchors': drop('never read'),
        f'{m}.panoptic_fusion_num_filters': drop('never read'),
        f'{m}.panoptic_generator.object_mask_threshold': same(),
        f'{m}.panoptic_generator.small_area_threshold': same(),
        f'{m}.panoptic_generator.overlap_threshold': same(),
        f'{m}.panoptic_generator.rescale_predictions': fixed(
            True, 'predictions are mapped back to the original image '
            'whenever image_info is known'),
        f'{m}.panoptic_generator.use_hardware_optimization': fixed(
            False, 'the standard merge (the on-device variant is no config '
            'field here)'),
    }
    if kind == SINGLE:
        r[f'{m}.level'] = same()
    else:
        r[f'{m}.level'] = drop('stored by the multi-scale parser, never '
                               'used (centers go to FPN levels)')
    # Heads on one level (the others are shared over the FPN levels).
    single_level = (set(HEADS) if kind == SINGLE
                    else {'per_pixel_embedding_head'})
    for ref in HEADS:
        ours = f'{m}.{HEADS[ref]}'
        head = f'{m}.{ref}'
        r[head] = to(ours)
        if ref in single_level:
            r[f'{head}.feature_fusion'] = feature_fusion(
                f'{ours}.feature_fusion')
            r[f'{head}.logit_activation'] = drop('not read by the MaskConver '
                                                 'head factory')
            for k in ('decoder_min_level', 'decoder_max_level'):
                r[f'{head}.{k}'] = drop('read only by panoptic_fpn_fusion')
        else:
            r[f'{head}.upsample_factor'] = fixed(
                1, 'the shared multi-scale heads do not upsample')
    return r


def _rules(kind) -> Dict[str, Rule]:
    """Reference key (or key prefix) -> rule, for one reference kind."""
    r = {
        'runtime': same(),
        'runtime.distribution_strategy': _distribution_strategy,
        'trainer': same(),
        'trainer.optimizer_config.optimizer.type': _optimizer_type,
        'trainer.optimizer_config.optimizer.adamw.include_in_weight_decay':
            _include_in_weight_decay,
        'trainer.optimizer_config.optimizer.adamw.exclude_from_weight_decay':
            _exclude_from_weight_decay,
        'task.init_checkpoint': _init_checkpoint,
        'task.init_checkpoint_modules': _init_checkpoint_modules,
        'task.name': same(),
        'task.differential_privacy_config': same(),
        'task.allow_image_summary': same(),
        'task.losses.alpha': to('task.losses.focal_alpha'),
        'task.losses.beta': to('task.losses.focal_beta'),
        'task.losses.mask_weight': same(),
        'task.losses.l2_weight_decay': same(),
        'task.losses.loss_weight': same(),
        'task.panoptic_quality_evaluator.num_categories': _num_categories,
        'task.panoptic_quality_evaluator.is_thing': _is_thing,
        'task.panoptic_quality_evaluator.report_per_class_metrics':
            to('task.evaluation.report_per_class_pq'),
    }
    for k in ('ignore_label', 'use_groundtruth_dimension',
              'top_k_percent_pixels_category',
              'top_k_percent_pixels_instance'):
        r[f'task.losses.{k}'] = drop('not read by the MaskConver losses')
    for k in ('ignored_label', 'max_instances_per_category', 'offset',
              'rescale_predictions'):
        r[f'task.panoptic_quality_evaluator.{k}'] = to(f'task.evaluation.{k}')
    r.update(_model_rules(kind))
    r.update(_data_rules(kind))
    return r


RULES = {SINGLE: _rules(SINGLE), MULTI: _rules(MULTI)}

# Values the reference fixes in code or by its data, per kind (our paths).
CODE_FIXED = {
    SINGLE: {
        'task.dataset': 'coco',
        'task.model.mask_embedding.combination': 'product',
        'task.model.mask_embedding.mlp_hidden_size': 0,  # = embedding_size
        'task.model.mask_embedding.use_class_embedding': True,
        'task.model.proposal_generator.peak_kernel_size': 3,
        'task.model.proposal_generator.peak_error': 1e-6,
        'task.losses.dice_mode': 'global',
        'task.losses.center_weight': 1.0,
        'task.losses.class_weight': 0.0,
        'task.model.panoptic_generator.duplicate_iou_threshold': None,
        f'{TRAIN}.parser.center_type': 'box',
        f'{TRAIN}.parser.min_stuff_area': 1024,
        f'{TRAIN}.parser.stuff_dilation': 61,  # three 21x21 max-pools
        f'{TRAIN}.parser.mask_target_stride': 1,
    },
    MULTI: {
        'task.dataset': 'coco',
        'task.model.mask_embedding.combination': 'sum',
        'task.model.mask_embedding.mlp_hidden_size': 1024,
        'task.model.mask_embedding.use_class_embedding': True,
        'task.model.proposal_generator.peak_kernel_size': 3,
        'task.model.proposal_generator.peak_error': 1e-6,
        'task.losses.dice_mode': 'global',
        'task.losses.center_weight': 1.0,
        'task.losses.class_weight': 0.0,
        'task.model.panoptic_generator.duplicate_iou_threshold': None,
        f'{TRAIN}.parser.center_type': 'centroid',
        f'{TRAIN}.parser.stuff_centers': 'class',
        # The copy-paste step's second stream (copypaste.py).
        f'{TRAIN}.parser.copypaste_shuffle_buffer_size': 1000,
    },
}

# Reference experiment defaults (reference key paths) -----------------------
_GS_RESNET50 = ('gs://cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/'
                'ckpt-28080')
_NORM_ACTIVATION = {'activation': 'relu', 'use_sync_bn': False,
                    'norm_momentum': 0.99, 'norm_epsilon': 0.001}
_PANOPTIC_GENERATOR = {'object_mask_threshold': 0.001,
                       'small_area_threshold': 0, 'overlap_threshold': 0.5,
                       'rescale_predictions': True,
                       'use_hardware_optimization': False}
_SEGMENTATION_HEAD = {'level': 3, 'num_convs': 2, 'num_filters': 256,
                      'use_depthwise_convolution': False,
                      'prediction_kernel_size': 1, 'upsample_factor': 1,
                      'feature_fusion': None, 'low_level': 2,
                      'low_level_num_filters': 48, 'depthwise_kernel_size': 7,
                      'use_layer_norm': False}
_MULTISCALE_HEAD = {'num_convs': 4, 'num_filters': 256,
                    'use_depthwise_convolution': False,
                    'prediction_kernel_size': 3, 'upsample_factor': 1,
                    'depthwise_kernel_size': 7, 'use_layer_norm': True}
# The backbone / decoder alternatives the kinds use: Model Garden's MobileNet
# and the reference's ResNetUNet and MaskConverFPN dataclasses.
_BACKBONE = {
    'mobilenet': {'model_id': 'MobileNetV2', 'filter_size_scale': 1.0,
                  'stochastic_depth_drop_rate': 0.0,
                  'flat_stochastic_depth_drop_rate': True,
                  'output_stride': None,
                  'output_intermediate_endpoints': False},
    'resnet_unet': {'model_id': 50, 'depth_multiplier': 1.0,
                    'stem_type': 'v0', 'se_ratio': 0.0,
                    'stochastic_depth_drop_rate': 0.0, 'scale_stem': True,
                    'resnetd_shortcut': False, 'replace_stem_max_pool': False,
                    'bn_trainable': True, 'classification_output': False,
                    'upsample_kernel_sizes': None, 'upsample_repeats': None,
                    'upsample_filters': None}}
_DECODER = {'type': 'identity', 'maskconver_fpn': {
    'num_filters': 256, 'fusion_type': 'sum', 'use_separable_conv': False,
    'use_keras_layer': False, 'use_layer_norm': True,
    'depthwise_kernel_size': 7}}
_AUTOAUG = {'type': 'autoaug', 'autoaug': {
    'augmentation_name': 'panoptic_deeplab_policy', **AUTOAUG_CONSTS}}
_EVALUATOR = {'num_categories': 201, 'ignored_label': 0,
              'max_instances_per_category': 256, 'offset': 256 ** 3,
              'rescale_predictions': True, 'report_per_class_metrics': False}
_DATA = {'dtype': 'float32', 'shuffle_buffer_size': 10000,
         'prefetch_buffer_size': 8}
_TRAINER = {'train_steps': 200000, 'validation_interval': 1000,
            'steps_per_loop': 1000, 'summary_interval': 1000,
            'checkpoint_interval': 1000}

REFERENCE_DEFAULTS = {
    # configs/maskconver.py: maskconver_coco() and the dataclass defaults.
    SINGLE: {
        'runtime': {'mixed_precision_dtype': 'float32', 'enable_xla': False},
        'task': {
            'init_checkpoint': _GS_RESNET50,
            'init_checkpoint_modules': ['backbone'],
            'model': {
                'num_classes': 201, 'num_thing_classes': 91,
                'num_instances': 100, 'embedding_size': 512,
                'input_size': [512, 512, 3], 'padded_output_size': [512, 512],
                'min_level': 2, 'max_level': 6, 'level': 3,
                'backbone': _BACKBONE, 'decoder': _DECODER,
                'class_head': _SEGMENTATION_HEAD,
                'mask_embedding_head': _SEGMENTATION_HEAD,
                'per_pixel_embedding_head': _SEGMENTATION_HEAD,
                'norm_activation': _NORM_ACTIVATION,
                'panoptic_generator': _PANOPTIC_GENERATOR},
            'losses': {'l2_weight_decay': 0.0, 'mask_weight': 10.0,
                       'alpha': 2.0, 'beta': 4.0, 'loss_weight': 1.0},
            'train_data': dict(_DATA, **{
                'input_path': 'coco/tfrecords/train-nocrowd*',
                'is_training': True, 'global_batch_size': 64,
                'drop_remainder': True,
                'parser': {'aug_rand_hflip': True, 'aug_scale_min': 0.5,
                           'aug_scale_max': 1.5, 'aug_type': _AUTOAUG,
                           'gaussaian_iou': 0.7, 'max_num_stuff_centers': 3,
                           'panoptic_ignore_label': 0,
                           'include_panoptic_masks': True}}),
            'validation_data': dict(_DATA, **{
                'input_path': 'coco/tfrecords/val-nocrowd*',
                'is_training': False, 'global_batch_size': 8,
                'drop_remainder': False,
                'parser': {'segmentation_resize_eval_groundtruth': True,
                           'segmentation_groundtruth_padded_size': [640, 640],
                           'panoptic_ignore_label': 0,
                           'include_panoptic_masks': True}}),
            'panoptic_quality_evaluator': _EVALUATOR},
        'trainer': dict(_TRAINER, **{
            'validation_steps': 625,
            'optimizer_config': {
                'optimizer': {'type': 'sgd', 'sgd': {'momentum': 0.9}},
                'learning_rate': {'type': 'cosine', 'cosine': {
                    'initial_learning_rate': 0.08, 'decay_steps': 200000}},
                'warmup': {'type': 'linear', 'linear': {
                    'warmup_steps': 2000, 'warmup_learning_rate': 0.0}}}}),
    },
    # configs/multiscale_maskconver.py: multiscale_maskconver_coco().
    MULTI: {
        'runtime': {'mixed_precision_dtype': 'float32', 'enable_xla': False},
        'task': {
            'init_checkpoint': _GS_RESNET50,
            'init_checkpoint_modules': ['backbone'],
            'model': {
                'num_classes': 201, 'num_thing_classes': 91,
                'num_instances': 100, 'embedding_size': 512,
                'input_size': [640, 640, 3], 'padded_output_size': [640, 640],
                'min_level': 3, 'max_level': 7, 'level': 3,
                'backbone': _BACKBONE, 'decoder': _DECODER,
                'mask_decoder': {'type': 'identity'},
                'class_head': _MULTISCALE_HEAD,
                'mask_embedding_head': _MULTISCALE_HEAD,
                'per_pixel_embedding_head': dict(_SEGMENTATION_HEAD,
                                                 use_layer_norm=True),
                'norm_activation': _NORM_ACTIVATION,
                'panoptic_generator': _PANOPTIC_GENERATOR},
            'losses': {'l2_weight_decay': 1e-4, 'mask_weight': 10.0,
                       'alpha': 2.0, 'beta': 4.0, 'loss_weight': 1.0},
            'train_data': dict(_DATA, **{
                'input_path': 'coco/tfrecords/train*', 'is_training': True,
                'global_batch_size': 128, 'drop_remainder': True,
                'parser': {
                    'aug_rand_hflip': True, 'aug_scale_min': 0.1,
                    'aug_scale_max': 1.9, 'aug_type': _AUTOAUG,
                    'fpn_low_range': [0, 40, 80, 160, 320],
                    'fpn_high_range': [64, 128, 256, 512, 10000000],
                    'gaussaian_iou': 0.7, 'max_num_instances': 256,
                    'mask_target_level': 1, 'panoptic_ignore_label': 0,
                    'copypaste': {'copypaste_frequency': 1.0,
                                  'aug_scale_min': 0.1, 'aug_scale_max': 1.9,
                                  'copypaste_aug_scale_min': 0.05,
                                  'copypaste_aug_scale_max': 1.0}}}),
            'validation_data': dict(_DATA, **{
                'input_path': 'coco/tfrecords/val*', 'is_training': False,
                'global_batch_size': 1, 'drop_remainder': False,
                'parser': {'segmentation_resize_eval_groundtruth': False,
                           'segmentation_groundtruth_padded_size': [640, 640],
                           'panoptic_ignore_label': 0}}),
            'panoptic_quality_evaluator': _EVALUATOR},
        'trainer': dict(_TRAINER, **{
            'validation_steps': 5000,
            'optimizer_config': {'optimizer': {'type': None},
                                 'learning_rate': {'type': None},
                                 'warmup': {'type': None}}}),
    },
}
# Keys whose presence makes a file multi-scale (only its parser has them).
MULTI_MARKERS = tuple(f'{d}.parser.{k}' for d in DATA for k in (
    'fpn_low_range', 'fpn_high_range', 'mask_target_level'))


# The conversion ------------------------------------------------------------
class _Context:
    """The merged reference tree and where its values came from."""

    def __init__(self, kind, merged, raw):
        self.kind = kind
        self.merged = merged
        self.raw = raw

    def get(self, path):
        """The merged value at `path` (None if absent)."""
        return _get(self.merged, path)

    def from_file(self, path):
        """Whether the file itself sets `path` (or something below it)."""
        node = self.raw
        for part in path.split('.'):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True


@dataclasses.dataclass
class Conversion:
    """What `convert` made of a reference file.

    config: our YAML tree (nested dicts). entries: every reference key with
    its outcome (Mapped / Fixed / Dropped / NotCarried) and whether the file
    set it (False: a reference default). notes: derived values.
    """
    source: str
    reference_experiment: str
    experiment: str
    config: Dict[str, Any]
    entries: List[Entry]
    notes: List[str]

    def _of(self, kind, from_file=True):
        return [e for e in self.entries if isinstance(e.outcome, kind)
                and (e.from_file or not from_file)]

    @property
    def mapped(self):
        return self._of(Mapped)

    @property
    def dropped(self):
        return self._of(Dropped)

    @property
    def fixed(self):
        return self._of(Fixed)

    @property
    def not_carried(self):
        return [e for e in self.entries if isinstance(e.outcome, NotCarried)]

    @property
    def defaults_written(self):
        return [e for e in self.entries if isinstance(e.outcome, Mapped)
                and not e.from_file]

    def report_lines(self) -> List[str]:
        """One line per key that is not simply mapped, then the notes."""
        lines = []
        for e in self.not_carried:
            origin = ('' if e.from_file else
                      f' (default of {self.reference_experiment})')
            lines.append(f'not carried: {e.path} = {e.value!r}{origin}: '
                         f'{e.outcome.reason}')
        for e in self.dropped:
            lines.append(f'dropped: {e.path}: {e.outcome.reason}')
        for e in self.fixed:
            lines.append(f'fixed: {e.path} = {_short(e.value)}: '
                         f'{e.outcome.reason}')
        lines += [f'note: {n}' for n in self.notes]
        return lines

    def to_yaml(self, output_path='OURS.yaml') -> str:
        """The converted file: a comment header, then our config."""
        head = [
            '# Converted from the official MaskConver experiment '
            f'{self.source}',
            '# (tensorflow/models official/projects/maskconver, reference '
            f'experiment {self.reference_experiment}) by',
            '#   python -m maskconver_tf.configs.from_reference',
            f'# Train: python -m maskconver_tf.train --experiment '
            f'{self.experiment} --config_file {output_path} ...',
            f'# {len(self.mapped)} keys mapped, {len(self.fixed)} honoured by '
            f'fixed behaviour, {len(self.dropped)} dropped, '
            f'{len(self.not_carried)} not carried; unset keys took the '
            f'defaults of {self.reference_experiment} '
            f'({len(self.defaults_written)} written).',
        ]
        if self.not_carried:
            head.append('# Not carried over:')
            head += [f'#   {e.path} = {e.value!r}: {e.outcome.reason}'
                     for e in self.not_carried]
        if self.dropped:
            head.append('# Dropped (the reference never reads them, or only '
                        'for outputs it discards):')
            head += [f'#   {e.path}: {e.outcome.reason}' for e in self.dropped]
        if self.fixed:
            head.append('# Honoured by fixed behaviour here (no field to '
                        'write):')
            head += [f'#   {e.path} = {_short(e.value)}: {e.outcome.reason}'
                     for e in self.fixed]
        if self.defaults_written:
            head.append(f'# Defaults of {self.reference_experiment} written '
                        '(the file leaves them unset):')
            head += [f'#   {e.path} = {_short(e.value)}'
                     for e in self.defaults_written]
        if self.notes:
            head.append('# Notes:')
            head += [f'#   {n}' for n in self.notes]
        body = yaml.dump(self.config, Dumper=_NoAliasDumper,
                         default_flow_style=None, sort_keys=False, width=79)
        return '\n'.join(head) + '\n' + body


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared values in full (no &id / *id anchors)."""

    def ignore_aliases(self, data):
        return True


def _short(value):
    """repr(value), cut to one comment line's worth."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _merge(base, over):
    """`over` on top of `base` (nested dicts; a non-dict replaces)."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if k in out else copy.deepcopy(v)
    return out


def _walk(node, path=''):
    """(path, value) of every leaf; groups are leaves; for a OneOf node the
    alternatives its `type` does not select yield (path, _Unselected)."""
    if path in GROUPS or not isinstance(node, dict) or not node:
        yield path, node
        return
    selected = node.get('type') if path in ONEOFS else None
    for k, v in node.items():
        child = f'{path}.{k}' if path else k
        if path in ONEOFS and k != 'type' and k != selected:
            yield child, _Unselected(f'{path}.type', selected)
        else:
            yield from _walk(v, child)


@dataclasses.dataclass
class _Unselected:
    """A OneOf alternative that `type_path` does not select."""
    type_path: str
    selected: Any


def _lookup(rules, path):
    """The rule of the longest table key that is `path` or a prefix of it."""
    parts = path.split('.')
    for i in range(len(parts), 0, -1):
        key = '.'.join(parts[:i])
        if key in rules:
            return rules[key], key, path[len(key):]
    return None, None, None


def _set(tree, path, value):
    """tree[a][b][c] = value for path 'a.b.c' (creating dicts)."""
    parts = path.split('.')
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _get(tree, path):
    """tree[a][b][c] for path 'a.b.c', None if absent."""
    node = tree
    for part in path.split('.'):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _nest(path, value):
    """{a: {b: {c: value}}} for path 'a.b.c'."""
    tree = {}
    _set(tree, path, value)
    return tree


def _order_like(tree, reference):
    """`tree` with its keys in the order of `reference` (our config)."""
    if not isinstance(tree, dict) or not isinstance(reference, dict):
        return tree
    keys = [k for k in reference if k in tree] + [
        k for k in tree if k not in reference]
    return {k: _order_like(tree[k], reference.get(k)) for k in keys}


def detect_kind(raw: dict) -> str:
    """SINGLE or MULTI from the keys only the multi-scale parser has."""
    ctx = _Context(None, raw, raw)
    return MULTI if any(ctx.from_file(p) for p in MULTI_MARKERS) else SINGLE


def _whole_file_problems(raw) -> List[str]:
    """Files that are no MaskConver panoptic experiment at all."""
    problems = []
    task = raw.get('task') or {}
    for d in ('train_data', 'validation_data'):
        seg = [k for k in SEG_DATA_KEYS if k in (task.get(d) or {})]
        if seg:
            problems.append(
                f'task.{d}.{seg[0]}: a MaskConver-Seg data config (semantic '
                'segmentation pre-training, maskconver_seg_* experiments); '
                'this package trains the panoptic task only')
            break
    if 'head' in (task.get('model') or {}):
        problems.append('task.model.head: a Model Garden classification or '
                        'semantic-segmentation experiment, not MaskConver')
    return problems


def convert(reference, source: Optional[str] = None,
            reference_experiment: str = 'auto') -> Conversion:
    """Converts a reference experiment (a YAML path or its loaded dict).

    Args:
      reference: path of a reference YAML, or the dict it holds.
      source: name for messages (default: the path, or '<dict>').
      reference_experiment: 'auto', SINGLE or MULTI.

    Returns:
      A `Conversion`; its `config` loads strictly into `experiment`.

    Raises:
      ConversionError: listing every key that cannot be converted, each with
        the key path and what was expected.
    """
    if isinstance(reference, dict):
        raw, source = reference, source or '<dict>'
    else:
        source = source or str(reference)
        try:
            with open(reference) as f:
                raw = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ConversionError(source, [f'cannot read it as YAML: {e}']) \
                from None
    if not isinstance(raw, dict):
        raise ConversionError(source, [
            'expected a mapping with runtime / task / trainer, got '
            f'{type(raw).__name__}'])
    problems = _whole_file_problems(raw)
    if problems:
        raise ConversionError(source, problems)
    kind = detect_kind(raw) if reference_experiment == 'auto' else \
        reference_experiment
    if kind not in RULES:
        raise ConversionError(source, [
            f'reference experiment {kind!r}: expected auto, {SINGLE} or '
            f'{MULTI}'])
    experiment = OUR_EXPERIMENT[kind]
    ctx = _Context(kind, _merge(REFERENCE_DEFAULTS[kind], raw), raw)
    ours = exp_factory.get_exp_config(experiment)
    scratch = copy.deepcopy(ours)
    rules = RULES[kind]
    entries, problems, written = [], [], {}

    def fail(path, message, from_file):
        origin = '' if from_file else (
            f' (the default of {kind}, which the file leaves unset)')
        problems.append(f'{path}: {message}{origin}')

    if ctx.get('task.model.backbone.type') is None:
        # The reference's Backbone default comes from a Google-internal
        # config, so a file without a backbone means nothing here.
        fail('task.model.backbone.type', 'is unset: the reference default '
             'is internal (expected a backbone type, e.g. mobilenet or '
             'resnet_unet)', True)
    for path, value in _walk(ctx.merged):
        from_file = ctx.from_file(path)
        if isinstance(value, _Unselected):
            entries.append(Entry(path, None, Dropped(
                f'{value.type_path} is {value.selected!r}: this alternative '
                'is never read'), from_file))
            continue
        rule, key, rest = _lookup(rules, path)
        if rule is None:
            fail(path, f'unknown key: not in the reference\'s {kind} config '
                 f'nor in {experiment}', from_file)
            continue
        try:
            outcome = rule(value, ctx, key, rest)
        except _Problem as e:
            fail(path, str(e), from_file)
            continue
        if isinstance(outcome, Mapped):
            for target, v in outcome.writes:
                if target in written and not _equal(written[target][1], v):
                    fail(path, f'writes {target} = {v!r}, but '
                         f'{written[target][0]} already wrote '
                         f'{written[target][1]!r}', from_file)
                    continue
                try:
                    scratch.override(_nest(target, v), is_strict=True)
                except (KeyError, AttributeError, TypeError, ValueError) as e:
                    msg = ('unknown key: neither the reference nor '
                           f'{experiment} has it' if target == path else
                           f'maps to {target}, which {experiment} refuses '
                           f'({e})')
                    fail(path, msg, from_file)
                    continue
                written[target] = (path, v)
        entries.append(Entry(path, value, outcome, from_file))
    if problems:
        raise ConversionError(source, problems)

    notes = [f'{e.path}: {e.outcome.note}' for e in entries
             if isinstance(e.outcome, Mapped) and e.outcome.note
             and e.from_file]
    config = {}
    for target, (_, v) in written.items():
        _set(config, target, v)
    # The reference weighs BCE and dice with one mask_weight.
    mask_weight = ctx.get('task.losses.mask_weight')
    derived = dict(CODE_FIXED[kind],
                   **{'task.losses.dice_weight': mask_weight})
    clash = sorted(set(derived) & set(written))
    if clash:  # A table error, not the file's.
        raise AssertionError(f'code-fixed fields also mapped: {clash}')
    for target, v in derived.items():
        _set(config, target, v)
    notes.append(f'task.losses.dice_weight = mask_weight = {mask_weight} '
                 '(the reference weighs BCE and dice alike)')
    followed = []
    for field in TARGET_FIELDS:
        value = _get(config, f'{TRAIN}.parser.{field}')
        if value is not None and f'{VAL}.parser.{field}' not in written:
            _set(config, f'{VAL}.parser.{field}', value)
            followed.append(field)
    if followed:
        notes.append(f'validation parser {", ".join(followed)} follow train '
                     '(our validation loss needs targets; the reference\'s '
                     'eval parser builds none)')
    # Our field order; at the top runtime, task, trainer (as the reference).
    order = ours.as_dict()
    order = {k: order[k] for k in ('runtime', 'task', 'trainer')}
    config = _order_like(config, order)
    try:
        check = hyperparams.override_params_dict(
            exp_factory.get_exp_config(experiment), config, is_strict=True)
        check.validate()
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ConversionError(source, [
            f'the converted config does not load into {experiment}: {e}']) \
            from None
    return Conversion(source, kind, experiment, config, entries, notes)


def write(conversion: Conversion, output_path: str):
    """Writes `conversion` as a YAML with its comment header."""
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    with open(output_path, 'w') as f:
        f.write(conversion.to_yaml(output_path))


def main(argv=None) -> int:
    """The command line (module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(
        description='Convert an official MaskConver experiment YAML '
        '(tensorflow/models official/projects/maskconver/configs/'
        'experiments) into a config of this package.')
    parser.add_argument('reference', help='the official YAML')
    parser.add_argument('--output', required=True,
                        help='where to write our YAML')
    parser.add_argument('--reference_experiment', default='auto',
                        choices=('auto', SINGLE, MULTI),
                        help='the reference experiment the file extends '
                        '(auto: multi-scale iff it has multi-scale parser '
                        'keys)')
    args = parser.parse_args(argv)
    try:
        conversion = convert(args.reference,
                             reference_experiment=args.reference_experiment)
    except ConversionError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    write(conversion, args.output)
    for line in conversion.report_lines():
        print(line)
    print(f'wrote {args.output}: {len(conversion.mapped)} keys mapped, '
          f'{len(conversion.fixed)} fixed, {len(conversion.dropped)} '
          f'dropped, {len(conversion.not_carried)} not carried')
    print(f'experiment: {conversion.experiment}')
    print(f'train: python -m maskconver_tf.train --experiment '
          f'{conversion.experiment} --config_file {args.output} '
          "--params_override 'task.train_data.input_path=...,"
          "task.validation_data.input_path=...' --mode train_and_eval "
          '--model_dir DIR')
    return 0


if __name__ == '__main__':
    sys.exit(main())
