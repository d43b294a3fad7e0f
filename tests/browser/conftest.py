"""A real browser against a real server: headless Chromium driven by Playwright.

The server is `manage.py serve` in embedded mode (what `make run` starts), in a
temporary VAR_DIR on a free port, with the simulated feed running inside it. Email
goes to files (EMAIL_FILE_PATH) so a test can read the verification link, and Stripe
is the local fake from tests/fakes. Chromium is Debian's package; Playwright never
downloads a browser here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from tests.e2e.test_serve import Running, _env, _free_port, _wait_http
from tests.fakes.stripe_server import SECRET_KEY, FakeStripe

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEBHOOK_SECRET = "whsec_browser_tests"
PRICE_PRO = "price_pro_browser"
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; it is a dev requirement)")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    return sync_playwright


@dataclass
class Site:
    url: str
    server: Running
    stripe: FakeStripe | None  # None: a server without online payment
    mail_dir: Path
    env: dict[str, str]
    stripe_events: list[dict] = field(default_factory=list)

    def emails(self) -> list[str]:
        return [p.read_text() for p in sorted(self.mail_dir.glob("*.log"))]

    def shell(self, code: str) -> str:
        """Run `code` in `manage.py shell` against the server's database, as an operator's
        console would; returns what it printed."""
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
            cwd=settings.BASE_DIR,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout


# Stored history older than the free plan's 15-minute delay, as a product that has been
# running for a while has: a delayed plan's dashboard shows it from the first second.
HISTORY_MINUTES = 40
_HISTORY_SCRIPT = "from tests.browser.history import history_load; history_load(minutes={minutes})"


def _history_load(env: dict[str, str], *, minutes: int) -> None:
    for args in (
        ["migrate", "--no-input", "-v", "0"],
        ["shell", "-c", _HISTORY_SCRIPT.format(minutes=minutes)],
    ):
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )


def site_running(tmp_path_factory, *, with_stripe: bool = True, **extra_env: str) -> Iterator[Site]:
    """A server in embedded mode with stored history; Stripe is the local fake, or absent
    (`with_stripe=False`: plans are requested from an operator instead of bought)."""
    _playwright()
    tmp = tmp_path_factory.mktemp("browser-site")
    mail_dir = tmp / "mail"
    mail_dir.mkdir()
    stripe = FakeStripe().start() if with_stripe else None
    port = _free_port()
    payment = (
        {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_API_BASE": stripe.base,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_PRICE_PRO": PRICE_PRO,
        }
        if stripe
        else {"STRIPE_SECRET_KEY": ""}
    )
    env = _env(
        var_dir=tmp / "var",
        port=port,
        EMAIL_FILE_PATH=str(mail_dir),
        **payment,
        **extra_env,
        # No SITE_URL: email links must default to the address served on (PORT).
    )
    server = None
    try:
        _history_load(env, minutes=HISTORY_MINUTES)
        server = Running("serve", "--no-seed", env=env)
        url = f"http://127.0.0.1:{port}/"
        _wait_http(f"{url}healthz", proc=server, timeout=90)
        server.wait_for(re.compile(r"Feed runner started"), timeout=30)
        yield Site(url=url, server=server, stripe=stripe, mail_dir=mail_dir, env=env)
    finally:
        if server is not None:
            server.kill_everything()
        if stripe is not None:
            stripe.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """One running server per test module (starting it costs a few seconds)."""
    yield from site_running(tmp_path_factory)


@pytest.fixture(scope="module")
def browser(site):
    sync_playwright = _playwright()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()


# Redoc (the API docs page) always renders a "powered by" logo from its vendor's CDN; the
# CSP refuses it (no third-party requests), Redoc hides the broken image, the page works.
KNOWN_REFUSALS = ("cdn.redoc.ly/redoc/logo-mini.svg",)


class ConsoleWatch:
    """Collects what breaks a page: uncaught exceptions, console errors (CSP refusals
    included), failed page or static loads, requests that got no answer at all, and
    server errors.

    API answers in the 4xx range are not errors of the page: they are the API's contract
    (404 "no book received yet", 403 plan_required) and the page handles them. Chromium
    still logs every such answer as "Failed to load resource", so those lines are judged
    from the response instead.
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.errors: list[str] = []

    def attach(self, page) -> None:
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: uncaught {exc}"))
        page.on("response", self._response)
        page.on("requestfailed", self._request_failed)

    def _request_failed(self, request) -> None:
        # ERR_ABORTED is the browser cancelling what a page had in flight when it was left
        # (a poll, a chart's fetch): not a failure. Anything else (refused, reset, blocked
        # by the CSP) is a request that never got its answer.
        failure = request.failure or ""
        if self._ours(request.url) and "ERR_ABORTED" not in failure:
            self.errors.append(f"{request.method} {request.url} failed: {failure}")

    def _ours(self, url: str) -> bool:
        return url.startswith(self.origin)

    def _console(self, page, message) -> None:
        if message.type != "error" or not self._ours(page.url):
            return
        if message.text.startswith("Failed to load resource"):
            return  # judged in _response, which knows the URL and the status
        if any(known in message.text for known in KNOWN_REFUSALS):
            return
        self.errors.append(f"{page.url}: {message.text}")

    def _response(self, response) -> None:
        url = response.url
        if not self._ours(url):
            return
        path = url[len(self.origin) :]
        if response.status >= 500 or (response.status >= 400 and not path.startswith("/api/")):
            self.errors.append(f"{response.status} for {url}")


@pytest.fixture
def new_context(browser, site):
    """Factory of fresh browser contexts (each its own cookies), all watched for errors."""
    contexts = []
    watch = ConsoleWatch(site.url.rstrip("/"))

    def make(viewport: str = "desktop", **options):
        """`options` go to Playwright's new_context, e.g. storage_state=other.storage_state()
        to be the same signed-in customer in a second window size."""
        context = browser.new_context(viewport=VIEWPORTS[viewport], base_url=site.url, **options)
        context.set_default_timeout(20_000)
        context.on("page", watch.attach)
        contexts.append(context)
        return context

    make.watch = watch
    yield make
    for context in contexts:
        context.close()
    if watch.errors:
        # A server error is explained by the server's own traceback.
        tracebacks = [part for part in site.server.output.split("Traceback") if "Error" in part]
        detail = "\n".join("Traceback" + t[-2000:] for t in tracebacks[-2:])
        raise AssertionError("JavaScript errors:\n" + "\n".join(watch.errors) + "\n" + detail)


def screenshot(page, name: str) -> Path:
    """Full-page screenshot into var/screenshots/ (not committed) for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_on_screen(page, locator) -> None:
    """`locator` is shown and lies within the window's width: nothing hidden, nothing cut
    off at the side of a phone."""
    what = str(locator)
    assert locator.is_visible(), f"{what} is not visible"
    box = locator.bounding_box()
    width = page.viewport_size["width"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, f"{what} overflows: {box}"


def assert_no_sideways_scroll(page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} scrolls sideways ({width} px)"


def assert_next_to(field, message) -> None:
    """The message sits right under its field, in the same column (on a phone as well)."""
    box, under = field.bounding_box(), message.bounding_box()
    assert box and under, "field or message not rendered"
    gap = under["y"] - (box["y"] + box["height"])
    assert -1 <= gap <= 24, f"message is {gap:.0f} px from its field"
    assert under["x"] < box["x"] + box["width"] and box["x"] < under["x"] + under["width"], (
        f"message beside, not under, its field: {box} {under}"
    )
