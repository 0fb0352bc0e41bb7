"""benchmarks/recall_diagnosis.py: IoU and the summary, by hand."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import recall_diagnosis as rd  # noqa: E402


def test_iou():
    a = np.zeros([4, 4], bool)
    b = np.zeros([4, 4], bool)
    a[:2, :2] = True          # 4 pixels
    b[1:3, 1:3] = True        # 4 pixels, 1 shared
    assert rd._iou(a, b) == 1 / 7
    assert rd._iou(a, a) == 1.0
    assert rd._iou(np.zeros_like(a), np.zeros_like(a)) == 0.0


def test_summarize_rates():
    rows = [(True, True, True, 0.8, 0.9),
            (True, True, False, 0.4, 0.6),
            (True, False, False, 0.6, 0.4),
            (False, True, True, 0.9, 1.0)]
    got = rd.summarize(rows)
    th = got['things']
    assert th['segments'] == 3
    np.testing.assert_allclose(
        [th['center_recall'], th['center_recall_top_k'],
         th['mask_iou_mean'], th['mask_iou_over_0.5'],
         th['mask_iou_over_0.5_if_found'], th['ceiling_iou_mean'],
         th['ceiling_iou_over_0.5']],
        [2 / 3, 1 / 3, 0.6, 2 / 3, 0.5, 19 / 30, 2 / 3])
    assert got['stuff']['segments'] == 1
    assert got['stuff']['mask_iou_mean'] == 0.9
