"""Trains / evaluates MaskConver with Model Garden's driver and flags.

    python -m maskconver_tf.train --experiment maskconver_shapes \
        --config_file experiments/maskconver_shapes.yaml \
        --params_override 'trainer.train_steps=200' \
        --mode train_and_eval --model_dir /tmp/run

Flags are Model Garden's (`official/common/flags.py`): --experiment, --mode
(train, eval, train_and_eval, continuous_eval, ...), --model_dir,
--config_file (repeatable), --params_override, --tpu, --gin_file,
--gin_params. Overrides apply in order: experiment defaults, each
--config_file, then --params_override; unknown keys raise KeyError.
`params.yaml` is written to --model_dir; a run started again with the same
--model_dir resumes from its latest checkpoint.

Corrupt TFRecords: the task's pre-flight check (`data/tfrecord_check.py`)
verifies framing and the first payloads of each file. A bad payload further
in surfaces mid-run as a DataLossError without the file name; the run then
checks every record of its input files and fails with the file and record.
"""

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from official.common import flags as tfm_flags
from official.core import train_utils
from official.vision import train as vision_train

from maskconver_tf import registry_imports  # noqa: F401  (registrations)
from maskconver_tf.data import tfrecord_check

FLAGS = flags.FLAGS


def name_corrupt_record(mode, params):
    """Full TFRecord check of the inputs `mode` reads.

    Raises:
      tfrecord_check.CorruptRecordError: naming the first bad file / record.
    """
    configs = []
    if 'train' in mode:
        configs.append(params.task.train_data)
    if 'eval' in mode:
        configs.append(params.task.validation_data)
    for data in configs:
        tfrecord_check.check_data_config(data, mode='full')


def main(argv):
    try:
        vision_train.main(argv)
    except tf.errors.DataLossError:
        logging.error('DataLossError: checking every record of the input '
                      'files to name the corrupt one')
        try:
            name_corrupt_record(FLAGS.mode,
                                train_utils.parse_configuration(FLAGS))
        except tfrecord_check.CorruptRecordError as corrupt:
            raise corrupt from None  # the file and record say it all
        raise  # no corrupt TFRecord: not a data file problem


if __name__ == '__main__':
    tfm_flags.define_flags()
    for module in (tfm_flags, vision_train):  # listed by --help
        flags.adopt_module_key_flags(module)
    flags.mark_flags_as_required(['experiment', 'mode', 'model_dir'])
    app.run(main)
