"""Reliability tests of the train CLI (`python -m maskconver_tf.train`).

- kill-and-resume: a run SIGKILLed after a checkpoint and started again with
  the same command continues from its last complete checkpoint;
- a NaN loss and a loss above `trainer.loss_upper_bound` stop the run with
  Model Garden's message, and no checkpoint holds weights from after the
  blow-up;
- a corrupt TFRecord fails before training with a one-line error naming the
  file and record; a bad payload past the records the pre-flight check
  verifies fails mid-run with the same kind of error;
- `--mode train_and_eval` writes params.yaml, checkpoints and TensorBoard
  summaries (losses, learning rate, PQ); `--mode eval` and
  `--mode continuous_eval` on its model dir reproduce its last evaluation;
- `--help` lists the flags.

Each run is a subprocess on a 64 px model and 8 shapes images. The failure
runs start together in a module fixture so they overlap the kill-and-resume
runs (the machine has 2 cores; most of a run is single-threaded start-up
and tracing).
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from maskconver_tf.data import create_tfrecords
from maskconver_tf.data import shapes
from maskconver_tf.data import tfrecord_check

TIMEOUT = 900  # s; generous: other jobs share the 2 cores
STEP_LINE = re.compile(r'^train \| step: +(\d+) \| steps/sec', re.M)
# Anchored at the start only: print() writes its newline separately, so an
# absl log line from another thread can follow on the same line.
SAVED_LINE = re.compile(r'^saved checkpoint to \S*/ckpt-(\d+)\.', re.M)
START_LINE = re.compile(r'^train \| step: +(\d+) \| training until step (\d+)',
                        re.M)


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli_data')
    json_path = shapes.generate_dataset(str(root / 'data'), 8, image_size=64,
                                        seed=5)
    report = create_tfrecords.convert(
        str(root / 'data' / 'images'), json_path,
        str(root / 'data' / 'panoptic'), str(root / 'rec' / 'train'),
        num_shards=1)
    return report.output_files[0]


def _command(model_dir, record_file, *overrides, flags=(), mode='train'):
    params = [
        f'task.train_data.input_path={record_file}',
        f'task.validation_data.input_path={record_file}',
        'task.model.input_size=[64,64,3]',
        'task.model.panoptic_generator.output_size=[64,64]',
        'task.train_data.parser.min_stuff_area=16',
        'task.validation_data.parser.min_stuff_area=16',
        'task.train_data.global_batch_size=2',
        'trainer.steps_per_loop=1', 'trainer.summary_interval=1',
        'trainer.max_to_keep=20',
        'runtime.distribution_strategy=one_device', 'runtime.num_gpus=0',
    ] + list(overrides)
    return [sys.executable, '-m', 'maskconver_tf.train',
            '--experiment', 'maskconver_shapes', '--mode', mode,
            '--model_dir', str(model_dir),
            '--params_override', ','.join(params)] + list(flags)


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
    env.pop('TF_CONFIG', None)
    return env


def _start(cmd, log_path):
    log = open(log_path, 'w')  # pylint: disable=consider-using-with
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env=_env())
    proc.log_file = log
    proc.log_path = log_path
    return proc


def _finish(proc):
    """Waits; returns (returncode, log text)."""
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log_file.close()
    with open(proc.log_path) as f:
        return proc.returncode, f.read()


def _checkpoint_steps(model_dir):
    """Steps of the complete checkpoints the model dir's state lists."""
    state = tf.train.get_checkpoint_state(str(model_dir))
    if state is None:
        return []
    return [int(p.rsplit('-', 1)[1]) for p in state.all_model_checkpoint_paths]


def _indexed_checkpoints(model_dir):
    """Steps of every ckpt-N.index on disk (listed in the state or not)."""
    return sorted(int(re.search(r'ckpt-(\d+)\.index$', p).group(1))
                  for p in glob.glob(os.path.join(str(model_dir),
                                                  'ckpt-*.index')))


def _assert_finite(checkpoint_prefix):
    reader = tf.train.load_checkpoint(checkpoint_prefix)
    n = 0
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == 'f':
            n += 1
            assert np.all(np.isfinite(value)), (checkpoint_prefix, name)
    assert n > 100  # the model's weights, not only counters


