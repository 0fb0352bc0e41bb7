"""Dataset descriptor: the single source of category ids, names and channels.

Built from a COCO `categories` list (ids need not be contiguous). Every mapping
training, post-processing and outputs need comes from here; code holds no
COCO-only constants. Model outputs carry dataset category ids.

Channels: the model's class channels. Channel 0 is always void (never a
positive target). Two label modes:
- 'contiguous': channel i (1..N) is the i-th category in ascending id order;
  num_classes = N + 1.
- 'raw': channel = category id; num_classes = max id + 1 (what the reference
  COCO configs use: 201 channels for ids 1..200).
"""

import dataclasses
import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

LABEL_MODES = ('contiguous', 'raw')
_BUILTIN_DIR = os.path.join(os.path.dirname(__file__), 'builtin')


@dataclasses.dataclass(frozen=True)
class Category:
    """One dataset category (COCO panoptic `categories` entry)."""
    id: int
    name: str
    isthing: bool
    color: Tuple[int, int, int]
    supercategory: str = ''

    def to_coco(self):
        return {'id': self.id, 'name': self.name, 'isthing': int(self.isthing),
                'color': list(self.color), 'supercategory': self.supercategory}


def _default_color(category_id):
    # Deterministic, well-spread colours for categories that come without one.
    rng = np.random.RandomState(category_id * 7919 + 17)
    return tuple(int(v) for v in rng.randint(40, 256, size=3))


