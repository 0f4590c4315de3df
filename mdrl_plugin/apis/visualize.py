"""A picture of search results: each query's text above its ranked images."""
import os.path as osp
import textwrap
from typing import Optional, Sequence

import numpy as np

from mdrl_deploy.search import Label

MATCH_COLOR = '#1a9641'  #: Frame of a hit with the query's identity.
MISMATCH_COLOR = '#d7191c'  #: Frame of a hit with another identity.
UNKNOWN_COLOR = '#969696'  #: Frame when either label is unknown.

_CELL_W = 1.35   # inches per image column
_IMG_H = 2.5     # inches of image
_CAP_H = 0.75    # inches of caption under/above each image
_LINE_H = 0.24   # inches per line of query text
_MARGIN = 0.25


def _read_rgb(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return np.full((128, 64, 3), 200, np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def draw_search_results(queries: Sequence[str],
                        results: Sequence[Sequence],
                        out_file: str,
                        query_labels: Optional[
                            Sequence[Optional[Label]]] = None,
                        max_cols: int = 10) -> str:
    """Draw each query's text and its hits in rank order, and save it.

    Each hit shows rank, score, label and file name in a frame green for
    the query's identity, red for another, grey if unknown. Drawn on an Agg
    canvas (no display, no global backend change).

    Args:
        queries: The query texts.
        results: Per query, its hits (with ``rank``, ``path``, ``score``,
            ``label``, e.g. :class:`~mdrl_deploy.SearchHit`).
        out_file: Image file to write (its extension picks the format).
        query_labels: Per query, the identity it describes (or None).
        max_cols: Images per row.

    Returns:
        ``out_file``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(queries) != len(results):
        raise ValueError(f'Got {len(queries)} queries and {len(results)} '
                         'result lists; expected one list per query.')
    if query_labels is None:
        query_labels = [None] * len(queries)
    if len(query_labels) != len(queries):
        raise ValueError(f'Got {len(query_labels)} query labels for '
                         f'{len(queries)} queries.')
    if max_cols < 1:
        raise ValueError(f'max_cols must be >= 1, got {max_cols}')
    ncols = max(1, min(max_cols, max((len(r) for r in results), default=1)))
    width = _MARGIN * 2 + ncols * _CELL_W
    chars = max(30, int(ncols * _CELL_W * 11))

    blocks = []  # (text lines, rows of hits)
    for query, hits, qlab in zip(queries, results, query_labels):
        head = f'Query: {query}'
        if qlab is not None:
            head += f'   [query id: {qlab}]'
        lines = textwrap.wrap(head, chars) or ['']
        rows = [list(hits[i:i + ncols]) for i in range(0, len(hits), ncols)]
        blocks.append((lines, rows or [[]]))
    height = _MARGIN + sum(len(lines) * _LINE_H + 0.15 + _MARGIN +
                           len(rows) * (_IMG_H + _CAP_H)
                           for lines, rows in blocks)

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    y = height - _MARGIN  # inches from bottom, moving down
    for (lines, rows), qlab in zip(blocks, query_labels):
        fig.text(_MARGIN / width, y / height, '\n'.join(lines), ha='left',
                 va='top', fontsize=10, family='sans-serif')
        y -= len(lines) * _LINE_H + 0.15
        for row in rows:
            top = y - 0.3  # room for the title
            for col, hit in enumerate(row):
                left = _MARGIN + col * _CELL_W + 0.08
                ax = fig.add_axes([left / width, (top - _IMG_H) / height,
                                   (_CELL_W - 0.16) / width, _IMG_H / height])
                ax.imshow(_read_rgb(hit.path), aspect='auto')
                ax.set(xticks=[], yticks=[])
                label = getattr(hit, 'label', None)
                known = qlab is not None and label is not None
                color = UNKNOWN_COLOR if not known else (
                    MATCH_COLOR if label == qlab else MISMATCH_COLOR)
                for spine in ax.spines.values():
                    spine.set(edgecolor=color, linewidth=4 if known else 1.5)
                ax.set_title(f'#{hit.rank}  {hit.score:.3f}', fontsize=9,
                             color=color if known else 'black')
                name = osp.basename(hit.path)
                if len(name) > 18:
                    name = name[:8] + '..' + name[-8:]
                caption = name if label is None else f'id {label}\n{name}'
                ax.set_xlabel(caption, fontsize=7)
            y -= _IMG_H + _CAP_H
        y -= _MARGIN
    fig.savefig(out_file, dpi=100)
    return out_file
