"""The MaskConver training / evaluation task for Model Garden's trainer.

Responsibilities: build the model from the task config and the dataset
descriptor, restore `init_checkpoint`, build the tf.data input (decoder +
parser), compute the losses (center focal + mask BCE + dice + L2), and run
in-loop PQ with Model Garden's `PanopticQualityEvaluator` on the original
image size.
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.common import dataset_fn
from official.core import base_task
from official.core import task_factory
from official.vision.dataloaders import input_reader_factory
from official.vision.evaluation import panoptic_quality_evaluator

from maskconver_tf.configs import maskconver_task as task_cfg
from maskconver_tf.data import tfrecord_check
from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.dataloaders import decoder as decoder_lib
from maskconver_tf.dataloaders import maskconver_input
from maskconver_tf.losses import maskconver_losses
from maskconver_tf.modeling import factory

INIT_CHECKPOINT_MODULES = ('all', 'backbone', 'decoder')
LOSS_NAMES = ('total_loss', 'model_loss', 'center_loss', 'center_class_loss',
              'mask_bce_loss', 'mask_dice_loss', 'l2_loss')
# Segments beyond K (they keep their heatmap peak but lose mask supervision).
DROPPED_METRIC = 'num_dropped_segments'
PQ_PREFIX = 'panoptic_quality'


def descriptor_for(task_config) -> DatasetDescriptor:
    """The dataset descriptor a task config names."""
    return DatasetDescriptor.from_spec(task_config.dataset,
                                      task_config.label_mode or None)


def validate_init_checkpoint_modules(modules) -> List[str]:
    """Normalises 'all' / 'backbone,decoder' / a list; rejects unknown names."""
    if isinstance(modules, str):
        modules = [m.strip() for m in modules.split(',') if m.strip()]
    modules = list(modules)
    unknown = [m for m in modules if m not in INIT_CHECKPOINT_MODULES]
    if unknown or not modules:
        raise ValueError(
            f'init_checkpoint_modules {modules!r}: expected "all" or a list of '
            f'{INIT_CHECKPOINT_MODULES[1:]}; unknown: {unknown}')
    if 'all' in modules and len(modules) > 1:
        raise ValueError(f'init_checkpoint_modules {modules!r}: "all" cannot '
                         'be combined with other modules')
    return modules


@task_factory.register_task_cls(task_cfg.MaskConverTask)
class MaskConverTask(base_task.Task):
    """Single-scale MaskConver on Model Garden's task API."""

    def __init__(self, params, logging_dir=None, name=None):
        super().__init__(params, logging_dir=logging_dir, name=name)
        self.descriptor = descriptor_for(params)
        if params.model.num_classes != self.descriptor.num_classes:
            raise ValueError(
                f'model.num_classes is {params.model.num_classes} but dataset '
                f'{params.dataset!r} (label_mode '
                f'{self.descriptor.label_mode!r}) has '
                f'{self.descriptor.num_classes} class channels')
        # A typo fails here, not only when a checkpoint is restored.
        validate_init_checkpoint_modules(params.init_checkpoint_modules)

    # Model ------------------------------------------------------------------
    def build_model(self) -> tf_keras.Model:
        model_config = self.task_config.model
        input_specs = tf_keras.layers.InputSpec(
            shape=[None] + list(model_config.input_size))
        wd = self.task_config.losses.l2_weight_decay
        # Keras L2 is sum(w^2) * c; Model Garden's wd follows tf.nn.l2_loss.
        l2_regularizer = tf_keras.regularizers.l2(wd / 2.0) if wd else None
        # Unlike the reference, no global seed / op determinism here: that
        # would be a process-wide side effect (and slower); callers seed.
        model = factory.build_maskconver_model(
            input_specs=input_specs, model_config=model_config,
            l2_regularizer=l2_regularizer, descriptor=self.descriptor)
        images = tf.zeros([1] + list(model_config.input_size), tf.float32)
        model(images, training=False)
        return model

    def initialize(self, model: tf_keras.Model):
        """Restores `init_checkpoint` (a file or a directory) into `model`."""
        path = self.task_config.init_checkpoint
        if not path:
            return
        modules = validate_init_checkpoint_modules(
            self.task_config.init_checkpoint_modules)
        if tf.io.gfile.isdir(path):
            latest = tf.train.latest_checkpoint(path)
            if latest is None:
                raise ValueError(f'init_checkpoint {path}: directory holds no '
                                 'checkpoint')
            path = latest
        if modules == ['all']:
            items = dict(model.checkpoint_items)
        else:
            items = {m: model.checkpoint_items[m] for m in modules}
        status = tf.train.Checkpoint(**items).read(path)
        status.expect_partial().assert_existing_objects_matched()
        logging.info('Restored %s from %s', modules, path)

    # Data -------------------------------------------------------------------
    def parser_kwargs(self, params: task_cfg.DataConfig) -> dict:
        """Parser arguments both parsers share (model, descriptor, config)."""
        model_config = self.task_config.model
        p = params.parser
        return dict(
            output_size=list(model_config.input_size[:2]),
            num_classes=model_config.num_classes,
            id_to_channel=self.descriptor.id_to_channel.tolist(),
            is_thing_channel=self.descriptor.is_thing_channel.tolist(),
            num_instances=model_config.num_instances,
            gaussian_iou=p.gaussian_iou,
            max_num_stuff_centers=p.max_num_stuff_centers,
            min_stuff_area=p.min_stuff_area,
            stuff_dilation=p.stuff_dilation,
            center_type=p.center_type,
            mask_target_stride=p.mask_target_stride,
            aug_rand_hflip=p.aug_rand_hflip,
            aug_scale_min=p.aug_scale_min,
            aug_scale_max=p.aug_scale_max,
            aug_type=p.aug_type,
            segmentation_groundtruth_padded_size=(
                list(p.segmentation_groundtruth_padded_size) or None),
            dtype=p.dtype)

    def build_parser(self, params: task_cfg.DataConfig):
        return maskconver_input.Parser(level=self.task_config.model.level,
                                       **self.parser_kwargs(params))

    def build_inputs(self, params: task_cfg.DataConfig,
                     input_context: Optional[tf.distribute.InputContext] = None):
        tfrecord_check.check_data_config(params)  # names a corrupt file/record
        reader = input_reader_factory.input_reader_generator(
            params,
            dataset_fn=dataset_fn.pick_dataset_fn(params.file_type),
            decoder_fn=self.build_decoder(params).decode,
            sample_fn=self.build_sample_fn(params),
            parser_fn=self.build_parser(params).parse_fn(params.is_training))
        return reader.read(input_context=input_context)

    def build_decoder(self, params: task_cfg.DataConfig):
        """The record decoder `params.decoder` names (tfrecord or tfds)."""
        d = params.decoder
        if d.type == 'tfrecord':
            kwargs = dict(
                panoptic_category_mask_key=d.panoptic_category_mask_key,
                panoptic_instance_mask_key=d.panoptic_instance_mask_key)
        elif d.type == 'tfds':
            kwargs = dict(skip_crowd=d.skip_crowd)
        else:
            raise ValueError(f'decoder.type {d.type!r}: expected tfrecord or tfds')
        return decoder_lib.build_decoder(d.type, self.descriptor, **kwargs)

    def build_sample_fn(self, params: task_cfg.DataConfig):
        """A dataset transform between decoding and parsing; None here."""
        del params
        return None

    # Losses -----------------------------------------------------------------
    def build_losses(self, labels: Mapping[str, tf.Tensor],
                     model_outputs: Mapping[str, tf.Tensor],
                     aux_losses: Optional[Any] = None) -> Dict[str, tf.Tensor]:
        """Returns a dict of scalar float32 losses; `total_loss` is trained."""
        c = self.task_config.losses
        losses = maskconver_losses.maskconver_losses(
            class_heatmaps=model_outputs['class_heatmaps'],
            mask_logits=model_outputs['mask_logits'],
            labels=labels,
            focal_alpha=c.focal_alpha, focal_beta=c.focal_beta,
            mask_weight=c.mask_weight, dice_weight=c.dice_weight,
            dice_mode=c.dice_mode, center_weight=c.center_weight,
            class_weight=c.class_weight)
        model_loss = c.loss_weight * losses['total_loss']
        l2_loss = (tf.add_n([tf.cast(x, tf.float32) for x in aux_losses])
                   if aux_losses else tf.constant(0.0))
        return {
            'total_loss': model_loss + l2_loss,
            'model_loss': model_loss,
            'center_loss': losses['center_loss'],
            'center_class_loss': losses.get('center_class_loss',
                                            tf.constant(0.0)),
            'mask_bce_loss': losses['mask_bce_loss'],
            'mask_dice_loss': losses['mask_dice_loss'],
            'l2_loss': l2_loss,
        }

    def build_metrics(self, training: bool = True):
        metrics = [tf_keras.metrics.Mean(name, dtype=tf.float32)
                   for name in LOSS_NAMES]
        # A sum: the segments dropped since the metrics were last reset
        # (each logged train loop; the whole validation set).
        metrics.append(tf_keras.metrics.Sum(DROPPED_METRIC, dtype=tf.float32))
        if not training:
            self.pq_metric = self._build_pq_evaluator()
        return metrics

    def _build_pq_evaluator(self):
        e = self.task_config.evaluation
        max_id = int(max(self.descriptor.ids))
        is_thing = [False] * (max_id + 1)
        for cid in self.descriptor.thing_ids:
            is_thing[cid] = True
        # Predictions and ground truth carry dataset ids, so index by id.
        return panoptic_quality_evaluator.PanopticQualityEvaluator(
            num_categories=max_id + 1,
            ignored_label=e.ignored_label,
            max_instances_per_category=e.max_instances_per_category,
            offset=e.offset, is_thing=is_thing,
            rescale_predictions=e.rescale_predictions)

    # Steps ------------------------------------------------------------------
    def _forward_train(self, model, images, labels, training=True):
        # Teacher forcing: ground-truth centers and classes pick the slots.
        outputs = model(images, center_indices=labels['center_indices'],
                        classes=labels['classes'], training=training)
        return tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)

    def train_step(self, inputs: Tuple[Any, Any], model: tf_keras.Model,
                   optimizer: tf_keras.optimizers.Optimizer,
                   metrics: Optional[List[Any]] = None) -> Dict[str, Any]:
        images, labels = inputs
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = self._forward_train(model, images, labels)
            losses = self.build_losses(labels, outputs, model.losses)
            # Gradients are summed over replicas, so each replica takes 1/N.
            scaled_loss = losses['total_loss'] / num_replicas
            if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
                scaled_loss = optimizer.get_scaled_loss(scaled_loss)
        tvars = model.trainable_variables
        grads = tape.gradient(scaled_loss, tvars)
        if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
            grads = optimizer.get_unscaled_gradients(grads)
        missing = [v.name for v, g in zip(tvars, grads) if g is None]
        if missing:
            raise ValueError(f'no gradient reaches {missing}: the model builds '
                             'variables the loss does not use')
        optimizer.apply_gradients(list(zip(grads, tvars)))
        # Non-finite weights after the update report a NaN loss, so Model
        # Garden's loss check stops the run before they are checkpointed.
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                                for v in tvars])
        logs = {self.loss: tf.where(finite, losses['total_loss'], np.nan)}
        self._update_metrics(metrics, losses, labels)
        return logs

    @staticmethod
    def _update_metrics(metrics, losses, labels):
        values = dict(losses, **{DROPPED_METRIC: tf.reduce_sum(
            tf.cast(labels[DROPPED_METRIC], tf.float32))})
        for m in metrics or []:
            m.update_state(values[m.name])

    def validation_step(self, inputs: Tuple[Any, Any], model: tf_keras.Model,
                        metrics: Optional[List[Any]] = None) -> Dict[str, Any]:
        images, labels = inputs
        outputs = model(images, image_info=labels['image_info'], training=False)
        logs = {self.loss: tf.constant(0.0)}
        if metrics:
            # training=False: validation must not move BatchNorm statistics.
            train_outputs = self._forward_train(model, images, labels,
                                                training=False)
            losses = self.build_losses(labels, train_outputs, model.losses)
            self._update_metrics(metrics, losses, labels)
            logs[self.loss] = losses['total_loss']
        logs[PQ_PREFIX] = (
            {'category_mask': labels['groundtruth_category_mask'],
             'instance_mask': labels['groundtruth_instance_mask'],
             'image_info': labels['image_info']},
            {'category_mask': outputs['category_mask'],
             'instance_mask': outputs['instance_mask']})
        return logs

    def aggregate_logs(self, state=None, step_outputs=None):
        if state is None:
            self.pq_metric.reset_states()
            state = self.pq_metric
        # Tensors (tuples of per-replica tensors under a strategy): the MG
        # evaluator converts and concatenates them itself.
        groundtruths, predictions = step_outputs[PQ_PREFIX]
        self.pq_metric.update_state(groundtruths, predictions)
        return state

    def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
        result = {}
        report_per_class = self.task_config.evaluation.report_per_class_pq
        for key, value in self.pq_metric.result().items():
            if np.ndim(value) == 0:
                result[f'{PQ_PREFIX}/{key}'] = float(value)
            elif report_per_class:
                for cid, v in enumerate(np.asarray(value)):
                    if cid in self.descriptor:
                        result[f'{PQ_PREFIX}/{key}/{cid}'] = float(v)
        return result
