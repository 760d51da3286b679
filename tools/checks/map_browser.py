"""Open a library-map HTML page in headless Chromium and check that it works like a person would.

    python -m tools.checks.map_browser                  # map of the MUSDB18 previews (real audio)
    python -m tools.checks.map_browser --html map.html  # a page `mgctag map` wrote
    python -m tools.checks.map_browser --out /tmp/mapcheck --chromium /usr/bin/chromium

Talks to Chromium over the DevTools protocol on --remote-debugging-pipe (fds 3 and 4, NUL-ended
JSON), so it needs no extra package. Checks: points are drawn (counted in the page and as pixels
of each genre colour in a screenshot); hovering a point shows its tag text as text (a title made
of </script><script>alert(1)</script> is displayed, not run); clicking a point shows its path;
clicking a legend entry hides that genre's points (and clicking again brings them back); the wheel
zooms. Screenshots go to --out. Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mgctag.library.rows import Track
from mgctag.search.map import layout_2d, map_html
from tools.paths import MUSDB

EVIL = "</script><script>alert(1)</script>"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
    "--window-size=1200,800",
    "--hide-scrollbars",
]


class Cdp:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, chromium: str, url: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="mgctag-chromium-")
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and answers on fd 4
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.proc = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={self.profile}", url],
            pass_fds=(3, 4),
            preexec_fn=child_fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_r)
        os.close(from_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(method)

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._from_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the debugging pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def attach_page(self) -> None:
        for _ in range(100):
            targets = self.send("Target.getTargets")["targetInfos"]
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                break
            time.sleep(0.1)
        target = {"targetId": pages[0]["targetId"], "flatten": True}
        res = self.send("Target.attachToTarget", target)
        self.session = res["sessionId"]

    def js(self, expr: str):
        res = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, **extra) -> None:
        self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        for kind in ("mousePressed", "mouseReleased"):
            self.mouse(kind, x, y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["rm", "-rf", self.profile], check=False)


def musdb_map(dest: Path) -> Path:
    """A map page of the MUSDB18 previews (mean+std MFCCs, t-SNE), one title an injection try."""
    from mgctag.audio.decode import load
    from mgctag.audio.features import mfcc

    with open(MUSDB / "genres.csv", newline="") as f:
        genres = {r["file"]: r["genre"] for r in csv.DictReader(f)}
    feats: list[np.ndarray] = []
    records: list[Track] = []
    for name in sorted(genres):
        c = mfcc(load(MUSDB / "train" / name, 16000))
        feats.append(np.concatenate([c.mean(0), c.std(0)]))
        artist, title = name.removesuffix(".stem.mp4").split(" - ", 1)
        title = EVIL if not records else title
        path = str(MUSDB / "train" / name)
        records.append(
            Track(len(records) + 1, path, artist=artist, title=title, genres=[genres[name]])
        )
    x = np.asarray(feats, dtype=np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return map_html(layout_2d(x, threads=1), records, dest, title="MUSDB18 previews <check>")


def color_pixels(png: bytes, hex_color: str) -> int:
    """Pixels of exactly this colour in a PNG screenshot."""
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    rgb = [int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]
    return int(np.all(img == rgb, axis=-1).sum())


def run_checks(cdp: Cdp, out: Path) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        results.append((name, bool(ok), detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}")

    cdp.attach_page()
    cdp.send("Page.enable")
    cdp.send("Runtime.enable")
    metrics = {"width": 1200, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    cdp.send("Emulation.setDeviceMetricsOverride", metrics)
    for _ in range(100):
        if cdp.js("document.readyState === 'complete' && !!window.mgcMap"):
            break
        time.sleep(0.1)
    cdp.js("window.dispatchEvent(new Event('resize'))")
    n, drawn = cdp.js("mgcMap.points"), cdp.js("mgcMap.drawn()")
    check("all points drawn", n > 0 and drawn == n, f"{drawn}/{n}")
    data = cdp.js("JSON.parse(document.getElementById('mgc-data').textContent)")
    shot = cdp.screenshot(out / "map.png")
    g0, color = data["genres"][0], data["colors"][0]
    count0 = sum(1 for g in data["g"] if g == 0)
    px_before = color_pixels(shot, color)
    check("genre colour visible in screenshot", px_before > 5 * count0, f"{g0}: {px_before} px")
    check("only the page's own scripts", cdp.js("document.scripts.length") == 2)
    check("page title escaped", "<check>" in cdp.js("document.title"), cdp.js("document.title"))

    rect = cdp.js("(r => [r.left, r.top])(document.getElementById('map').getBoundingClientRect())")
    evil = data["title"].index(EVIL) if EVIL in data["title"] else 0
    x, y = cdp.js(f"mgcMap.screen({evil})")
    cdp.mouse("mouseMoved", rect[0] + x, rect[1] + y)
    tip = cdp.js("(t => t.hidden ? null : t.textContent)(document.getElementById('tip'))")
    check("hover shows the tag text as text", tip is not None and data["title"][evil] in tip, tip)
    cdp.click(rect[0] + x, rect[1] + y)
    info = cdp.js("document.getElementById('info').textContent")
    check("click shows the path", data["path"][evil] in info, info[:120])
    cdp.screenshot(out / "map_hover_click.png")

    li = cdp.js(
        "(() => {const r = document.querySelector('#legend li[data-genre=\"0\"]')"
        ".getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]})()"
    )
    cdp.mouse("mouseMoved", 5, 5)  # move off the canvas so no hover ring is drawn
    cdp.click(*li)
    drawn_off = cdp.js("mgcMap.drawn()")
    shot_off = cdp.screenshot(out / "map_genre_hidden.png")
    px_off = color_pixels(shot_off, color)
    check("legend click hides the genre", drawn_off == n - count0, f"{drawn_off} drawn")
    # what is left of the colour is the legend swatch itself
    check("its colour leaves the canvas", px_off < px_before / 3, f"{px_before} -> {px_off} px")
    legend_off = cdp.js("document.querySelector('#legend li[data-genre=\"0\"]').className")
    check("legend entry marked off", legend_off == "off", legend_off)
    cdp.click(*li)
    check("second click shows it again", cdp.js("mgcMap.drawn()") == n)

    before = cdp.js(f"mgcMap.screen({evil})")
    cx, cy = rect[0] + 300, rect[1] + 300
    cdp.mouse("mouseWheel", cx, cy, deltaX=0, deltaY=-600)
    after = cdp.js(f"mgcMap.screen({evil})")
    spread = np.hypot(after[0] - cx + rect[0], after[1] - cy + rect[1])
    spread0 = np.hypot(before[0] - cx + rect[0], before[1] - cy + rect[1])
    zoomed = f"{spread0:.0f} -> {spread:.0f} px from the cursor"
    check("wheel zooms in about the cursor", spread > 1.5 * spread0, zoomed)
    cdp.screenshot(out / "map_zoomed.png")
    dialogs = [e for e in cdp.events if e.get("method") == "Page.javascriptDialogOpening"]
    check("no script from the data ran (no alert)", not dialogs)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--html", type=Path, help="page to check (default: make one from MUSDB)")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "mgctag-map-check")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    page = a.html or musdb_map(a.out / "map.html")
    cdp = Cdp(a.chromium, page.resolve().as_uri())
    try:
        results = run_checks(cdp, a.out)
    finally:
        cdp.close()
    failed = [name for name, ok, _ in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed; screenshots in {a.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