def _damage(path, record, position):
    """Flips the byte at `position` of record `record` (0 = its length
    field); returns the record's offset. Walks the uint64 lengths."""
    with open(path, 'r+b') as f:
        offset = 0
        for _ in range(record):
            f.seek(offset)
            offset += 12 + int.from_bytes(f.read(8), 'little') + 4
        f.seek(offset + position)
        byte = f.read(1)[0]
        f.seek(offset + position)
        f.write(bytes([byte ^ 0xff]))
    return offset


def _global_step(checkpoint_prefix):
    reader = tf.train.load_checkpoint(checkpoint_prefix)
    return int(reader.get_tensor('global_step/.ATTRIBUTES/VARIABLE_VALUE'))


@pytest.fixture(scope='module')
def failure_runs(records, tmp_path_factory):
    """Starts the NaN, loss-bound and corrupt-record runs concurrently."""
    root = tmp_path_factory.mktemp('cli_failures')
    corrupt = str(root / 'corrupt-00000-of-00001.tfrecord')
    shutil.copy(records, corrupt)
    offset = _damage(corrupt, 3, 2)  # record 3's length field
    # A payload byte of record 6: past the payloads the pre-flight check
    # verifies, so training starts and the reader fails.
    assert tfrecord_check.DEFAULT_CRC_RECORDS < 6
    late = str(root / 'late-00000-of-00001.tfrecord')
    shutil.copy(records, late)
    late_offset = _damage(late, 6, 12 + 100)
    runs = {}
    # Steps 1-2 at lr 0.01, then an infinite rate: the update of step 3
    # leaves non-finite weights.
    runs['nan'] = _start(_command(
        root / 'nan', records, 'trainer.train_steps=6',
        'trainer.checkpoint_interval=1',
        'trainer.optimizer_config.warmup.linear.warmup_steps=1',
        'trainer.optimizer_config.warmup.linear.warmup_learning_rate=0.01',
        'trainer.optimizer_config.learning_rate.type=stepwise',
        'trainer.optimizer_config.learning_rate.stepwise.boundaries=[1]',
        'trainer.optimizer_config.learning_rate.stepwise.values=[0.01,.inf]'),
        str(root / 'nan.log'))
    # The loss (~5 at init) exceeds the bound from step 3 on.
    runs['bound'] = _start(_command(
        root / 'bound', records, 'trainer.train_steps=6',
        'trainer.checkpoint_interval=1', 'trainer.loss_upper_bound=1.0',
        'trainer.recovery_begin_steps=3'), str(root / 'bound.log'))
    runs['corrupt'] = _start(_command(
        root / 'corrupt', corrupt, 'trainer.train_steps=2'),
        str(root / 'corrupt.log'))
    runs['late'] = _start(_command(
        root / 'late', late, 'trainer.train_steps=2'), str(root / 'late.log'))
    yield {'root': root, 'corrupt_file': corrupt, 'corrupt_offset': offset,
           'late_file': late, 'late_offset': late_offset, **runs}
    for proc in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log_file.close()


# Requests `failure_runs` so that those runs overlap this one.
# pylint: disable-next=unused-argument
def test_sigkill_and_resume(records, tmp_path, failure_runs):
    # Async checkpointing (the default) is kept: the checkpoint state file is
    # written by the save's completion callback, so it only ever lists
    # complete checkpoints, which is what this test relies on.
    model_dir = tmp_path / 'run'
    cmd = _command(model_dir, records, 'trainer.train_steps=10',
                   'trainer.checkpoint_interval=2')
    first = _start(cmd, str(tmp_path / 'first.log'))
    deadline = time.time() + TIMEOUT
    while not _checkpoint_steps(model_dir):
        assert first.poll() is None, open(first.log_path).read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    code, log1 = _finish(first)
    assert code == -signal.SIGKILL
    killed_steps = _checkpoint_steps(model_dir)
    resume_step = killed_steps[-1]
    assert 1 <= resume_step < 10, 'the run ended before it was killed'
    assert 'training until step 10' in log1

    code, log2 = _finish(_start(cmd, str(tmp_path / 'second.log')))
    assert code == 0, log2[-3000:]
    # The restart restored the last complete checkpoint ...
    assert f'restored model from {model_dir}/ckpt-{resume_step}.' in log2
    assert START_LINE.findall(log2) == [(str(resume_step), '10')]
    # ... ran exactly the remaining steps, once each ...
    steps = [int(s) for s in STEP_LINE.findall(log2)]
    assert steps == list(range(resume_step + 1, 11))
    # ... and kept the killed run's checkpoints: no gap wider than the
    # interval, the last at train_steps.
    saved = [int(s) for s in SAVED_LINE.findall(log2)]
    assert saved and min(saved) > resume_step and saved[-1] == 10
    all_steps = _checkpoint_steps(model_dir)
    assert all_steps == killed_steps + saved
    assert all(0 < b - a <= 2 for a, b in zip(all_steps, all_steps[1:]))
    final = tf.train.latest_checkpoint(str(model_dir))
    assert final.endswith('ckpt-10') and _global_step(final) == 10
    _assert_finite(final)


