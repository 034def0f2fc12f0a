"""The plot of a bench result (PNG and SVG) with matplotlib's Agg backend, so
no display is needed. matplotlib is the optional `bench` extra."""
from __future__ import annotations

import io

from ..diag import ToolMissing
from .measure import CONVS, OPS, PATCHES, convs_of
from .report import UNIT, Result

_COLORS = {"bare": "#444444", "cc": "#d62728", "cs": "#1f77b4", "eax": "#2ca02c"}


def require():
    """matplotlib, or exit 3 before anything is measured."""
    try:
        import matplotlib
    except ImportError:
        raise ToolMissing("matplotlib", "pip install 'pvpass[bench]'") from None
    matplotlib.use("Agg")
    return matplotlib


def render(res: Result) -> tuple[bytes, bytes]:
    """(PNG, SVG): per arch, median ticks per call of each (op, patch) as
    bars per convention, the whiskers the interquartile range."""
    matplotlib = require()
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.5 * len(res.archs), 7.5), layout="constrained")
    axes = fig.subplots(1, len(res.archs), squeeze=False)[0]
    for ax, arch in zip(axes, res.archs):
        convs = ("bare", *convs_of(arch))
        groups = [(op, p) for op in OPS for p in PATCHES
                  if any(res.median(arch, c, op, p) is not None for c in convs)]
        h = 0.8 / len(convs)
        labelled: set[str] = set()
        for g, (op, patch) in enumerate(groups):
            rows = [r for c in convs if (r := res.row(arch, c, op, patch)) and r.stats]
            for j, r in enumerate(rows):       # centred on the group's tick
                s = r.stats
                ax.barh(g + (j - (len(rows) - 1) / 2) * h, s.median, height=h,
                        xerr=[[s.median - s.q1], [s.q3 - s.median]], color=_COLORS[r.conv],
                        label=None if r.conv in labelled else CONVS[r.conv],
                        error_kw={"elinewidth": 0.8, "capsize": 1.5})
                labelled.add(r.conv)
        ax.set_yticks(range(len(groups)), [f"{op} / {p}" for op, p in groups], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{UNIT} per call (caller: per iteration), median and IQR")
        ax.set_title(f"{arch}: {res.runs} runs x {res.calls} calls", fontsize=10)
        ax.grid(axis="x", linewidth=0.3)
        # Whiskers of a run spoilt by load elsewhere would squash the bars.
        top = 1.25 * max(r.stats.median for r in res.rows if r.arch == arch and r.stats)
        if any(r.stats.q3 > top for r in res.rows if r.arch == arch and r.stats):
            ax.set_xlabel(ax.get_xlabel() + " (whiskers clipped)")
        ax.set_xlim(0, top)
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: list(CONVS.values()).index(labels[i]))
        ax.legend([handles[i] for i in order], [labels[i] for i in order],
                  title="site convention", fontsize=8, loc="upper right")
    fig.suptitle(f"pvpass bench: {res.cpu}", fontsize=10)
    png, svg = io.BytesIO(), io.BytesIO()
    # No dates or versions in the files: the same numbers give the same bytes.
    fig.savefig(png, format="png", dpi=90, metadata={"Software": None})
    with matplotlib.rc_context({"svg.fonttype": "none"}):     # text as text: a small file
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png.getvalue(), svg.getvalue()
