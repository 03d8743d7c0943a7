"""Headless Chromium for the tests that check a page as a reader sees it (report.html, leaderboard.html).

Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it). Without it the
tests skip, except in CI, where a missing browser fails them: there the check must run. Each
start gets a fresh profile and the flags that keep Chromium off the network (this machine has
none but the package registries, and a refused connection per background service slows every
start).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")

# Appended to a copy of the page: what the reader sees, measured after layout. ``problems`` are the
# report's visible problem ids, ``overflow`` whether anything is wider than the window.
_PROBE = """<script>
window.addEventListener('load', () => setTimeout(function () {
  const shown = el => getComputedStyle(el).display !== 'none' && el.getClientRects().length > 0;
  const out = {
    problems: [...document.querySelectorAll('details.problem')].filter(shown)
      .map(d => d.querySelector('.pid').textContent),
    sections: [...document.querySelectorAll('main section')].filter(shown).length,
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
    images: [...document.images].map(i => ({w: i.naturalWidth, h: i.naturalHeight, shown: shown(i)})),
    warn: [...document.querySelectorAll('.warn')].filter(shown).map(w => {
      const s = getComputedStyle(w);
      return {text: w.textContent.slice(0, 200), color: s.color, background: s.backgroundColor,
              border: s.borderTopWidth, top: w.getBoundingClientRect().top};
    }),
  };
  document.body.setAttribute('data-probe', JSON.stringify(out));
}, 0));
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "headless Chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must check the pages in a browser: {message}")
        pytest.skip(message)
    return path


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def screenshot(page: Path, png: Path, *, fragment: str = "", width: int = 1400, height: int = 1800) -> Path:
    """A PNG of ``page`` (opened at ``#fragment``) as a window of ``width`` x ``height`` shows it."""
    proc = _run([f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri() + fragment])
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", proc.stderr[-2000:]
    return png


def probe(page: Path, *, fragment: str = "", width: int = 1400) -> dict:
    """What a reader of ``page`` sees after layout (see ``_PROBE``), read from Chromium's DOM dump."""
    copy = page.with_name(page.stem + ".probe.html")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        proc = _run([f"--window-size={width},1200", "--virtual-time-budget=2000", "--dump-dom",
                     copy.resolve().as_uri() + fragment])
    finally:
        copy.unlink()
    found = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert found, f"no probe result in Chromium's DOM dump: {proc.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))
