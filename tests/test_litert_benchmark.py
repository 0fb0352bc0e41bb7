"""benchmarks/latency.py --litert_benchmark: LiteRT's benchmark tool next to
our loop. No latency value is asserted (shared CI machine)."""

import functools
import json
import math

import pytest
import tensorflow as tf
import tf_keras as keras

from benchmarks import latency
from benchmarks import results_io


@pytest.fixture(scope='module')
def tiny_tflite(tmp_path_factory):
    model = keras.Sequential([
        keras.layers.Input((32, 32, 3), batch_size=1),
        keras.layers.Conv2D(32, 3, padding='same', activation='relu'),
        keras.layers.Conv2D(32, 3, padding='same')])
    path = tmp_path_factory.mktemp('litert') / 'tiny.tflite'
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return str(path)


def _positive(*values):
    return all(math.isfinite(v) and v > 0 for v in values)


@pytest.mark.parametrize('use_xnnpack', [True, False])
def test_tool_runs_with_our_settings(tiny_tflite, use_xnnpack):
    from ai_edge_litert.tools import benchmark_litert_model as tool
    make_options = tool.create_model_options
    r = latency.litert_benchmark(tiny_tflite, num_threads=2, num_runs=7,
                                 warmup_runs=2, use_xnnpack=use_xnnpack)
    assert r['threads'] == 2
    assert r['num_runs'] == 7
    # Our untimed first inference is one more warm-up run for the tool.
    assert r['num_warmup_runs'] == 3
    assert r['api'] == 'CompiledModel'
    assert r['accelerators'] == ['CPU']
    assert r['delegate'].startswith('XNNPACK' if use_xnnpack else 'builtin')
    assert _positive(r['init_ms'], r['avg_ms'], r['median_ms'], r['p95_ms'])
    assert tool.create_model_options is make_options


def test_tool_failure_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match='benchmark_litert_model exited'):
        latency.litert_benchmark(str(tmp_path / 'missing.tflite'))


def test_cli_json_printout_and_record(tiny_tflite, tmp_path, capsys,
                                      monkeypatch):
    record = tmp_path / 'RESULTS.md'
    monkeypatch.setattr(results_io, 'append_section', functools.partial(
        results_io.append_section, path=str(record)))
    out = tmp_path / 'r.json'
    latency.main(['--tflite', tiny_tflite, '--num_threads', '2',
                  '--num_runs', '7', '--warmup_runs', '2',
                  '--litert_benchmark', '--json', str(out),
                  '--record', 'tiny'])
    text = capsys.readouterr().out
    r = json.loads(out.read_text())
    ours, theirs, c = r, r['litert_benchmark'], r['litert_comparison']
    assert ours['num_runs'] == theirs['num_runs'] == 7
    assert set(latency.LITERT_KEYS) <= set(theirs)
    assert _positive(ours['mean_ms'], ours['p50_ms'], ours['init_ms'],
                     theirs['avg_ms'], theirs['median_ms'],
                     theirs['init_ms'])
    assert set(c) == {'mean_ratio', 'p50_ratio', 'init_ratio', 'tolerance',
                      'disagree', 'disagree_on'}
    assert c['mean_ratio'] == pytest.approx(ours['mean_ms']
                                            / theirs['avg_ms'])
    assert c == latency.compare_with_litert(ours, theirs)
    assert 'LiteRT benchmark_litert_model (CompiledModel' in text
    assert 'ours / LiteRT: mean' in text
    assert ('DISAGREE' in text) == c['disagree']
    assert 'ours / LiteRT: mean' in record.read_text()


@pytest.mark.parametrize('ours, theirs, off', [
    (10.0, 11.5, True), (11.5, 10.0, True), (10.0, 10.5, False),
    (10.5, 10.0, False), (10.0, 10.0, False), (1.0, 0.0, True)])
def test_disagreement_threshold(ours, theirs, off):
    assert latency.litert_disagrees(ours, theirs) is off


def test_compare_flags_mean_or_p50_not_init():
    theirs = {'avg_ms': 10.0, 'median_ms': 10.0, 'init_ms': 5.0}
    c = latency.compare_with_litert(
        {'mean_ms': 11.5, 'p50_ms': 10.5, 'init_ms': 5.0}, theirs)
    assert c['disagree'] and c['disagree_on'] == ['mean']
    assert c['mean_ratio'] == pytest.approx(1.15)
    c = latency.compare_with_litert(
        {'mean_ms': 10.5, 'p50_ms': 8.5, 'init_ms': 5.0}, theirs)
    assert c['disagree_on'] == ['p50']
    # Init is one sample of different work: shown, never flagged.
    c = latency.compare_with_litert(
        {'mean_ms': 10.5, 'p50_ms': 10.0, 'init_ms': 10.0}, theirs)
    assert not c['disagree'] and c['disagree_on'] == []
    assert c['init_ratio'] == pytest.approx(2.0)


def test_matrix_passes_the_option_through(tiny_tflite, tmp_path, capsys,
                                          monkeypatch):
    from benchmarks import tflite_matrix
    monkeypatch.setattr(tflite_matrix, 'shapes_calibration',
                        lambda *args: [])
    monkeypatch.setattr(tflite_matrix, 'build_models',
                        lambda *args: [('cnn', 'float32', tiny_tflite)])
    tflite_matrix.main(['--sizes', '32', '--work_dir', str(tmp_path),
                        '--num_runs', '5', '--rounds', '2', '--xnnpack',
                        'on', '--litert_benchmark'])
    table = [line for line in capsys.readouterr().out.split('\n')
             if line.startswith('|')]
    assert table[0].endswith('| LiteRT tool mean ms | ours / LiteRT |')
    cells = [c.strip() for c in table[2].strip('|').split('|')]
    assert len(cells) == len(table[0].strip('|').split('|'))
    assert _positive(float(cells[-2]), float(cells[-1].split()[0]))