class DatasetDescriptor:
    """Categories of a panoptic data set and their id <-> channel mappings.

    Attributes:
      categories: tuple of `Category`, ascending by id.
      label_mode: 'contiguous' or 'raw' (see module docstring).
      num_classes: int, number of model class channels, void channel included.
      id_to_channel: int32 [max_id + 1]; -1 for ids that are not categories,
        0 for id 0 (void).
      channel_to_id: int32 [num_classes]; 0 for void and unused channels.
      is_thing_channel: bool [num_classes]; False for void and unused.
    """

    def __init__(self, categories: Sequence[Category], label_mode='contiguous',
                 source: str = '<categories>'):
        if label_mode not in LABEL_MODES:
            raise ValueError(f'{source}: label_mode must be one of {LABEL_MODES}, '
                             f'got {label_mode!r}')
        if not categories:
            raise ValueError(f'{source}: the categories list is empty')
        seen = {}
        for c in categories:
            if c.id <= 0:
                raise ValueError(f'{source}: category {c.name!r} has id {c.id}; '
                                 'ids must be positive (0 is void)')
            if c.id in seen:
                raise ValueError(f'{source}: category id {c.id} appears twice '
                                 f'({seen[c.id]!r} and {c.name!r})')
            seen[c.id] = c.name
        self.categories = tuple(sorted(categories, key=lambda c: c.id))
        self.label_mode = label_mode
        self.source = source
        self._by_id = {c.id: c for c in self.categories}
        max_id = self.categories[-1].id
        if label_mode == 'raw':
            self.num_classes = max_id + 1
            channels = [c.id for c in self.categories]
        else:
            self.num_classes = len(self.categories) + 1
            channels = list(range(1, len(self.categories) + 1))
        self.id_to_channel = np.full([max_id + 1], -1, np.int32)
        self.id_to_channel[0] = 0
        self.channel_to_id = np.zeros([self.num_classes], np.int32)
        self.is_thing_channel = np.zeros([self.num_classes], bool)
        for c, ch in zip(self.categories, channels):
            self.id_to_channel[c.id] = ch
            self.channel_to_id[ch] = c.id
            self.is_thing_channel[ch] = c.isthing

    # Construction ------------------------------------------------------------
    @classmethod
    def from_categories(cls, categories: List[dict], label_mode='contiguous',
                        source='<categories>'):
        """Builds from COCO `categories` dicts (id, name, isthing[, color])."""
        parsed = []
        for i, c in enumerate(categories):
            missing = [k for k in ('id', 'name', 'isthing') if k not in c]
            if missing:
                raise ValueError(f'{source}: categories[{i}] lacks {missing}; '
                                 'expected keys id, name, isthing (color optional)')
            color = c.get('color') or _default_color(int(c['id']))
            if len(color) != 3:
                raise ValueError(f'{source}: categories[{i}] (id {c["id"]}) has '
                                 f'color {color}; expected [r, g, b]')
            parsed.append(Category(
                id=int(c['id']), name=str(c['name']), isthing=bool(c['isthing']),
                color=tuple(int(v) for v in color),
                supercategory=str(c.get('supercategory', ''))))
        return cls(parsed, label_mode=label_mode, source=source)

    @classmethod
    def from_json(cls, path, label_mode='contiguous'):
        """Reads a COCO panoptic JSON (or a bare list of categories)."""
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict):
            if 'categories' not in data:
                raise ValueError(f'{path}: no "categories" key; expected a COCO '
                                 'panoptic JSON or a list of categories')
            data = data['categories']
        return cls.from_categories(data, label_mode=label_mode, source=str(path))

    @classmethod
    def builtin(cls, name, label_mode: Optional[str] = None):
        """'coco' (133 COCO panoptic categories, raw ids by default, as the
        reference configs) or 'shapes' (the built-in synthetic set)."""
        if name == 'coco':
            return cls.from_json(
                os.path.join(_BUILTIN_DIR, 'coco_panoptic_categories.json'),
                label_mode=label_mode or 'raw')
        if name == 'shapes':
            from maskconver_tf.data import shapes_categories
            return cls.from_categories(shapes_categories.CATEGORIES,
                                       label_mode=label_mode or 'contiguous',
                                       source='shapes')
        raise ValueError(f'unknown built-in dataset {name!r}; '
                         "expected 'coco' or 'shapes'")

    @classmethod
    def from_spec(cls, spec: str, label_mode: Optional[str] = None):
        """A built-in name or a path to a COCO panoptic / categories JSON."""
        if spec in ('coco', 'shapes'):
            return cls.builtin(spec, label_mode)
        if not os.path.exists(spec):
            raise FileNotFoundError(
                f'dataset {spec!r}: not a built-in name (coco, shapes) and no '
                'such categories JSON file')
        return cls.from_json(spec, label_mode or 'contiguous')

    # Queries -----------------------------------------------------------------
    def __len__(self):
        return len(self.categories)

    def __contains__(self, category_id):
        return int(category_id) in self._by_id

    def category(self, category_id) -> Category:
        try:
            return self._by_id[int(category_id)]
        except KeyError:
            raise KeyError(f'{self.source}: unknown category id {category_id}; '
                           f'known ids {self.ids}') from None

    @property
    def ids(self):
        return [c.id for c in self.categories]

    @property
    def names(self):
        return [c.name for c in self.categories]

    @property
    def thing_ids(self):
        return [c.id for c in self.categories if c.isthing]

    @property
    def stuff_ids(self):
        return [c.id for c in self.categories if not c.isthing]

    def is_thing(self, category_id) -> bool:
        return self.category(category_id).isthing

    def channel(self, category_id) -> int:
        return int(self.id_to_channel[self.category(category_id).id])

    def category_id(self, channel) -> int:
        return int(self.channel_to_id[channel])

    def palette(self):
        """uint8 [max_id + 1, 3] colour table indexed by category id."""
        table = np.zeros([len(self.id_to_channel), 3], np.uint8)
        for c in self.categories:
            table[c.id] = c.color
        return table

    def to_coco_categories(self):
        return [c.to_coco() for c in self.categories]

    def __repr__(self):
        return (f'DatasetDescriptor({len(self)} categories, '
                f'{len(self.thing_ids)} things, label_mode={self.label_mode!r}, '
                f'num_classes={self.num_classes}, source={self.source!r})')
