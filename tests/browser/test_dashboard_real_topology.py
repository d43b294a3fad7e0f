"""The free plan's dashboard moves under its delayed badge in the real topology too:
PostgreSQL and Redis, daphne, Celery and the feed runners as separate processes
(`manage.py serve` with DATABASE_URL and REDIS_URL set), in a database of its own."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest

from tests.browser.conftest import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    HISTORY_MINUTES,
    VIEWPORTS,
    ConsoleWatch,
    Site,
    _history_load,
    _playwright,
    assert_no_sideways_scroll,
    assert_on_screen,
    screenshot,
)
from tests.browser.test_dashboard import (
    DELAY_BADGE,
    MOVES_RECORDER,
    assert_moves_within_5_s_under_the_delayed_badge,
)
from tests.browser.test_site import _confirmation_link, _sign_up
from tests.e2e.test_serve import (  # noqa: F401  (a fixture)
    Running,
    _env,
    _free_port,
    _wait_http,
    throwaway_database_url,
)
from tests.fakes.stripe_server import FakeStripe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


@pytest.fixture
def real_site(tmp_path, throwaway_database_url) -> Iterator[Site]:  # noqa: F811
    _playwright()
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    port = _free_port()
    env = _env(
        var_dir=tmp_path / "var",
        port=port,
        DATABASE_URL=throwaway_database_url,
        REDIS_URL=os.environ["REDIS_URL"],
        EMAIL_FILE_PATH=str(mail_dir),
    )
    _history_load(env, minutes=HISTORY_MINUTES)
    server = Running("serve", "--no-seed", env=env)
    stripe = FakeStripe().start()
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_http(f"{url}readyz", proc=server, timeout=120)
        yield Site(url=url, server=server, stripe=stripe, mail_dir=mail_dir, env=env)
    finally:
        server.kill_everything()
        stripe.stop()


def test_a_free_plan_dashboard_moves_within_5_s_in_the_real_topology(real_site):
    """At each window size a new customer signs up; the 5 s run from the moment their
    confirmation lands on the dashboard (see assert_moves_within_5_s_under_the_delayed_badge).
    One server and one browser serve both sizes: starting the topology is the slow part."""
    sync_playwright = _playwright()
    watch = ConsoleWatch(real_site.url.rstrip("/"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            for viewport in VIEWPORTS:
                context = browser.new_context(viewport=VIEWPORTS[viewport], base_url=real_site.url)
                context.set_default_timeout(30_000)
                context.add_init_script(MOVES_RECORDER)
                context.on("page", watch.attach)
                page = context.new_page()
                email = f"real-{viewport}-{os.getpid()}-{int(time.time())}@example.com"
                _sign_up(page, email)
                page.goto(_confirmation_link(real_site, email, timeout=60))
                page.click("form button[type=submit]")
                page.wait_for_url(re.compile(r"/dashboard/"))

                assert_moves_within_5_s_under_the_delayed_badge(page)
                badge = page.locator("#delay-badge")
                assert DELAY_BADGE.match(badge.inner_text()), badge.inner_text()
                assert_on_screen(page, badge)
                assert_no_sideways_scroll(page)
                screenshot(page, f"dashboard-delayed-real-topology-{viewport}")
                context.close()
        finally:
            browser.close()
    assert not watch.errors, "\n".join(watch.errors)
