"""The report in a real browser: headless Chromium renders report.html; the screenshot is not blank and
the page's text (after the browser parsed it) holds the worst-case heading and the experiment panel.

Skipped, with the reason, where no Chromium is installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from fedsyn.report import build_report
from fedsyn.report.html import WORST_HEADING

from test_report import fill

BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (Debian: apt-get install chromium)")


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    fill(tmp_path, ref_psnr=11.0)
    page = build_report(tmp_path, resamples=500)
    shot = tmp_path / "shot.png"
    dom = _chromium(f"--screenshot={shot}", "--window-size=1400,2000", "--dump-dom", page.as_uri()).stdout
    assert WORST_HEADING in dom and "Experiment and threat model" in dom
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1400)
    # not blank: text and tables put many distinct dark pixels on the white page
    dark = (pixels.mean(axis=-1) < 0.5).mean()
    assert 0.005 < dark < 0.5
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
