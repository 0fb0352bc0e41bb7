"""The embedded default: the whole MaskConver job on a laptop CPU.

    python -m maskconver_tf.demo --output_dir demo_output [--fresh] [--budget full|smoke]
        [--experiment maskconver_shapes|maskconver_r50_convnext_unet_shapes]

Stages (each is the same command a user would run by hand; REPORT.md lists
them): generate the shapes set (train in the `varied` look, val in the clean
look, and the held-out `shifted` look) -> TFRecords -> train through the
train CLI: `maskconver_shapes` in two stages (128 px, then 256 px from that
checkpoint: progressive resizing), the flagship's
`maskconver_r50_convnext_unet_shapes` in one -> official PQ on val -> export
SavedModel, float32 and int8 .tflite -> official PQ of both .tflite files on
val and on the shifted set -> latency of both -> overlays for a few val and
shifted images -> `REPORT.md`. A second run reuses data and checkpoints
unless --fresh. The 'smoke' budget runs the same code path in about two
minutes (tests).
"""

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Optional, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = 'maskconver_shapes'
# The held-out split: the shapes generator's 'shifted' style, own seed.
SHIFTED = 'shifted'
# The generator's look of the training split (val keeps the clean look).
TRAIN_STYLE = 'varied'


@dataclasses.dataclass(frozen=True)
class TrainStage:
    """One run of the train CLI.

    config_files: YAMLs under experiments/, applied in order; init_from: the
    model_dir (under output_dir) of an earlier stage whose checkpoint
    initializes this one (`task.init_checkpoint`).
    """
    name: str
    model_dir: str
    config_files: Tuple[str, ...]
    init_from: Optional[str] = None


# Experiments the demo runs and their training stages; the last stage's
# model_dir is 'model' and its config is the one every later stage serves.
RECIPES = {
    'maskconver_shapes': (
        TrainStage('128 px', 'model_128', ('maskconver_shapes.yaml',)),
        TrainStage('256 px', 'model', ('maskconver_shapes.yaml',
                                       'maskconver_shapes_256_finetune.yaml'),
                   init_from='model_128')),
    'maskconver_r50_convnext_unet_shapes': (
        TrainStage('train', 'model',
                   ('maskconver_r50_convnext_unet_shapes.yaml',)),),
}
EXPERIMENTS = tuple(RECIPES)


@dataclasses.dataclass
class Budget:
    num_train: int
    num_val: int
    num_shifted: int
    image_size: int
    train_steps: Optional[int]  # per stage; None: the YAMLs' recipe
    batch_size: Optional[int]
    # Model input side per training stage (the last entry for the rest);
    # None: the YAMLs'.
    input_sizes: Optional[Tuple[int, ...]]
    calibration_steps: int
    latency_runs: int
    num_overlays: int


BUDGETS = {
    # Chosen by measurement: see experiments/maskconver_shapes.yaml.
    'full': Budget(num_train=2000, num_val=200, num_shifted=200,
                   image_size=128,
                   train_steps=None, batch_size=None, input_sizes=None,
                   calibration_steps=100,
                   latency_runs=50, num_overlays=8),
    'smoke': Budget(num_train=24, num_val=6, num_shifted=4, image_size=64,
                    train_steps=6, batch_size=4, input_sizes=(64, 128),
                    calibration_steps=4, latency_runs=3,
                    num_overlays=2),
}


def _banner(title):
    line = '=' * 78
    print(f'\n{line}\n== {title}\n{line}', flush=True)


