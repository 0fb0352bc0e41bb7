r"""Training-loss and PQ curves from a Model Garden model_dir's event files.

Model Garden's trainer writes TensorBoard summaries to model_dir/train
(losses, learning_rate) and model_dir/validation (losses and the in-loop
`panoptic_quality/*` metrics). `read_scalars` collects every scalar per
sub-directory; `plot_training_curves` draws losses (left) and PQ (right).

    python -m maskconver_tf.visualization.plots --model_dir M \
        --output curves.png
"""

import argparse
import collections
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

Series = List[Tuple[int, float]]
PQ_TAGS = ('panoptic_quality/All_pq', 'panoptic_quality/Things_pq',
           'panoptic_quality/Stuff_pq')


def _event_files(model_dir):
    for root, _, files in os.walk(model_dir):
        for name in sorted(files):
            if 'tfevents' in name:
                yield root, os.path.join(root, name)


def _scalar(value):
    import tensorflow as tf
    if value.HasField('simple_value'):
        return float(value.simple_value)
    if value.HasField('tensor'):
        array = tf.make_ndarray(value.tensor)
        if array.size == 1 and np.issubdtype(array.dtype, np.number):
            return float(array.reshape(()))
    return None


def read_scalars(model_dir) -> Dict[str, Dict[str, Series]]:
    """Every scalar summary under model_dir.

    Returns:
      {split: {tag: [(step, value), ...] sorted by step}}, where split is the
      event file's directory relative to model_dir ('train', 'validation',
      '.' for files in model_dir itself). A step logged twice keeps the last
      value (a restarted job rewrites steps).
    Raises:
      FileNotFoundError: no event files under model_dir.
    """
    import tensorflow as tf
    found = collections.defaultdict(lambda: collections.defaultdict(dict))
    any_file = False
    for root, path in _event_files(model_dir):
        any_file = True
        split = os.path.relpath(root, model_dir)
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                v = _scalar(value)
                if v is not None:
                    found[split][value.tag][int(event.step)] = v
    if not any_file:
        raise FileNotFoundError(f'{model_dir}: no TensorBoard event files')
    return {split: {tag: sorted(steps.items()) for tag, steps in tags.items()}
            for split, tags in found.items()}


def plot_training_curves(model_dir, output_path,
                         loss_tags: Optional[Sequence[str]] = None,
                         pq_tags: Sequence[str] = PQ_TAGS,
                         title: Optional[str] = None) -> str:
    """Writes a two-panel PNG: losses by step (train split, plus validation
    total_loss if present) and PQ in percent by step (validation split).

    Args:
      model_dir: the trainer's model_dir.
      output_path: PNG path.
      loss_tags: train tags to plot (default: every tag ending in 'loss').
      pq_tags: validation tags to plot; missing ones are skipped.
    Returns:
      output_path.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    scalars = read_scalars(model_dir)
    train = scalars.get('train', scalars.get('.', {}))
    validation = scalars.get('validation', {})
    if loss_tags is None:
        loss_tags = sorted(t for t in train if t.endswith('loss'))
    fig, (ax_loss, ax_pq) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for tag in loss_tags:
        if tag in train:
            steps, values = zip(*train[tag])
            ax_loss.plot(steps, values, label=f'train {tag}')
    if 'total_loss' in validation:
        steps, values = zip(*validation['total_loss'])
        ax_loss.plot(steps, values, 'o--', label='validation total_loss')
    ax_loss.set_xlabel('step')
    ax_loss.set_ylabel('loss')
    ax_loss.set_title('losses')
    if ax_loss.lines:
        ax_loss.legend(fontsize=7)
    else:
        ax_loss.text(0.5, 0.5, 'no loss summaries', ha='center',
                     transform=ax_loss.transAxes)
    for tag in pq_tags:
        if tag in validation:
            steps, values = zip(*validation[tag])
            ax_pq.plot(steps, [100 * v for v in values], 'o-',
                       label=tag.split('/')[-1])
    ax_pq.set_xlabel('step')
    ax_pq.set_ylabel('PQ (%)')
    ax_pq.set_title('panoptic quality (in-loop)')
    if ax_pq.lines:
        ax_pq.legend(fontsize=7)
    else:
        ax_pq.text(0.5, 0.5, 'no PQ evaluations', ha='center',
                   transform=ax_pq.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    fig.savefig(output_path, format='png')
    plt.close(fig)
    return output_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m maskconver_tf.visualization.plots',
        description='Loss and PQ curves of a model_dir as a PNG.')
    parser.add_argument('--model_dir', required=True)
    parser.add_argument('--output', required=True, help='PNG path')
    parser.add_argument('--title')
    args = parser.parse_args(argv)
    try:
        path = plot_training_curves(args.model_dir, args.output,
                                    title=args.title)
    except (FileNotFoundError, OSError) as e:
        print(f'plots: error: {e}', file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
