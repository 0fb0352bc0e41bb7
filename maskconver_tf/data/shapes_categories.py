"""Categories of the built-in synthetic "shapes" panoptic set.

Fixed by ../shared/design/synthetic_shapes.md: ids are deliberately
non-contiguous, as in COCO, so nothing may assume contiguous ids.
"""

CATEGORIES = [
    {'id': 1, 'name': 'disc', 'isthing': 1, 'color': [220, 20, 60],
     'supercategory': 'shape'},
    {'id': 2, 'name': 'square', 'isthing': 1, 'color': [0, 130, 200],
     'supercategory': 'shape'},
    {'id': 3, 'name': 'triangle', 'isthing': 1, 'color': [255, 190, 0],
     'supercategory': 'shape'},
    {'id': 4, 'name': 'ring', 'isthing': 1, 'color': [145, 30, 180],
     'supercategory': 'shape'},
    {'id': 11, 'name': 'sky', 'isthing': 0, 'color': [110, 170, 240],
     'supercategory': 'background'},
    {'id': 12, 'name': 'ground', 'isthing': 0, 'color': [120, 90, 50],
     'supercategory': 'background'},
    {'id': 13, 'name': 'wall', 'isthing': 0, 'color': [170, 60, 40],
     'supercategory': 'background'},
]
