"""Open an `mgctag explain` HTML report in headless Chromium and check that it works offline.

    python -m tools.checks.explain_browser                     # explain a real clip, check it
    python -m tools.checks.explain_browser --html report.html  # a page `mgctag explain` wrote
    python -m tools.checks.explain_browser --out /tmp/explaincheck --chromium /usr/bin/chromium

Uses the DevTools-protocol client of tools/checks/map_browser.py. Checks: the page loads with
no network request at all (every resource is a data: URI; requests are recorded from before the
navigation); the timeline image is decoded and drawn; the stems and terms tables are there; each
`<audio>` element loads its WAV and has the expected duration; the page runs no script; no
Content-Security-Policy violation is reported. A screenshot of the whole page goes to --out.
Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tools.checks.map_browser import Cdp
from tools.paths import LIBROSA

CLIP = LIBROSA / "Kevin_MacLeod_-_Vibe_Ace.ogg"


def make_report(dest: Path, filters: int, seconds: float) -> Path:
    """`mgctag explain` on a real clip (a minute of jazz), with stems and auralised filters."""
    from mgctag.explain.analysis import explain_file
    from mgctag.explain.report import report_html

    expl = explain_file(CLIP, auralise=filters, auralise_seconds=seconds)
    return report_html(expl, dest)


def run_checks(cdp: Cdp, page: Path, out: Path, filters: int, seconds: float) -> list[tuple]:
    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        results.append((name, bool(ok), detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}")

    cdp.attach_page()
    for domain in ("Page", "Runtime", "Network", "Log"):
        cdp.send(f"{domain}.enable")
    metrics = {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    cdp.send("Emulation.setDeviceMetricsOverride", metrics)
    cdp.events.clear()
    t0 = time.monotonic()
    cdp.send("Page.navigate", {"url": page.resolve().as_uri()})
    for _ in range(300):
        if cdp.js("document.readyState") == "complete" and cdp.js("location.protocol") == "file:":
            break
        time.sleep(0.1)
    check(
        "page loads", cdp.js("document.readyState") == "complete", f"{time.monotonic() - t0:.1f} s"
    )
    wait = "Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1)"
    for _ in range(100):
        if cdp.js(wait):
            break
        time.sleep(0.1)
    cdp.send("Runtime.evaluate", {"expression": "1"})  # flush pending events
    requests = [
        e["params"]["request"]["url"]
        for e in cdp.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    remote = [u for u in requests if not u.startswith(("data:", "file:"))]
    files = [u for u in requests if u.startswith("file:") and not u.endswith(page.name)]
    check(
        "no network request",
        not remote and not files,
        f"{len(requests)} requests, {remote + files}",
    )
    img = "(i => i && i.complete && i.naturalWidth)(document.getElementById('timeline'))"
    check("timeline image drawn", (cdp.js(img) or 0) > 500, f"{cdp.js(img)} px wide")
    broken = cdp.js("Array.from(document.images).filter(i => !i.naturalWidth).length")
    check("every image decodes", broken == 0, f"{cdp.js('document.images.length')} images")
    for table in ("terms", "stems"):
        rows = cdp.js(f"(t => t ? t.rows.length : 0)(document.getElementById('{table}'))")
        check(f"{table} table present", rows > 1, f"{rows} rows")
    durations = cdp.js("Array.from(document.querySelectorAll('audio')).map(a => a.duration)")
    check("audio elements: clip + filters", len(durations) == filters + 1, f"{len(durations)}")
    check(
        "every audio loads with its length",
        all(abs(d - seconds) < 0.05 for d in durations),
        f"{[round(d, 3) for d in durations]}",
    )
    check("no script in the page", cdp.js("document.scripts.length") == 0)
    csp = [
        e for e in cdp.events
        if e.get("method") == "Log.entryAdded" and "Content Security" in str(e)
    ]  # fmt: skip
    check("no CSP violation", not csp, f"{len(csp)}")
    height = cdp.js("document.documentElement.scrollHeight")
    cdp.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(height, 6000)})
    cdp.screenshot(out / "explain.png")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--html", type=Path, help="page to check (default: explain a real clip)")
    ap.add_argument("--filters", type=int, default=3, help="auralised filters in the page")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each filter's WAV")
    ap.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "mgctag-explain-check"
    )
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    page = a.html or make_report(a.out / "explain.html", a.filters, a.seconds)
    cdp = Cdp(a.chromium, "about:blank")
    try:
        results = run_checks(cdp, page, a.out, a.filters, a.seconds)
    finally:
        cdp.close()
    failed = [name for name, ok, _ in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed; screenshot in {a.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
