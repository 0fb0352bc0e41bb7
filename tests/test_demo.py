"""`make demo`'s code path on a smoke budget: every stage runs for real.

Data -> TFRecords -> train CLI -> official PQ -> SavedModel + float32/int8
.tflite -> PQ of both -> latency -> overlays -> REPORT.md; then a second
run reuses data and checkpoint.
"""

import json
import os
import re

import pytest

from maskconver_tf import demo


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo')
    demo.main(['--output_dir', str(out), '--budget', 'smoke'])
    return out


def test_every_stage_wrote_its_outputs(smoke_run):
    out = smoke_run
    b = demo.BUDGETS['smoke']
    with open(out / 'data' / 'train' / 'panoptic.json') as f:
        train = json.load(f)
    assert len(train['images']) == b.num_train
    assert train['info']['style'] == demo.TRAIN_STYLE
    for model_dir in ('model_128', 'model'):
        assert (out / model_dir / 'params.yaml').exists()
        assert any(n.startswith(f'ckpt-{b.train_steps}.')
                   for n in os.listdir(out / model_dir))
    with open(out / 'data' / 'shifted' / 'panoptic.json') as f:
        shifted = json.load(f)
    assert len(shifted['images']) == b.num_shifted
    assert shifted['info']['style'] == 'shifted'
    assert not (out / 'tfrecords' / 'shifted-00000-of-00002.tfrecord').exists()
    for name in ('checkpoint', 'tflite_float32', 'tflite_int8',
                 'tflite_float32_shifted', 'tflite_int8_shifted'):
        with open(out / 'eval' / name / 'pq.json') as f:
            result = json.load(f)
        for group in ('All', 'Things', 'Stuff'):
            pq = result[group]['pq']
            assert pq is None or 0.0 <= pq <= 1.0, (name, group, pq)
        # Every shapes category is scored (a tiny shifted set may lack one).
        assert result['All']['n'] >= (6 if 'shifted' in name else 7)
    for name in ('float32', 'int8'):
        with open(out / 'latency' / f'{name}.json') as f:
            lat = json.load(f)
        assert lat['mean_ms'] > 0 and lat['p90_ms'] >= lat['p50_ms']
    for split in ('predict', 'predict_shifted'):
        assert len(os.listdir(out / split / 'overlays')) == b.num_overlays
    for name in ('training_curves', 'training_curves_model_128'):
        assert (out / 'report' / f'{name}.png').stat().st_size > 1000
    for name in ('overlays_vs_groundtruth', 'overlays_vs_groundtruth_shifted'):
        assert (out / 'report' / f'{name}.png').stat().st_size > 1000


def test_report_holds_numbers_and_commands(smoke_run):
    text = (smoke_run / 'REPORT.md').read_text()
    rows = re.findall(r'^\| (checkpoint|tflite float32|tflite int8) \| '
                      r'((?:[-\d.]+ \| ){5}[-\d.]+) \|$', text, re.M)
    assert [r[0] for r in rows] == ['checkpoint', 'tflite float32',
                                    'tflite int8']
    cells = {name: row.split(' | ') for name, row in rows}
    with open(smoke_run / 'eval' / 'checkpoint' / 'pq.json') as f:
        all_pq = json.load(f)['All']['pq']
    assert cells['checkpoint'][0] == f'{100 * all_pq:.2f}'
    assert cells['checkpoint'][3] == '-'  # the checkpoint is scored on val
    with open(smoke_run / 'eval' / 'tflite_int8_shifted' / 'pq.json') as f:
        shifted_pq = json.load(f)['All']['pq']
    assert cells['tflite int8'][3] == f'{100 * shifted_pq:.2f}'
    assert 'maskconver_tf.train' in text and 'export_tflite.py' in text
    assert re.search(r'PQ drop \(All\): val [-+]\d+\.\d+, shifted '
                     r'[-+]\d+\.\d+', text)
    assert 'overlays_vs_groundtruth_shifted.png' in text


def test_second_stage_starts_from_the_first_at_its_own_size(smoke_run):
    import yaml
    b = demo.BUDGETS['smoke']
    with open(smoke_run / 'model' / 'params.yaml') as f:
        second = yaml.safe_load(f)
    with open(smoke_run / 'model_128' / 'params.yaml') as f:
        first = yaml.safe_load(f)
    assert second['task']['init_checkpoint'] == str(smoke_run / 'model_128')
    assert second['task']['init_checkpoint_modules'] == 'all'
    assert first['task']['init_checkpoint'] in (None, '')
    assert [first['task']['model']['input_size'][0],
            second['task']['model']['input_size'][0]] == list(b.input_sizes)
    # The fine-tune YAML's own settings survive the smoke overrides.
    assert second['task']['model']['panoptic_generator'][
        'small_area_threshold'] == 64
    log = (smoke_run / 'logs' / 'train_model.log').read_text()
    assert f"Restored ['all'] from {smoke_run / 'model_128' / 'ckpt-'}" in log


