"""Appends benchmark rows to benchmarks/RESULTS.md with machine, command and date."""

import datetime
import os
import platform
import shlex
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'RESULTS.md')


# SIMD extensions that decide which XNNPACK kernels run (int8 latency on
# the same VM type differed 3-5x between hosts with and without them).
ISA_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16',
             'avx_vnni',
             'amx_int8')


def machine_description():
    cpu = platform.processor() or platform.machine()
    flags = []
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                elif line.startswith('flags'):
                    present = set(line.split(':', 1)[1].split())
                    flags = [x for x in ISA_FLAGS if x in present]
                    break
    except OSError:
        pass
    isa = ' '.join(flags) or 'no AVX2 / AVX-512'
    return (f'{os.cpu_count()} cores, {cpu} ({isa}), Python '
            f'{platform.python_version()}')


def command_line():
    return ' '.join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def append_section(title, lines, path=RESULTS):
    """Appends '## title' + a provenance line + the given markdown lines."""
    new = not os.path.exists(path)
    with open(path, 'a') as f:
        if new:
            f.write('# Benchmark results\n\nRows are appended by the scripts in '
                    '`benchmarks/`; each section names machine, command and date.\n')
        f.write(f'\n## {title}\n\n')
        f.write(f'- date: {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}\n')
        f.write(f'- machine: {machine_description()}\n')
        f.write(f'- command: `{command_line()}`\n\n')
        for line in lines:
            f.write(line.rstrip('\n') + '\n')
