"""A grid PNG: one row per image, columns image | prediction | ground truth.

    save_overlay_grid('grid.png', images, predictions, groundtruths,
                      descriptor)

Cells are scaled to one height (aspect kept, nearest neighbour so mask
borders stay sharp) and centred in their column; a title row names the
columns.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskconver_tf.visualization import overlay as overlay_lib

BACKGROUND = (32, 32, 32)
TITLE_COLOR = (255, 255, 255)
TITLE_HEIGHT = 16
PADDING = 4


def _fit(cell: np.ndarray, height: int) -> np.ndarray:
    h, w = cell.shape[:2]
    width = max(1, int(round(w * height / h)))
    if (h, w) == (height, width):
        return cell
    return np.asarray(Image.fromarray(cell).resize((width, height),
                                                   Image.NEAREST))


def make_grid(rows: Sequence[Sequence[np.ndarray]],
              column_titles: Optional[Sequence[str]] = None,
              cell_height: Optional[int] = None) -> np.ndarray:
    """Lays out uint8 [H, W, 3] cells in a grid.

    Args:
      rows: list of rows, each a list of RGB cells (rows may be ragged; a
        missing cell stays background).
      column_titles: optional names drawn above the columns.
      cell_height: height every cell is scaled to (default: the tallest
        cell).
    Returns:
      uint8 [H_grid, W_grid, 3].
    """
    if not rows or not any(len(r) for r in rows):
        raise ValueError('make_grid needs at least one cell')
    if cell_height is None:
        cell_height = max(c.shape[0] for r in rows for c in r)
    rows = [[_fit(np.asarray(c, np.uint8), cell_height) for c in r]
            for r in rows]
    num_cols = max(len(r) for r in rows)
    col_widths = [max((r[j].shape[1] for r in rows if j < len(r)), default=1)
                  for j in range(num_cols)]
    title_h = TITLE_HEIGHT if column_titles else 0
    height = title_h + len(rows) * (cell_height + PADDING) + PADDING
    width = sum(col_widths) + (num_cols + 1) * PADDING
    grid = np.empty([height, width, 3], np.uint8)
    grid[:] = BACKGROUND
    x_starts = np.cumsum([PADDING] + [w + PADDING for w in col_widths])
    for i, row in enumerate(rows):
        y0 = title_h + PADDING + i * (cell_height + PADDING)
        for j, cell in enumerate(row):
            x0 = x_starts[j] + (col_widths[j] - cell.shape[1]) // 2
            grid[y0:y0 + cell_height, x0:x0 + cell.shape[1]] = cell
    if column_titles:
        img = Image.fromarray(grid)
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default()
        for j, title in enumerate(list(column_titles)[:num_cols]):
            draw.text((int(x_starts[j]), 2), str(title), fill=TITLE_COLOR,
                      font=font)
        grid = np.asarray(img)
    return grid


def overlay_grid(images: Sequence[np.ndarray],
                 predictions: Sequence[Tuple[np.ndarray, np.ndarray]],
                 groundtruths: Optional[Sequence[Tuple[np.ndarray,
                                                       np.ndarray]]],
                 descriptor, cell_height: Optional[int] = None,
                 labels: bool = True) -> np.ndarray:
    """Rows of image | prediction overlay | ground-truth overlay.

    Args:
      images: uint8 [H, W, 3] per row.
      predictions, groundtruths: (category_mask, instance_mask) int [H, W]
        per row; groundtruths may be None (two columns).
      descriptor: `DatasetDescriptor` for colours and names.
    Returns:
      uint8 grid image.
    """
    if len(predictions) != len(images) or (
            groundtruths is not None and len(groundtruths) != len(images)):
        raise ValueError('images, predictions and groundtruths differ in '
                         'length')
    rows = []
    for k, image in enumerate(images):
        row = [np.asarray(image, np.uint8),
               overlay_lib.overlay(image, *predictions[k], descriptor,
                                   labels=labels)]
        if groundtruths is not None:
            row.append(overlay_lib.overlay(image, *groundtruths[k], descriptor,
                                           labels=labels))
        rows.append(row)
    titles = ['image', 'prediction'] + (
        ['ground truth'] if groundtruths is not None else [])
    return make_grid(rows, titles, cell_height)


def save_overlay_grid(path, images, predictions, groundtruths, descriptor,
                      **kwargs) -> str:
    """`overlay_grid` written as a PNG; returns the path."""
    Image.fromarray(overlay_grid(images, predictions, groundtruths,
                                 descriptor, **kwargs)).save(path,
                                                             format='PNG')
    return path
