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
"""

from absl import app
from absl import flags

from official.common import flags as tfm_flags
from official.vision import train as vision_train

from maskconver_tf import registry_imports  # noqa: F401  (registrations)


def main(argv):
    vision_train.main(argv)


if __name__ == '__main__':
    tfm_flags.define_flags()
    for module in (tfm_flags, vision_train):  # listed by --help
        flags.adopt_module_key_flags(module)
    flags.mark_flags_as_required(['experiment', 'mode', 'model_dir'])
    app.run(main)