def test_nan_loss_stops_before_checkpointing_bad_weights(failure_runs):
    code, log = _finish(failure_runs['nan'])
    assert code != 0
    assert 'RuntimeError: The loss value is NaN after training loop' in log
    model_dir = failure_runs['root'] / 'nan'
    # Steps 1 and 2 are healthy and checkpointed; step 3's update is not.
    assert _indexed_checkpoints(model_dir) == [1, 2]
    assert _checkpoint_steps(model_dir) == [1, 2]
    for step in (1, 2):
        _assert_finite(str(model_dir / f'ckpt-{step}'))
    assert [int(s) for s in STEP_LINE.findall(log)] == [1, 2]


def test_loss_above_upper_bound_stops_with_message(failure_runs):
    code, log = _finish(failure_runs['bound'])
    assert code != 0
    match = re.search(r'RuntimeError: The loss value is ([0-9.e+-]+), which is '
                      r'larger than the bound 1\.0', log)
    assert match, log[-3000:]
    assert float(match.group(1)) > 1.0
    model_dir = failure_runs['root'] / 'bound'
    # recovery_begin_steps=3: steps 1-2 pass and are checkpointed, step 3
    # trips the bound before its checkpoint.
    assert _indexed_checkpoints(model_dir) == [1, 2]
    _assert_finite(str(model_dir / 'ckpt-2'))


