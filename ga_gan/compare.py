"""`ga-gan compare RUN ... --out report.html|report.png`: one file that compares runs.

The figures: every per-generation metric the runs share against generations and against
training seconds, every Fréchet distance on one log axis, and each run's latest sample grid.
The table and the analysis come from ga_gan.report. HTML output inlines every image as a base64
PNG, so the file reads offline and can be mailed or committed as it is.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from pathlib import Path

import numpy as np

from ga_gan.errors import UserError
from ga_gan.report import (Run, finite, fd_keys, load_runs, shared_scalars,
                           summary_table, thresholds)


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


SMOOTH_POINTS = 300  # longer per-step curves are drawn as moving averages of this many points


def smooth(pts: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as they are, or a moving average when there are many more points than pixels:
    per-step GAN scores are too noisy to read otherwise (metrics.jsonl keeps every value)."""
    x, y = np.asarray(pts, dtype=np.float64).T
    w = len(x) // SMOOTH_POINTS
    if w < 2:
        return x, y
    kernel = np.ones(w) / w
    return np.convolve(x, kernel, "valid"), np.convolve(y, kernel, "valid")


def curves_png(runs: list[Run], keys: list[str], x: str) -> bytes | None:
    """One panel per shared metric, one line per run, against `x` (generation or time_s)."""
    if not keys:
        return None
    plt = _plt()
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        for run in runs:
            pts = [(r[x], r[k]) for r in run.records if x in r and finite(r.get(k))]
            if pts:
                ax.plot(*smooth(pts), lw=1, label=run.name)
        ax.set_title(k, fontsize=10)
        ax.set_xlabel("generation / step" if x == "generation" else "training seconds")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


def frechet_png(runs: list[Run]) -> bytes | None:
    """Every Fréchet distance of every run on one log axis, against seconds and generations."""
    if not any(fd_keys(r.records) for r in runs):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    styles = ["-", "--", ":", "-."]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, x in zip(axes, ("time_s", "generation")):
        for i, run in enumerate(runs):
            for j, k in enumerate(fd_keys(run.records)):
                pts = [(r[x], r[k]) for r in run.curve if finite(r.get(k))]
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=3, color=colors[i % len(colors)],
                            ls=styles[j % len(styles)], label=f"{run.name}: {k}")
        ax.set_yscale("log")
        ax.set_xlabel("training seconds" if x == "time_s" else "generation / step")
        ax.set_ylabel("Fréchet distance")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


def figures(runs: list[Run]) -> list[tuple[str, bytes]]:
    keys = shared_scalars(runs)
    out = [("Fréchet distances (log scale)", frechet_png(runs)),
           ("Shared metrics against generations", curves_png(runs, keys, "generation")),
           ("Shared metrics against training seconds", curves_png(runs, keys, "time_s"))]
    return [(title, png) for title, png in out if png]


def _img(png: bytes, alt: str, style: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" style="{style}" src="data:image/png;base64,{data}">'


CSS = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;
font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.grids{display:flex;flex-wrap:wrap;gap:16px}
.grids figure{margin:0}figcaption{font-size:13px;margin-bottom:4px}img{max-width:100%}"""


def render_html(runs: list[Run], bars: list[float]) -> str:
    head, rows = summary_table(runs, bars)
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ga-gan compare: "
             f"{esc(', '.join(r.name for r in runs))}</title><style>{CSS}</style></head><body>",
             f"<h1>ga-gan compare</h1><p>{len(runs)} runs, written "
             f"{_dt.datetime.now().astimezone().isoformat(timespec='seconds')}.</p><ul>"]
    parts += [f"<li><b>{esc(r.name)}</b> ({esc(str(r.path))}): {esc(r.describe())}</li>"
              for r in runs]
    parts.append("</ul><h2>Final and best values</h2><table><tr>"
                 + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
    parts.append("</table><p>Training seconds are each run's <code>time_s</code> (compilation "
                 "included; Fréchet evaluation, images and checkpoints excluded); <code>eval s"
                 "</code> is the sum of its <code>eval_s</code>. A bar is <i>held</i> from the "
                 "first evaluation at or below it whose median with the next four is too. "
                 f"Curves of more than {2 * SMOOTH_POINTS} points are drawn as moving "
                 "averages.</p>")
    parts.append("<h2>Latest samples</h2><div class='grids'>")
    for r in runs:
        png = r.grid_png()
        body = _img(png, f"{r.name} samples", "image-rendering:pixelated") \
            if png else "<p>(no samples.png)</p>"
        parts.append(f"<figure><figcaption>{esc(r.name)} at generation "
                     f"{r.records[-1]['generation']:,}</figcaption>{body}</figure>")
    parts.append("</div>")
    for title, png in figures(runs):
        parts.append(f"<h2>{esc(title)}</h2>{_img(png, title)}")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_png(runs: list[Run]) -> bytes:
    """The figures and the grids stacked in one image (the table is in the HTML report)."""
    from PIL import Image, ImageDraw
    blocks = [Image.open(io.BytesIO(png)).convert("RGB") for _, png in figures(runs)]
    grids = []
    for r in runs:
        png = r.grid_png()
        if png:
            im = Image.open(io.BytesIO(png)).convert("RGB")
            scale = max(1, 256 // max(im.height, 1))
            im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
            canvas = Image.new("RGB", (im.width, im.height + 18), "white")
            ImageDraw.Draw(canvas).text((2, 2), r.name, fill="black")
            canvas.paste(im, (0, 18))
            grids.append(canvas)
    if grids:
        row = Image.new("RGB", (sum(g.width for g in grids) + 10 * len(grids),
                                max(g.height for g in grids)), "white")
        x = 0
        for g in grids:
            row.paste(g, (x, 0))
            x += g.width + 10
        blocks.insert(0, row)
    width = max(b.width for b in blocks)
    out = Image.new("RGB", (width, sum(b.height for b in blocks) + 10 * len(blocks)), "white")
    y = 0
    for b in blocks:
        out.paste(b, (0, y))
        y += b.height + 10
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def compare(paths: list[str], out: str | Path, bars: list[float] | None = None) -> Path:
    out = Path(out)
    if out.suffix not in (".html", ".png"):
        raise UserError(f"--out must end in .html or .png, got {out}")
    runs = load_runs(paths)
    keys = [k for r in runs for k in fd_keys(r.records)]
    bars = thresholds(runs, keys[0], bars) if keys else []
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".html":
        out.write_text(render_html(runs, bars), encoding="utf-8")
    else:
        out.write_bytes(render_png(runs))
    return out
