"""`ga-gan compare` on an evolve run and a train run: one self-contained HTML file (and a PNG)
holding both runs' curves, Fréchet distances, table rows and latest grids."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from ga_gan.cli import main

LOG = ["--no-progress", "--set", "log.eval_every=5", "--set", "log.image_every=10",
       "--set", "log.fd_samples=128", "--set", "log.steps_per_call=5"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    assert main(["evolve", "--pop", "4", "--generations", "10", "--out", str(root / "ev"),
                 *LOG]) == 0
    assert main(["train", "--steps", "20", "--out", str(root / "tr"), *LOG]) == 0
    return root


def _images(text: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b)))
            for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_html_holds_both_runs_curves_grids_and_table(two_runs, capsys):
    out = two_runs / "report.html"
    assert main(["compare", str(two_runs / "ev"), str(two_runs / "tr"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "src=\"http" not in text and "<script" not in text  # nothing to fetch: offline
    images = _images(text)
    # two grids, the Fréchet figure, the shared metrics against generations and seconds
    assert len(images) == 5 and all(im.width > 100 for im in images)
    for name, grid in (("ev", images[0]), ("tr", images[1])):
        assert grid.size == Image.open(two_runs / name / "samples.png").size
    rows = re.findall(r"<tr><td>(\w+)</td>((?:<td>[^<]*</td>)+)</tr>", text)
    assert [r[0] for r in rows] == ["ev", "tr"]
    cells = {name: re.findall(r"<td>([^<]*)</td>", rest) for name, rest in rows}
    assert cells["ev"][0] == "10" and cells["tr"][0] == "20"
    for heading in ("Fréchet distances", "against generations", "against training seconds"):
        assert heading in text
    assert "fd_pixels_raw" in text  # the train run's raw generator beside its average


def test_png_report_and_bad_input(two_runs, capsys):
    out = two_runs / "report.png"
    assert main(["compare", str(two_runs / "ev"), str(two_runs / "tr"), "--out", str(out)]) == 0
    im = Image.open(out)
    assert im.width > 500 and im.height > 1000
    assert main(["compare", str(two_runs / "ev"), "--out", str(two_runs / "r.txt")]) == 2
    assert main(["compare", str(two_runs / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: --out must end in .html or .png" in err and "no metrics.jsonl" in err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium here")
def test_report_renders_in_headless_chromium(two_runs, tmp_path):
    html = two_runs / "report.html"
    if not html.exists():
        main(["compare", str(two_runs / "ev"), str(two_runs / "tr"), "--out", str(html)])
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1400,2000", html.as_uri()],
                   check=True, capture_output=True, timeout=120)
    im = Image.open(shot).convert("L")
    assert im.size == (1400, 2000)
    # a rendered page, not a blank one: many distinct grey levels (text, plots, grids)
    assert len(np.unique(np.asarray(im))) > 50
