"""Imports that register our experiments, task, backbones and decoders.

Model Garden registers by import side effect; import this module before
`exp_factory.get_exp_config` or `task_factory.get_task`.
"""

# pylint: disable=unused-import
from maskconver_tf.configs import experiments  # noqa: F401
from maskconver_tf.modeling import factory  # noqa: F401
from maskconver_tf.tasks import maskconver  # noqa: F401
from maskconver_tf.tasks import multiscale_maskconver  # noqa: F401
