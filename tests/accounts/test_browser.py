"""The portal in a real browser (Debian's chromium through Playwright) against the running
relay: sign up, verify, make a key, call /v1 with it, find the call in logs and usage, rotate
the key, invite a teammate who sees only what a member may. Every page is screenshotted at
desktop and phone width into var/screenshots/ (git-ignored)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from django.conf import settings as django_settings
from django.core import mail

from tests.conftest import flush_logs, make_channel, make_price

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PASSWORD = "a long and unusual passphrase 42"
SHOTS = Path(django_settings.BASE_DIR) / "var" / "screenshots"
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}



def off_loop(fn, *args, **kwargs):
    """Run database work in a thread of its own: Playwright's sync API keeps an event loop
    running in the test's thread, where Django rightly refuses synchronous queries."""
    from django.db import connections

    def job():
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(job).result()


@pytest.fixture(scope="session")
def collected_static():
    """The relay serves STATIC_ROOT, which `make run` fills with collectstatic; so do we."""
    from django.core.management import call_command

    call_command("collectstatic", "--noinput", verbosity=0)


@pytest.fixture
def browser(collected_static):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("the portal's browser tests need Debian's chromium: apt-get install chromium (.ci/run does)")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def upstream(upstream_factory):
    fake = upstream_factory(name="browser", chunks=3)
    yield fake
    fake.reset()


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def link_in_mail(to: str, pattern: str, base: str) -> str:
    for message in reversed(mail.outbox):
        if to in message.to:
            found = re.search(r"https?://[^/\s]+(" + pattern + r"[^\s]*)", message.body)
            if found:
                return base + found.group(1)
    raise AssertionError(f"no mail to {to} with {pattern}: {[m.subject for m in mail.outbox]}")


def sign_up_and_verify(page, base: str, email: str) -> None:
    page.goto(base + "/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form button[type=submit]")
    page.goto(link_in_mail(email, "/confirm-email/", base))
    page.click("main form button[type=submit]")
    if "/login/" in page.url:
        page.fill("input[name=login]", email)
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
    page.goto(base + "/")
    assert page.locator("h1").inner_text() == "Dashboard"


def works(base: str, secret: str) -> bool:
    client = openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0)
    try:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError:
        return False
    return True


@pytest.fixture
def priced(upstream, transactional_db):
    make_price("gpt-test", "1", "2")
    make_channel("browser-upstream", upstream.url + "/v1", models=[("gpt-test", "gpt-4o-mini")])


def test_a_customer_goes_from_sign_up_to_a_working_key_and_a_teammate(relay, priced, upstream, settings, browser):
    settings.SIGNUP_CREDIT_USD = "5"
    base = relay.url
    page = browser.new_page(viewport=DESKTOP)

    page.goto(base + "/signup/")
    shoot(page, "signup")
    page.goto(base + "/login/")
    shoot(page, "login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"

    sign_up_and_verify(page, base, "owner@example.com")
    assert "5 USD" in page.locator("[data-balance=credit]").inner_text()

    # a key, its secret shown once, copied with the button
    page.goto(base + "/keys/")
    page.get_by_label("Name").fill("browser key")
    page.get_by_label("Requests per minute").fill("100")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-secret").input_value()
    assert secret.startswith("sk-")
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    shoot(page, "keys-new-secret")
    page.goto(base + "/keys/")
    assert secret not in page.content()

    # the key works on /v1, and the call shows in logs, usage and on the dashboard
    assert works(base, secret)
    off_loop(flush_logs)
    page.goto(base + "/logs/")
    row = page.locator("tbody tr").first
    assert "gpt-test" in row.inner_text() and "browser key" in row.inner_text() and "200" in row.inner_text()
    assert "browser-upstream" not in page.content() and upstream.url not in page.content()
    shoot(page, "logs")
    page.locator("tbody tr a").first.click()
    assert "Attempts" in page.content() and "browser-upstream" not in page.content()
    shoot(page, "log-detail")
    page.goto(base + "/usage/")
    assert "gpt-test" in page.locator("tbody").inner_text()
    shoot(page, "usage")
    page.goto(base + "/")
    shoot(page, "dashboard")
    for path, name in (("/ledger/", "ledger"), ("/pricing/", "pricing"), ("/quickstart/", "quickstart"), ("/team/", "team")):
        page.goto(base + path)
        assert page.locator("h1").count() == 1
        shoot(page, name)
    page.goto(base + "/quickstart/")
    assert base + "/v1" in page.locator("#base-url").inner_text()

    # rotate with a short window: the old secret works inside it, not after
    page.goto(base + "/keys/")
    page.get_by_role("link", name="browser key").click()
    shoot(page, "key-edit")
    page.get_by_label("Keep the old secret working for (seconds)").fill("3")
    page.get_by_role("button", name="Rotate").click()
    new_secret = page.locator("#new-secret").input_value()
    rotated_at = time.time()
    assert new_secret.startswith("sk-") and new_secret != secret
    assert works(base, secret) and works(base, new_secret)
    time.sleep(max(0.0, rotated_at + 3.5 - time.time()))
    assert not works(base, secret)
    assert works(base, new_secret)

    # invite a teammate as a member
    page.goto(base + "/team/")
    page.get_by_label("Email address").fill("mate@example.com")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Send invitation").click()
    assert "Invitation sent to mate@example.com" in page.content()
    invite = link_in_mail("mate@example.com", "/invite/", base)

    mate = browser.new_context(viewport=DESKTOP).new_page()
    sign_up_and_verify(mate, base, "mate@example.com")
    mate.goto(invite)
    mate.get_by_role("button", name="Accept the invitation").click()
    assert "You joined" in mate.content()
    assert "member" in mate.locator("#tenant-switch").inner_text()
    nav = mate.locator("header nav").inner_text()
    assert "Ledger" not in nav and "Top up" not in nav and "Team" not in nav
    mate.goto(base + "/keys/")
    assert "browser key" not in mate.content()
    mate.goto(base + "/ledger/")
    assert "Your role does not allow this" in mate.content()
    shoot(mate, "forbidden")
    mate.goto(base + "/usage/")
    assert "gpt-test" in mate.locator("tbody").inner_text()