class Demo:
    """Runs the stages into `output_dir`, recording commands and timings."""

    def __init__(self, output_dir, budget_name='full', fresh=False,
                 experiment=EXPERIMENT, params_override=''):
        self.out = os.path.abspath(output_dir)
        self.budget_name = budget_name
        self.b = BUDGETS[budget_name]
        if experiment not in EXPERIMENTS:
            raise ValueError(f'demo: unknown experiment {experiment!r}; '
                             f'expected one of {EXPERIMENTS}')
        if fresh and os.path.exists(self.out):
            shutil.rmtree(self.out)
        os.makedirs(self.out, exist_ok=True)
        self.commands = []
        self.timings = {}
        self.experiment = experiment
        self.stages = RECIPES[experiment]
        # The user's overrides go last, so they win over the demo's own.
        self.params_override = params_override.strip(',')

    # Helpers ----------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def run(self, stage, args, log_name=None):
        """Runs `python args...`, streaming output; records the command."""
        cmd = [sys.executable] + args
        self.commands.append((stage, ' '.join(shlex.quote(a) for a in cmd)))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
        t0 = time.time()
        if log_name:
            log_path = self.path('logs', log_name)
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            with open(log_path, 'w') as log:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        env=env, cwd=REPO_ROOT)
                for line in proc.stdout:
                    log.write(line)
                    if _worth_showing(line):
                        print(line, end='', flush=True)
                rc = proc.wait()
        else:
            rc = subprocess.call(cmd, env=env, cwd=REPO_ROOT)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.time() - t0
        if rc != 0:
            hint = f' (log: {self.path("logs", log_name)})' if log_name else ''
            raise SystemExit(f'demo: stage "{stage}" failed with exit code '
                             f'{rc}{hint}')

    def _stage(self, stage):
        return self.stages[-1] if stage is None else stage

    def config_files(self, stage=None):
        """Absolute YAML paths of `stage` (default: the last, served one)."""
        return [os.path.join(REPO_ROOT, 'experiments', name)
                for name in self._stage(stage).config_files]

    def overrides(self, stage=None, **extra):
        """--params_override of `stage` (default: the last stage)."""
        b = self.b
        stage = self._stage(stage)
        items = {
            'task.train_data.input_path': self.path('tfrecords', 'train*'),
            'task.validation_data.input_path': self.path('tfrecords', 'val*'),
            'runtime.distribution_strategy': 'one_device',
            'runtime.num_gpus': 0,
        }
        if b.input_sizes:
            sizes = b.input_sizes
            s = sizes[min(self.stages.index(stage), len(sizes) - 1)]
            items.update({
                'task.model.input_size': f'[{s},{s},3]',
                'task.model.panoptic_generator.output_size': f'[{s},{s}]'})
        if b.batch_size:
            items.update({
                'task.train_data.global_batch_size': b.batch_size,
                'task.validation_data.global_batch_size': b.batch_size})
        if b.train_steps:
            items.update({
                'trainer.train_steps': b.train_steps,
                'trainer.steps_per_loop': b.train_steps,
                'trainer.summary_interval': b.train_steps,
                'trainer.checkpoint_interval': b.train_steps,
                'trainer.validation_interval': b.train_steps,
                'trainer.optimizer_config.learning_rate.cosine.decay_steps':
                    b.train_steps,
                'trainer.optimizer_config.warmup.linear.warmup_steps': 1,
            })
        items.update(extra)
        text = ','.join(f'{k}={v}' for k, v in items.items())
        return f'{text},{self.params_override}' if self.params_override else text

    def experiment_args(self, stage=None, **extra):
        args = ['--experiment', self.experiment]
        for path in self.config_files(stage):
            args += ['--config_file', path]
        return args + ['--params_override', self.overrides(stage, **extra)]

    @property
    def image_size(self):
        """Side of the generated images (px)."""
        return self.b.image_size

    def resolved_params(self, stage=None):
        """The experiment config `stage` runs: YAMLs, then overrides."""
        from maskconver_tf import registry_imports  # noqa: F401
        from maskconver_tf.serving import export_module
        return export_module.load_params(
            self.experiment, self.config_files(stage), self.overrides(stage))

    @property
    def input_size(self):
        """Side of the served model's input (px): the last stage's config,
        which --params_override may set apart from the data's."""
        return int(self.resolved_params().task.model.input_size[0])

    def summary(self, pq):
        """What benchmarks/demo_levers.py tabulates (report/summary.json)."""
        stages, images = [], 0
        for stage in self.stages:
            params = self.resolved_params(stage)
            steps = int(params.trainer.train_steps)
            batch = int(params.task.train_data.global_batch_size)
            images += steps * batch
            stages.append({
                'name': stage.name, 'model_dir': stage.model_dir,
                'input_size': int(params.task.model.input_size[0]),
                'train_steps': steps, 'batch_size': batch,
                'seconds': self.timings.get(f'train {stage.name}', 0.0)})
        last = stages[-1]
        train_s = self.timings.get('train', 0.0)
        return {
            'experiment': self.experiment, 'budget': self.budget_name,
            'params_override': self.params_override,
            'input_size': last['input_size'],
            'train_steps': last['train_steps'],
            'batch_size': last['batch_size'],
            'stages': stages,
            'timings_s': dict(self.timings),
            # The train stages' wall time includes start-up and in-loop
            # validation, so this is a lower bound of the step's rate.
            'train_images_per_s': images / train_s if train_s else None,
            'pq': {name: {split: {g: (r.get(g) or {}).get('pq')
                                  for g in ('All', 'Things', 'Stuff')}
                          for split, r in results.items()}
                   for name, results in pq.items()},
        }

    # Stages -----------------------------------------------------------------
    def data(self):
        _banner(f'1/8 data: generate the shapes set (train in the '
                f'{TRAIN_STYLE!r} look, val, and the shifted look no run '
                'trains on) and convert to TFRecords')
        for split, n, style, start in (
                ('train', self.b.num_train,
                 ['--seed', '1', '--style', TRAIN_STYLE], 1),
                ('val', self.b.num_val, ['--seed', '2'], 1000001),
                ('shifted', self.b.num_shifted, ['--style', 'shifted'],
                 2000001)):
            target = self.path('data', split)
            if os.path.exists(os.path.join(target, 'panoptic.json')):
                print(f'reusing {target}')
            else:
                self.run('data', ['-m', 'maskconver_tf.data.shapes',
                                  '--output_dir', target, '--num_images', str(n),
                                  '--image_size', str(self.image_size),
                                  '--start_image_id', str(start)] + style)
            if split == SHIFTED:
                continue  # scored from its files; never read by training
            prefix = self.path('tfrecords', split)
            if os.path.exists(prefix + '-00000-of-00002.tfrecord'):
                print(f'reusing {prefix}-*')
                continue
            self.run('data', ['-m', 'maskconver_tf.data.create_tfrecords',
                              '--image_dir', os.path.join(target, 'images'),
                              '--panoptic_json',
                              os.path.join(target, 'panoptic.json'),
                              '--panoptic_masks_dir',
                              os.path.join(target, 'panoptic'),
                              '--output_prefix', prefix, '--num_shards', '2'])

    def train(self):
        for i, stage in enumerate(self.stages, start=1):
            _banner(f'2/8 train, stage {i}/{len(self.stages)} ({stage.name}): '
                    f'{self.experiment} through the train CLI (resumes from '
                    'the latest checkpoint)')
            extra = ({'task.init_checkpoint': self.path(stage.init_from)}
                     if stage.init_from else {})
            self.run(f'train {stage.name}', [
                '-m', 'maskconver_tf.train', '--mode', 'train_and_eval',
                '--model_dir', self.path(stage.model_dir),
                '--enable_async_checkpointing=false']
                + self.experiment_args(stage, **extra),
                log_name=f'train_{stage.model_dir}.log')
        self.timings['train'] = sum(self.timings[f'train {s.name}']
                                    for s in self.stages)

    def evaluate(self, name, model_flag, model_path, split='val'):
        suffix = '' if split == 'val' else f'_{split}'
        out = self.path('eval', name + suffix)
        self.run(f'evaluate {name} on {split}', [
            '-m', 'maskconver_tf.evaluate', model_flag, model_path,
            '--output_dir', out,
            '--gt_json', self.path('data', split, 'panoptic.json'),
            '--gt_dir', self.path('data', split, 'panoptic'),
            '--image_dir', self.path('data', split, 'images')]
            + self.experiment_args(), log_name=f'evaluate_{name}{suffix}.log')
        with open(os.path.join(out, 'pq.json')) as f:
            return json.load(f)

    def export(self):
        _banner('4/8 export: SavedModel (tflite input), float32 and int8 .tflite')
        export_dir = self.path('export', 'saved_model_tflite_input')
        s = self.input_size
        self.run('export', [
            os.path.join(REPO_ROOT, 'export', 'export_saved_model.py'),
            '--checkpoint_path', self.path('model'), '--export_dir', export_dir,
            '--batch_size', '1', '--input_type', 'tflite',
            '--input_image_size', f'{s},{s}'] + self.experiment_args(),
            log_name='export_saved_model.log')
        paths = {}
        for name, quant in (('float32', 'none'), ('int8', 'int8_full_fp32_io')):
            tflite = self.path('export',
                               f'{self.experiment}_{s}_{name}.tflite')
            self.run('export', [
                os.path.join(REPO_ROOT, 'export', 'export_tflite.py'),
                '--saved_model_dir', os.path.join(export_dir, 'saved_model'),
                '--tflite_path', tflite, '--quant_type', quant,
                '--calibration_steps', str(self.b.calibration_steps),
                '--calibration_data', self.path('tfrecords', 'train*')]
                + self.experiment_args(), log_name=f'export_{name}.log')
            paths[name] = tflite
        return paths

    def latency(self, tflite_paths):
        _banner('6/8 latency: LiteRT, 2 threads')
        results = {}
        os.makedirs(self.path('latency'), exist_ok=True)
        for name, path in tflite_paths.items():
            out = self.path('latency', f'{name}.json')
            self.run('latency', [
                os.path.join(REPO_ROOT, 'benchmarks', 'latency.py'),
                '--tflite', path, '--num_threads', '2',
                '--num_runs', str(self.b.latency_runs), '--json', out],
                log_name=f'latency_{name}.log')
            with open(out) as f:
                results[name] = json.load(f)
        return results

    def predict(self, split='val'):
        out = self.path('predict' if split == 'val' else f'predict_{split}')
        self.run('predict', [
            '-m', 'maskconver_tf.predict', '--model', self.path('model'),
            '--input', self.path('data', split, 'images'),
            '--output_dir', out, '--max_images', str(self.b.num_overlays)]
            + self.experiment_args(), log_name=f'predict_{split}.log')
        return out

    # Report -----------------------------------------------------------------
    def report(self, pq, latency, predict_dirs):
        _banner('8/8 report')
        from maskconver_tf.visualization import grid, plots
        figures = {}
        os.makedirs(self.path('report'), exist_ok=True)
        for stage in self.stages:
            suffix = '' if stage.model_dir == 'model' else f'_{stage.model_dir}'
            curve = self.path('report', f'training_curves{suffix}.png')
            plots.plot_training_curves(self.path(stage.model_dir), curve,
                                       title=f'training, {stage.name}')
            figures[f'curves {stage.name}'] = curve
        for split, predict_dir in predict_dirs.items():
            name = ('overlays_vs_groundtruth' if split == 'val'
                    else f'overlays_vs_groundtruth_{split}')
            grid_png = self.path('report', f'{name}.png')
            images, preds, gts, descriptor = _prediction_vs_groundtruth(
                predict_dir, self.path('data', split))
            grid.save_overlay_grid(grid_png, images, preds, gts, descriptor)
            figures[f'grid {split}'] = grid_png
        summary = self.summary(pq)
        with open(self.path('report', 'summary.json'), 'w') as f:
            json.dump(summary, f, indent=1)
        text = render_report(self, summary, pq, latency, figures)
        with open(self.path('REPORT.md'), 'w') as f:
            f.write(text)
        print(text)
        print(f'\nreport: {self.path("REPORT.md")}')

    def run_all(self):
        t0 = time.time()
        self.data()
        self.train()
        _banner('3/8 evaluate: official PQ of the checkpoint on val')
        pq = {'checkpoint': {'val': self.evaluate(
            'checkpoint', '--checkpoint_path', self.path('model'))}}
        tflite = self.export()
        _banner('5/8 evaluate: official PQ of the float32 and int8 .tflite '
                'on val and on the shifted set')
        for name, path in tflite.items():
            pq[f'tflite {name}'] = {
                split: self.evaluate(f'tflite_{name}', '--tflite', path, split)
                for split in ('val', SHIFTED)}
        latency = self.latency(tflite)
        _banner('7/8 predict: overlays for a few val and shifted images')
        predict_dirs = {split: self.predict(split) for split in ('val', SHIFTED)}
        self.timings['total'] = time.time() - t0
        self.report(pq, latency, predict_dirs)


