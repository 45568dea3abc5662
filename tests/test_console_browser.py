"""The web console and the API explorer in a real browser: Debian's Chromium driven by Playwright."""

import os
import shutil

import pytest

from tests.conftest import auth
from tests.helpers import ROOT, wait_until, web_process

ARTIFACTS = os.path.join(ROOT, "test-artifacts")
PASSWORD = "correct horse battery"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("BSN_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is missing (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)


def log_in(browser, url, username, path="/console"):
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + path)
    page.fill("#login-form input[name=username]", username)
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button")
    page.wait_for_selector("#app:not([hidden])")
    page.wait_for_selector('[data-ns="/chat"][data-status="connected"]')
    return context, page


def messages_text(page):
    return page.locator("#messages li .body").all_inner_texts()


@pytest.mark.parametrize("workers", [1, 2])  # two: websocket only, and the two people may sit on different workers
def test_two_people_chat_see_typing_receipts_and_get_what_they_missed(browser, app, client, make_user, workers):
    _, ann = make_user("ann")
    ben_id, _ = make_user("ben")
    chat = client.post("/api/conversations/", json={"user_ids": [ben_id]}, headers=auth(ann)).get_json()["id"]
    with web_process(app, workers=workers) as web:
        ann_context, a = log_in(browser, web.url, "ann")
        ben_context, b = log_in(browser, web.url, "ben")
        for page in (a, b):
            page.click(f'#conversations li[data-conversation="{chat}"]')
            page.wait_for_selector("#conversation:not([hidden])")

        a.fill("#message-input", "<b>hello</b> ben")
        a.press("#message-input", "Enter")
        b.wait_for_selector("#messages li .body >> text=<b>hello</b> ben")  # shown as text, not as markup
        assert b.locator("#messages b").count() == 0

        b.type("#message-input", "hi a")
        a.wait_for_selector("#typing >> text=typing")
        b.press("#message-input", "Enter")
        a.wait_for_selector("#messages li .body >> text=hi a")
        a.wait_for_selector(f"#messages li .seen >> text=#{ben_id}")  # ben read ann's message

        b.locator("#messages li", has_text="hello").locator("button.react").click()
        a.wait_for_selector("#messages li .reactions >> text=👍")
        a.wait_for_selector(f'[data-user="{ben_id}"] .dot[data-online="yes"]')
        shot(a, "console-chat-ann")

        # Ben's network drops; Ann writes; Ben comes back and gets exactly what he missed.
        ben_context.set_offline(True)
        b.evaluate("Object.values(state.sockets).forEach((s) => s.io.engine.close())")
        b.wait_for_selector('[data-ns="/chat"][data-status="reconnecting"]')
        for i in range(3):
            a.fill("#message-input", f"while away {i}")
            a.press("#message-input", "Enter")
            a.wait_for_selector(f"#messages li .body >> text=while away {i}")
        ben_context.set_offline(False)
        b.wait_for_selector('[data-ns="/chat"][data-status="connected"]', timeout=30_000)
        b.wait_for_selector("#messages li .body >> text=while away 2")
        texts = messages_text(b)
        assert texts == ["<b>hello</b> ben", "hi a", "while away 0", "while away 1", "while away 2"]
        shot(b, "console-chat-ben-after-reconnect")
        ann_context.close()
        ben_context.close()


def test_the_mining_panel_starts_heartbeats_and_stops_when_they_stop(browser, app, make_user):
    make_user("miner")
    with web_process(app, HEARTBEAT_TIMEOUT=3, HEARTBEAT_RATE_LIMIT="1000 per minute") as web:
        context = browser.new_context()
        page = context.new_page()
        page.goto(web.url + "/console?heartbeat=1")
        page.fill("#login-form input[name=username]", "miner")
        page.fill("#login-form input[name=password]", PASSWORD)
        page.click("#login-form button")
        page.wait_for_selector("#app:not([hidden])")
        page.click("#mining-start")
        page.wait_for_selector('#mining-status[data-state="mining"]')
        started = page.get_attribute("#mining-heartbeat", "data-at")
        wait_until(lambda: page.get_attribute("#mining-heartbeat", "data-at") != started, message="a heartbeat")
        shot(page, "console-mining")
        # The tab is hidden: the console sends a last heartbeat and then none.
        page.evaluate(
            "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        # Asked of the web process itself: its HEARTBEAT_TIMEOUT (3 s) is the one that counts.
        still_mining = (
            "async () => (await (await fetch('/api/mining/stats/', "
            "{headers: {Authorization: 'Bearer ' + state.token}})).json()).is_mining"
        )
        wait_until(lambda: not page.evaluate(still_mining), message="the session to lapse without heartbeats")
        page.evaluate(
            "Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        page.wait_for_selector('#mining-status[data-state="stopped"]')
        assert "heartbeat_timeout" in page.inner_text("#mining-reason")
        shot(page, "console-mining-stopped")
        context.close()


def test_the_api_explorer_works_offline_with_bearer_auth(browser, app):
    with web_process(app) as web:
        context = browser.new_context()
        page = context.new_page()
        foreign = []
        page.on("request", lambda request: None if request.url.startswith(web.url) else foreign.append(request.url))
        page.goto(web.url + "/api/docs")
        page.wait_for_selector("text=BSN API")
        page.wait_for_selector("button.authorize")  # the bearer scheme of the document
        page.wait_for_selector("text=/api/auth/login/")
        shot(page, "api-docs")
        assert foreign == []
        context.close()


def test_the_console_says_what_is_missing_without_socket_io_client(browser, app, make_user):
    make_user("nojs")
    with web_process(app, BSN_CONSOLE_VENDOR_DIR="/nonexistent") as web:
        context = browser.new_context()
        page = context.new_page()
        page.goto(web.url + "/console")
        page.fill("#login-form input[name=username]", "nojs")
        page.fill("#login-form input[name=password]", PASSWORD)
        page.click("#login-form button")
        page.wait_for_selector("#missing:not([hidden])")
        assert "npm ci" in page.inner_text("#missing")
        context.close()
