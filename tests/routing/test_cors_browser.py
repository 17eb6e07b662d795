"""CORS in a real browser (Debian's chromium through Playwright): a page served from another
origin (a second loopback port) calls the relay's /v1/chat/completions with `fetch`, with a
bearer key (so the browser sends a preflight first), and reads the streamed answer chunk by
chunk from the response body."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import make_channel, make_price, settle_background
from tests.routing.conftest import ledger_charge

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>another origin</title></head>
<body><pre id="out"></pre>
<script>
const config = %(config)s;
window.result = null;
(async () => {
  const result = {reads: 0, text: "", status: 0, requestId: null, error: null};
  try {
    const response = await fetch(config.url + "/v1/chat/completions", {
      method: "POST",
      headers: {"Authorization": "Bearer " + config.key, "Content-Type": "application/json"},
      body: JSON.stringify({model: "m-test", stream: true, messages: [{role: "user", content: "hi"}]}),
    });
    result.status = response.status;
    result.requestId = response.headers.get("x-request-id");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      result.reads += 1;
      buffered += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffered.indexOf("\\n\\n")) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = event.replace(/^data: /, "");
        if (data === "[DONE]") continue;
        const delta = (JSON.parse(data).choices[0] || {}).delta || {};
        result.text += delta.content || "";
        document.getElementById("out").textContent = result.text;
      }
    }
  } catch (error) {
    result.error = String(error);
  }
  window.result = result;
})();
</script></body></html>
"""


class _PageServer:
    """One HTML page on a loopback port of its own: an origin other than the relay's."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_page_on_another_origin_streams_a_chat_answer_with_fetch(relay, alice, upstream_factory):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("the browser tests need Debian's chromium: apt-get install chromium (.ci/run does)")
    fake = upstream_factory(name="cors", chunks=4, chunk_delay_s=0.05)
    make_price("m-test", "1000", "2000")
    make_channel("cors", fake.url + "/v1", models=[("m-test", "gpt-4o-mini")])
    html = PAGE % {"config": json.dumps({"url": relay.url, "key": alice.key})}

    with _PageServer(html) as page_server, sync_playwright() as playwright:
        assert page_server.url.split(":")[2] != relay.url.split(":")[2]  # another port: another origin
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(page_server.url)
            page.wait_for_function("window.result !== null", timeout=30_000)
            result = page.evaluate("window.result")
            shown = page.inner_text("#out")
        finally:
            browser.close()

    assert result["error"] is None, result
    assert result["status"] == 200
    assert result["text"] == shown == fake.text
    assert result["reads"] >= 2  # the body was read as a stream, not as one whole answer
    assert result["requestId"]  # an exposed header the page may read
    settle_background()
    assert ledger_charge(result["requestId"]) > 0