def _corrupt_record_error(log):
    """The one CorruptRecordError line of a run's log, without the class."""
    prefix = 'maskconver_tf.data.tfrecord_check.CorruptRecordError: '
    lines = [line for line in log.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, log[-3000:]
    return lines[0][len(prefix):]


def test_corrupt_record_names_file_and_record(failure_runs):
    code, log = _finish(failure_runs['corrupt'])
    assert code != 0
    path = failure_runs['corrupt_file']
    assert _corrupt_record_error(log).startswith(
        f'{path}: record 3 at byte {failure_runs["corrupt_offset"]}: length '
        'CRC mismatch')
    assert 'DataLossError' not in log
    assert 'training until step' not in log  # failed before training
    assert not _indexed_checkpoints(failure_runs['root'] / 'corrupt')


def test_corrupt_payload_past_the_preflight_names_file_and_record(
        failure_runs):
    code, log = _finish(failure_runs['late'])
    assert code != 0
    assert 'training until step' in log  # the pre-flight check passed
    path = failure_runs['late_file']
    error = _corrupt_record_error(log)
    assert error.startswith(
        f'{path}: record 6 at byte {failure_runs["late_offset"]}: data CRC '
        'check failed'), error
    assert not _indexed_checkpoints(failure_runs['root'] / 'late')


EVAL_RUN = ('task.validation_data.global_batch_size=4',
            'trainer.validation_steps=2', 'trainer.train_steps=4',
            'trainer.validation_interval=2', 'trainer.checkpoint_interval=2',
            'trainer.continuous_eval_timeout=1')
VALIDATION_LOSS = re.compile(
    r"'validation_loss': (?:np\.float32\()?([-+\d.e]+)")


@pytest.fixture(scope='module')
def eval_runs(records, tmp_path_factory):
    """train_and_eval for 4 steps, then eval and continuous_eval together."""
    root = tmp_path_factory.mktemp('cli_eval')
    model_dir = root / 'run'
    code, log = _finish(_start(
        _command(model_dir, records, *EVAL_RUN, mode='train_and_eval'),
        str(root / 'train_and_eval.log')))
    assert code == 0, log[-3000:]
    later = {mode: _start(_command(model_dir, records, *EVAL_RUN, mode=mode),
                          str(root / f'{mode}.log'))
             for mode in ('eval', 'continuous_eval')}
    logs = {'train_and_eval': log}
    for mode, proc in later.items():
        code, logs[mode] = _finish(proc)
        assert code == 0, (mode, logs[mode][-3000:])
    return model_dir, logs


def test_train_and_eval_writes_params_and_summaries(eval_runs):
    from official.modeling import optimization
    from maskconver_tf import inference
    from maskconver_tf.visualization import plots
    model_dir, _ = eval_runs
    params = inference.load_params(params_yaml=str(model_dir / 'params.yaml'))
    assert params.trainer.train_steps == 4
    assert params.task.model.input_size == [64, 64, 3]
    assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-4')

    scalars = plots.read_scalars(str(model_dir))
    train = {tag: dict(series) for tag, series in scalars['train'].items()}
    for tag in ('total_loss', 'model_loss', 'l2_loss', 'center_loss',
                'mask_bce_loss', 'mask_dice_loss', 'num_dropped_segments',
                'learning_rate'):
        assert sorted(train[tag]) == [1, 2, 3, 4], tag
    # K 50 holds every segment of a 64 px shapes image.
    assert set(train['num_dropped_segments'].values()) == {0.0}
    for step in range(1, 5):
        assert train['total_loss'][step] == pytest.approx(
            train['model_loss'][step] + train['l2_loss'][step], rel=1e-5)
        losses = params.task.losses
        assert train['model_loss'][step] == pytest.approx(
            losses.loss_weight * (
                train['center_loss'][step]
                + losses.mask_weight * train['mask_bce_loss'][step]
                + losses.dice_weight * train['mask_dice_loss'][step]),
            rel=1e-5)
        assert 1.0 < train['total_loss'][step] < 20.0
    # The logged rate is the configured warm-up + cosine schedule's value.
    schedule = optimization.OptimizerFactory(
        params.trainer.optimizer_config).build_learning_rate()
    np.testing.assert_allclose(
        [train['learning_rate'][s] for s in range(1, 5)],
        [float(schedule(s)) for s in range(1, 5)], rtol=1e-5)
    assert train['learning_rate'][4] > train['learning_rate'][1] > 0

    validation = {tag: dict(series)
                  for tag, series in scalars['validation'].items()}
    for group, categories in (('All', 7), ('Things', 4), ('Stuff', 3)):
        for metric in ('pq', 'sq', 'rq'):
            values = validation[f'panoptic_quality/{group}_{metric}']
            assert sorted(values) == [2, 4], (group, metric)
            assert all(0.0 <= v <= 1.0 for v in values.values())
        assert validation[f'panoptic_quality/{group}_num_categories'] == {
            2: categories, 4: categories}
    assert sorted(validation['validation_loss']) == [2, 4]


def test_eval_modes_reproduce_the_last_evaluation(eval_runs):
    _, logs = eval_runs
    losses = {mode: [float(v) for v in VALIDATION_LOSS.findall(log)]
              for mode, log in logs.items()}
    # train_and_eval evaluated at steps 2 and 4 (absl and stdout both print
    # each output); eval and continuous_eval evaluate ckpt-4 once and exit.
    at_4 = losses['train_and_eval'][-1]
    assert len(set(losses['train_and_eval'])) == 2
    for mode in ('eval', 'continuous_eval'):
        assert losses[mode] and set(losses[mode]) == {losses[mode][0]}, mode
        assert losses[mode][0] == pytest.approx(at_4, rel=1e-5), mode
    assert 'training until step' not in logs['eval']
    assert 'training until step' not in logs['continuous_eval']


def test_help_lists_flags():
    out = subprocess.run(
        [sys.executable, '-m', 'maskconver_tf.train', '--help'],
        capture_output=True, text=True, env=_env(), timeout=TIMEOUT,
        check=False)
    # absl exits 1 after printing --help (Model Garden's train.py too).
    assert out.returncode == 1
    text = out.stdout
    assert 'Trains / evaluates MaskConver' in text
    for flag in ('--experiment', '--mode', '--model_dir', '--config_file',
                 '--params_override', '--[no]enable_async_checkpointing'):
        assert flag in text, flag
    assert 'Traceback' not in out.stderr
