"""Times generating and converting the built-in shapes set.

    python benchmarks/data_pipeline.py [--num_images 1000] [--image_size 128]

Goal (issue 3): 1,000 images at 128 px generated and converted to TFRecords in
under 60 s on a 2-core machine. Prints the numbers and appends them to
benchmarks/RESULTS.md unless --no_record.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results_io  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num_images', type=int, default=1000)
    parser.add_argument('--image_size', type=int, default=128)
    parser.add_argument('--num_shards', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no_record', action='store_true')
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    from maskconver_tf.data import create_tfrecords, shapes  # TF import
    import_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, 'shapes')
        t0 = time.perf_counter()
        json_path = shapes.generate_dataset(data_dir, args.num_images,
                                            image_size=args.image_size,
                                            seed=args.seed)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = create_tfrecords.convert(
            image_dir=os.path.join(data_dir, 'images'), panoptic_json=json_path,
            panoptic_masks_dir=os.path.join(data_dir, 'panoptic'),
            output_prefix=os.path.join(tmp, 'records', 'train'),
            num_shards=args.num_shards)
        conv_s = time.perf_counter() - t0
    total = gen_s + conv_s
    rows = [
        '| images | size | generate (s) | convert (s) | total (s) | images/s | goal |',
        '| --- | --- | --- | --- | --- | --- | --- |',
        f'| {args.num_images} | {args.image_size} | {gen_s:.1f} | {conv_s:.1f} | '
        f'{total:.1f} | {args.num_images / total:.0f} | < 60 s for 1000 at 128 px |',
        '',
        f'Conversion report: {report.summary()}. Package import (TF) took '
        f'{import_s:.1f} s and is not counted.',
    ]
    print('\n'.join(rows))
    if not args.no_record:
        results_io.append_section('Data: generate + convert shapes', rows)


if __name__ == '__main__':
    main()