def _prediction_vs_groundtruth(predict_dir, data_dir):
    """Images with predicted and ground-truth (category, instance) masks.

    Predictions and ground truth are paired by PNG stem (`predict` keeps
    the input file's stem). Returns lists of uint8 [H, W, 3] and pairs of
    int32 [H, W] masks, plus the dataset descriptor.
    """
    import numpy as np
    from maskconver_tf.data.descriptor import DatasetDescriptor
    from maskconver_tf.evaluation import panoptic_writer
    from maskconver_tf.evaluation import pq as pq_lib
    from maskconver_tf.inference import load_image

    gt_json = os.path.join(data_dir, 'panoptic.json')
    descriptor = DatasetDescriptor.from_json(gt_json)
    with open(gt_json) as f:
        gt = json.load(f)
    with open(os.path.join(predict_dir, 'predictions.json')) as f:
        pred = json.load(f)
    gt_by_stem = {os.path.splitext(a['file_name'])[0]: a
                  for a in gt['annotations']}
    images, preds, gts = [], [], []
    for ann in pred['annotations']:
        stem = os.path.splitext(ann['file_name'])[0]
        if stem not in gt_by_stem:
            continue
        ids = pq_lib.read_panoptic_png(
            os.path.join(predict_dir, 'panoptic', ann['file_name']), stem)
        preds.append(panoptic_writer.decode_panoptic(
            ids, ann['segments_info'], descriptor))
        g = gt_by_stem[stem]
        gt_ids = pq_lib.read_panoptic_png(
            os.path.join(data_dir, 'panoptic', g['file_name']), stem)
        gts.append(panoptic_writer.decode_panoptic(
            gt_ids, g['segments_info'], descriptor))
        images.append(np.asarray(load_image(
            os.path.join(data_dir, 'images', stem + '.jpg'))))
    return images, preds, gts, descriptor