def test_second_run_reuses_data_and_checkpoint(smoke_run, capsys):
    b = demo.BUDGETS['smoke']
    d = demo.Demo(str(smoke_run), 'smoke')
    d.data()
    d.train()
    out = capsys.readouterr().out
    assert 'reusing' in out
    # The trainer found the finished checkpoint: no new checkpoint step.
    for model_dir in ('model_128', 'model'):
        steps = sorted(int(m.group(1))
                       for n in os.listdir(smoke_run / model_dir)
                       if (m := re.match(r'ckpt-(\d+)\.index', n)))
        assert steps[-1] == b.train_steps, model_dir
    assert [s for s in d.commands if s[0] == 'data'] == []


def test_params_override_goes_last_and_sets_the_export_size(tmp_path):
    assert demo.Demo(str(tmp_path), 'smoke').input_size == 128
    d = demo.Demo(str(tmp_path), 'smoke', params_override=(
        'task.model.input_size=[80,80,3],'
        'task.model.panoptic_generator.output_size=[80,80]'))
    assert d.input_size == 80 and d.image_size == 64
    assert d.overrides().endswith('output_size=[80,80]')
    first = d.resolved_params(d.stages[0]).task.model.input_size
    assert first[0] == 80  # the user's overrides win in every stage
    with pytest.raises(KeyError, match='no_such_field'):
        demo.Demo(str(tmp_path), 'smoke',
                  params_override='task.no_such_field=1').input_size


def test_levers_table_row_carries_the_runs_numbers(smoke_run, capsys):
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from benchmarks import demo_levers
    with open(smoke_run / 'report' / 'summary.json') as f:
        summary = json.load(f)
    b = demo.BUDGETS['smoke']
    assert (summary['train_steps'], summary['batch_size'],
            summary['input_size']) == (b.train_steps, b.batch_size,
                                       b.input_sizes[-1])
    assert [s['input_size'] for s in summary['stages']] == list(b.input_sizes)
    stage_s = [summary['timings_s'][f'train {s["name"]}']
               for s in summary['stages']]
    assert summary['timings_s']['train'] == pytest.approx(sum(stage_s), 1e-3)
    assert summary['train_images_per_s'] == pytest.approx(
        2 * b.train_steps * b.batch_size / summary['timings_s']['train'])
    demo_levers.main([f'{smoke_run}:smoke'])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[0] == 'smoke' and cells[2] == '64 -> 128'
    assert cells[3] == ' + '.join([f'{b.train_steps} x {b.batch_size}'] * 2)
    with open(smoke_run / 'eval' / 'tflite_float32_shifted' / 'pq.json') as f:
        shifted = json.load(f)
    want = ' / '.join('-' if shifted[g]['pq'] is None
                      else f'{100 * shifted[g]["pq"]:.2f}'
                      for g in ('All', 'Things', 'Stuff'))
    assert cells[5] == want
    with pytest.raises(SystemExit, match='summary.json not found'):
        demo_levers.main([str(smoke_run / 'nowhere')])


def test_postprocess_sweep_reruns_only_the_merge(smoke_run, tmp_path, capsys):
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from benchmarks import postprocess_sweep as sweep
    assert sweep.parse_grid('overlap_threshold=0.5,0.7;small_area_threshold=8'
                            ) == [('overlap_threshold', [0.5, 0.7]),
                                  ('small_area_threshold', [8])]
    assert sweep.settings(sweep.parse_grid(
        'overlap_threshold=0.6;small_area_threshold=1,2')) == [
            {'overlap_threshold': 0.6, 'small_area_threshold': 1},
            {'overlap_threshold': 0.6, 'small_area_threshold': 2}]
    with pytest.raises(SystemExit, match='peak_kernel_size'):
        sweep.parse_grid('peak_kernel_size=3')
    with pytest.raises(SystemExit, match='not ints'):
        sweep.parse_grid('small_area_threshold=0.5')
    # 0.01 is the YAML's threshold; no sigmoid score exceeds 1.0.
    sweep.main(['--checkpoint_path', str(smoke_run / 'model'),
                '--grid', 'object_mask_threshold=0.01,1.0',
                '--output_dir', str(tmp_path)])
    out = capsys.readouterr().out
    with open(smoke_run / 'eval' / 'checkpoint' / 'pq.json') as f:
        trained_pq = json.load(f)['All']['pq']
    rows = dict(re.findall(r'^\| ([\d.]+) \| ([\d.]+) \|', out, re.M))
    assert rows['0.01'] == f'{100 * trained_pq:.2f}'
    assert rows['1.0'] == '0.00'
    assert '| 0.01 | ' in out and '(as trained)' in out
    b = demo.BUDGETS['smoke']
    assert f'network runs: {b.num_val} (one per image)' in out
