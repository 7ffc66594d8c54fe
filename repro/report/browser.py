"""Open a run's HTML report in a real browser (headless Chromium through Playwright) and check it:
every page loads with no console error, every picture is decoded, every link resolves (to a file
and, for #ids, to an element of that page). Also takes the overview's screenshot for the docs:

    python -m repro.report.browser figures/report/index.html --screenshot docs/report-overview.png

Chromium is the system's (Debian's `chromium` package); Playwright's own browser downloads are
never used. `find_chromium` says where it is, or None.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

# The flags a sandboxed, offline machine needs: no background connections (refused here, and
# noisy), no first-run or sync, a fresh profile for every launch.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    for path in CHROMIUM_PATHS:
        if Path(path).is_file():
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    """What one page showed: its console errors, pictures that did not decode, and its links."""
    path: Path
    errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


@contextmanager
def browser_page(width: int = 1400, height: int = 900):
    """A Playwright page of a headless system Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright
    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found (install Debian's chromium package)")
    with tempfile.TemporaryDirectory(prefix="repro-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS),
            viewport={"width": width, "height": height})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def check_page(page, path: Path) -> PageCheck:
    """Load one page of the report and report what went wrong on it."""
    check = PageCheck(Path(path))
    page.on("console", lambda message: check.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: check.errors.append(str(error)))
    page.on("requestfailed", lambda request: check.errors.append(f"failed to load {request.url}"))
    page.goto(Path(path).resolve().as_uri(), wait_until="load")
    check.broken_images = page.eval_on_selector_all(
        "img", "images => images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))")
    check.links = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
    check.ids = set(page.eval_on_selector_all("[id]", "nodes => nodes.map(n => n.id)"))
    return check


def crawl(index: Path, *, screenshot: Path | None = None) -> dict[Path, PageCheck]:
    """Every page reachable from index.html, each checked; links are followed within the report."""
    index = Path(index).resolve()
    checks: dict[Path, PageCheck] = {}
    todo = [index]
    with browser_page() as page:
        while todo:
            path = todo.pop()
            if path in checks:
                continue
            fresh = page.context.new_page()
            try:
                checks[path] = check_page(fresh, path)
                if screenshot is not None and path == index:
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    fresh.screenshot(path=str(screenshot), full_page=False)
            finally:
                fresh.close()
            for href in checks[path].links:
                target = _local_target(path, href)
                if target is not None and target.suffix == ".html" and target.is_file():
                    todo.append(target)
    return checks


def link_problems(checks: dict[Path, PageCheck]) -> list[str]:
    """Links to files that do not exist, or to #ids their page does not have."""
    problems = []
    for path, check in checks.items():
        for href in check.links:
            target = _local_target(path, href)
            if target is None:
                continue
            if not target.exists():
                problems.append(f"{path.name}: {href} (no such file)")
                continue
            fragment = unquote(urlsplit(href).fragment)
            if fragment and "=" not in fragment and target in checks and fragment not in checks[target].ids:
                problems.append(f"{path.name}: {href} (no element with id {fragment!r})")
    return problems


def _local_target(page: Path, href: str) -> Path | None:
    """The file a relative link points at (None for other schemes)."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        return None
    return (page.parent / unquote(parts.path)).resolve() if parts.path else page


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("index", type=Path, help="the report's index.html")
    parser.add_argument("--screenshot", type=Path, help="PNG of the overview to write")
    args = parser.parse_args(argv)
    checks = crawl(args.index, screenshot=args.screenshot)
    problems = [f"{path.name}: {error}" for path, check in checks.items() for error in check.errors]
    problems += [f"{path.name}: picture {src} not decoded" for path, check in checks.items()
                 for src in check.broken_images]
    problems += link_problems(checks)
    print(f"{len(checks)} pages, {sum(len(c.links) for c in checks.values())} links: "
          + (f"{len(problems)} problems" if problems else "no problems"))
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