def _worth_showing(line):
    # The trainer's step logs and progress, not TF's start-up chatter.
    noisy = ('cuda', 'oneDNN', 'cpu_feature_guard', 'rebuild TensorFlow',
             'AVX', 'absl::InitializeLog', 'WARNING: All log messages')
    return not any(n in line for n in noisy)


def _pq_row(name, results):
    """results: {split: pq.json dict}; cells All / Things / Stuff per split."""
    cells = []
    for split in ('val', SHIFTED):
        for group in ('All', 'Things', 'Stuff'):
            g = (results.get(split) or {}).get(group) or {}
            pq = g.get('pq')
            cells.append('-' if pq is None else f'{100 * pq:.2f}')
    return f'| {name} | ' + ' | '.join(cells) + ' |'


def _drop(pq, split):
    """int8 vs float32 .tflite PQ drop (All, points) on split, or None."""
    try:
        return 100 * (pq['tflite float32'][split]['All']['pq'] -
                      pq['tflite int8'][split]['All']['pq'])
    except (KeyError, TypeError):
        return None


def render_report(demo, summary, pq, latency, figures):
    rel = lambda p: os.path.relpath(p, demo.out)  # noqa: E731
    lines = [
        '# MaskConver demo report',
        '',
        f'Budget `{demo.budget_name}`: {demo.b.num_train} train / '
        f'{demo.b.num_val} val shapes images at {demo.image_size} px; '
        f'experiment `{demo.experiment}`; training data in the '
        f'`{TRAIN_STYLE}` look.',
        '',
        'Training stages (each resumes from its model_dir; a later one starts '
        'from the checkpoint of the one it names):',
        '',
        '| stage | YAMLs | input (px) | steps x batch | starts from | '
        'minutes |',
        '| --- | --- | --- | --- | --- | --- |',
        *[f'| {s["name"]} | '
          + ' + '.join(f'`experiments/{n}`' for n in stage.config_files)
          + f' | {s["input_size"]} | {s["train_steps"]} x {s["batch_size"]} | '
          f'{stage.init_from or "-"} | {s["seconds"] / 60:.1f} |'
          for stage, s in zip(demo.stages, summary['stages'])],
        '',
        *([f'Overrides on top of the YAMLs (every stage): '
           f'`{demo.params_override}`.'] if demo.params_override else []),
        f'Total wall time {demo.timings.get("total", 0) / 60:.1f} min '
        f'(training {demo.timings.get("train", 0) / 60:.1f} min).',
        '',
        '## Official PQ (panopticapi rules)',
        '',
        f'val: {demo.b.num_val} images of the clean look (half the '
        f'`{TRAIN_STYLE}` training images are in it); shifted: '
        f'{demo.b.num_shifted} images of the generator\'s `shifted` style '
        '(more and more crowded things, patterns, lighting, noise, blur, '
        'JPEG artefacts; a seed no run trains on).',
        '',
        '| model | val All | val Things | val Stuff | shifted All | '
        'shifted Things | shifted Stuff |',
        '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    lines += [_pq_row(name, result) for name, result in pq.items()]
    drops = [f'{split} {d:+.2f}' for split in ('val', SHIFTED)
             if (d := _drop(pq, split)) is not None]
    if drops:
        lines += ['', 'int8 vs float32 .tflite PQ drop (All): '
                  + ', '.join(drops) + '.']
    lines += ['', '## Latency (LiteRT, 2 threads, this machine)', '',
              '| model | size (MB) | mean (ms) | p50 (ms) | p90 (ms) | delegate |',
              '| --- | --- | --- | --- | --- | --- |']
    for name, r in latency.items():
        lines.append(
            f'| {name} | {r.get("size_bytes", 0) / 1e6:.2f} | '
            f'{r.get("mean_ms", float("nan")):.2f} | '
            f'{r.get("p50_ms", float("nan")):.2f} | '
            f'{r.get("p90_ms", float("nan")):.2f} | '
            f'{r.get("delegate", "")} |')
    lines += ['', '## Figures', '',
              *[f'![training curves, {stage.name}]'
                f'({rel(figures["curves " + stage.name])})\n'
                for stage in demo.stages],
              f'![overlays vs ground truth, val]({rel(figures["grid val"])})',
              '',
              '![overlays vs ground truth, shifted]'
              f'({rel(figures["grid shifted"])})', '',
              '## Outputs', '',
              f'- data: `{rel(demo.path("data"))}`, TFRecords: '
              f'`{rel(demo.path("tfrecords"))}`',
              '- checkpoints and TensorBoard: '
              + ', '.join(f'`{rel(demo.path(stage.model_dir))}`'
                          for stage in demo.stages),
              f'- predictions + pq.json: `{rel(demo.path("eval"))}`',
              f'- exports: `{rel(demo.path("export"))}`',
              f'- overlays: `{rel(demo.path("predict"))}`, '
              f'`{rel(demo.path("predict_" + SHIFTED))}`',
              '', '## Redo each stage by hand', '']
    for stage, cmd in demo.commands:
        lines += [f'{stage}:', '', '```', cmd, '```', '']
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output_dir', default='demo_output')
    parser.add_argument('--fresh', action='store_true',
                        help='delete output_dir first instead of reusing it')
    parser.add_argument('--budget', choices=sorted(BUDGETS), default='full')
    parser.add_argument('--experiment', choices=EXPERIMENTS,
                        default=EXPERIMENT,
                        help='the mobile model (default) or the flagship')
    parser.add_argument('--params_override', default='',
                        help='extra Model Garden overrides (k=v,...) for '
                        'every stage, after the demo\'s own; e.g. '
                        '"task.model.input_size=[192,192,3],'
                        'task.model.panoptic_generator.output_size=[192,192]"')
    args = parser.parse_args(argv)
    Demo(args.output_dir, args.budget, args.fresh, args.experiment,
         args.params_override).run_all()


if __name__ == '__main__':
    main()
