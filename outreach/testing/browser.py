"""Debian's chromium, headless, for checking pages as a person's browser renders them.

``--virtual-time-budget`` lets the page's scripts run (charts draw, timers fire) before the
DOM is dumped or the screenshot taken, without sleeping in real time.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def _run(url: str, *extra: str, budget_ms: int, timeout: float) -> subprocess.CompletedProcess:
    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="outreach-chromium-") as profile:
        return subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )


def chromium_dom(url: str, *, budget_ms: int = 3000, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran."""
    return _run(url, "--dump-dom", budget_ms=budget_ms, timeout=timeout).stdout


def chromium_screenshot(
    url: str, path: Path, *, width: int = 1400, height: int = 2000, budget_ms: int = 3000
) -> Path:
    _run(
        url,
        f"--screenshot={path}",
        f"--window-size={width},{height}",
        budget_ms=budget_ms,
        timeout=90,
    )
    return path
