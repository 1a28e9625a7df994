"""The browser caller at `/`, driven in Debian's real headless Chromium whose fake microphone
plays a spoken WAV: transcript, agent text and audio, typed turns, hang-up and the error paths."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import silence

pytestmark = pytest.mark.platform

CHROMIUM = "/usr/bin/chromium"
# Chromium as root on a machine with a closed network: no sandbox, no GPU, no calls home.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # a turn takes seconds, not expect's default 5 s
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: bash scripts/setup.sh installs Debian's chromium"
    with sync_playwright() as pw:
        yield pw


def launch(pw, *flags: str):
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS + list(flags))


def open_page(browser, url: str):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return page, errors


def stats(page) -> dict:
    return page.evaluate("() => window.voiceStats")


def caller_wav(speak, path: Path, question: str, cut_in: str) -> Path:
    """Silence while the greeting plays, a question, and a second one said while the agent is
    still answering the first (a barge-in), then silence for the endpoint."""
    from common.audio import write_wav

    write_wav(path, silence(4.0) + speak(question) + silence(3.0) + speak(cut_in) + silence(6.0), 16000)
    return path


def save_failure(page, output_dir: Path) -> None:
    """What the page showed and heard, for a failed run."""
    page.screenshot(path=str(output_dir / "failure.png"), full_page=True)
    events = page.evaluate("() => [...document.querySelectorAll('#events li')].map(e => e.textContent)")
    (output_dir / "failure.json").write_text(json.dumps({"stats": stats(page), "events": events}, indent=1))


def test_browser_call(platform, playwright, speak, output_dir):
    from playwright.sync_api import expect

    wav = caller_wav(speak, output_dir / "caller.wav", "What are your opening hours?", "How long is the warranty?")
    browser = launch(playwright, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop")
    page = None
    try:
        page, errors = open_page(browser, platform["http"] + "/")
        expect(page.locator("#conn")).to_have_text("not connected")
        page.fill("#caller", "browser-caller")
        page.click("#connect")
        expect(page.locator("#conn")).to_have_text("connected")
        expect(page.locator("#mic-state")).to_have_text("on")

        # The WAV, heard through the page's microphone, AudioWorklet and WebSocket.
        expect(page.locator("#log li.caller").first).to_have_text(re.compile("opening hours", re.I))
        expect(page.locator("#log li.agent").nth(2)).to_have_text(re.compile(r"\w"))  # after the greeting's two
        agent = " ".join(page.locator("#log li.agent").all_inner_texts())
        assert re.search(r"monday|open", agent, re.I), agent
        page.wait_for_function("() => window.voiceStats.latencies.some(r => r.kind === 'voice')")
        page.wait_for_function("() => window.voiceStats.samplesPlayed > 32000")  # greeting and more, played
        s = stats(page)
        voice = [r for r in s["latencies"] if r["kind"] == "voice"][0]
        assert 0 < voice["ms"] < 5000, voice
        assert s["partials"] >= 1, s  # the caller's words showed while they spoke, before the final
        # 20 ms frames go on streaming: past the 6 s the WAV takes to reach the end of its speech (the
        # early endpoint can answer before the page has sent that many)
        page.wait_for_function("() => window.voiceStats.framesSent > 300")
        expect(page.locator("#latency li").first).to_contain_text("ms")

        # The second question cuts the answer short: audio.clear empties the page's buffer.
        page.wait_for_function("() => window.voiceStats.clears >= 1")
        page.wait_for_function("() => window.voiceStats.bufferedAfterClear !== null")
        assert stats(page)["bufferedAfterClear"] == 0
        expect(page.locator("#log li.caller").nth(1)).to_have_text(re.compile("warranty", re.I))
        expect(page.locator("#log li.agent").filter(has_text=re.compile("warranty|year", re.I)).first).to_be_visible()

        # A typed turn, with the keyboard only, once the answer has been spoken.
        expect(page.locator("#agent-state")).to_have_text("listening")
        page.focus("#text")
        page.keyboard.type("Do you ship to Canada?")
        page.keyboard.press("Enter")
        expect(page.locator("#log li.caller").nth(2)).to_have_text(re.compile("canada", re.I))
        expect(page.locator("#log li.agent").filter(has_text=re.compile("canada", re.I)).first).to_be_visible()
        page.wait_for_function("() => window.voiceStats.latencies.some(r => r.kind === 'typed')")
        page.wait_for_function("() => window.voiceStats.latencies.every(r => r.server !== null)")  # turn.metrics joined
        rows = stats(page)["latencies"]
        turns = [r["turn"] for r in rows]
        assert turns == sorted(set(turns)) and turns[0] >= 1, turns  # one row per turn, the greeting not among them
        assert all(0 < r["ms"] < 5000 for r in rows), rows
        assert [r["kind"] for r in rows] == ["voice", "voice", "typed"], rows
        expect(page.locator("#chart rect")).to_have_count(3)
        page.screenshot(path=str(output_dir / "call.png"), full_page=True)

        page.click("#hangup")
        expect(page.locator("#conn")).to_have_text("call ended")
        assert stats(page)["lastEnd"] == "hangup"
        expect(page.locator("#message")).to_contain_text("You hung up")
        assert not errors, errors
        page.set_viewport_size({"width": 375, "height": 740})  # phone-sized: still one readable column
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
        page.screenshot(path=str(output_dir / "phone.png"), full_page=True)
    except Exception:
        if page is not None:
            save_failure(page, output_dir)
        raise
    finally:
        browser.close()


def test_static_files(platform):
    with urllib.request.urlopen(platform["http"] + "/") as r:
        page = r.read().decode()
    assert r.headers["content-type"].startswith("text/html")
    # Offline: nothing on the page comes from another origin.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "external resource on the page"
    for name, kind in (("app.js", "text/javascript"), ("worklets.js", "text/javascript"), ("style.css", "text/css")):
        with urllib.request.urlopen(f"{platform['http']}/static/{name}") as r:
            assert r.headers["content-type"].startswith(kind)
            assert "http://" not in r.read().decode().replace("http://www.w3.org/2000/svg", "")
    for bad in ("../gateway.py", "..%2Fgateway.py", "index.html", "nope.js"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{platform['http']}/static/{bad}")
        assert err.value.code == 404, bad


class DropProxy:
    """A TCP relay to the platform that can cut every connection: a dropped network, for real.
    While `blocked`, new connections are cut at once (the network is still down)."""

    def __init__(self, port: int):
        self.upstream = port
        self.blocked = False
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.conns.clear()

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_browser_errors(platform, playwright, output_dir):
    """Microphone denied (typing still works, an escalation shows), server unreachable, at
    capacity, a dropped connection and reconnect."""
    from playwright.sync_api import expect
    from websocket import create_connection

    # No fake-UI flag: Chromium denies the microphone prompt. The call still works by typing.
    browser = launch(playwright, "--deny-permission-prompts")
    try:
        page, errors = open_page(browser, platform["http"] + "/")
        page.click("#connect")
        expect(page.locator("#message")).to_contain_text("Microphone access was denied")
        expect(page.locator("#conn")).to_have_text("connected")
        expect(page.locator("#mic-state")).to_have_text("blocked")
        page.fill("#text", "What are your opening hours?")
        page.click("#send")
        expect(page.locator("#log li.caller")).to_have_text(re.compile("opening hours", re.I))
        # Asking for a person: the page shows the escalation, then the call's end.
        expect(page.locator("#agent-state")).to_have_text("listening")
        page.fill("#text", "I want to speak to a human")
        page.click("#send")
        expect(page.locator("#log li.escalation")).to_contain_text("Transferring you to a person")
        expect(page.locator("#conn")).to_have_text("call ended")
        expect(page.locator("#message")).to_contain_text("handed to a human")
        assert stats(page)["lastEnd"] == "escalated"

        # Nobody listening on the server address.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        page.goto(f"{platform['http']}/?server=ws://127.0.0.1:{closed}")
        page.click("#connect")
        expect(page.locator("#message")).to_contain_text("Cannot reach the voice server")
        expect(page.locator("#reconnect")).to_be_visible()

        # Every line taken: the page says the agent is busy.
        with urllib.request.urlopen(platform["http"] + "/ready") as r:
            free = json.load(r)["remaining_capacity"]
        held = []
        try:
            for i in range(free):
                ws = create_connection(f"{platform['ws']}?caller_id=holder{i}", timeout=30)
                assert json.loads(ws.recv())["type"] == "session.started"
                held.append(ws)
            page.goto(platform["http"] + "/")
            page.click("#connect")
            expect(page.locator("#message")).to_contain_text("All lines are busy")
            expect(page.locator("#conn")).to_have_text("busy")
        finally:
            for ws in held:
                ws.close()

        # The network drops mid-call and stays down past the page's resume time (2 s here): the
        # page tries to dial the call back, then says the connection dropped and reconnects on request.
        proxy = DropProxy(platform["port"])
        try:
            page.goto(f"{platform['http']}/?server=ws://127.0.0.1:{proxy.port}&resume_s=2")
            page.click("#connect")
            expect(page.locator("#conn")).to_have_text("connected")
            proxy.blocked = True
            proxy.cut()
            expect(page.locator("#conn")).to_have_text("Reconnecting…")
            expect(page.locator("#conn")).to_have_text("connection lost")
            expect(page.locator("#message")).to_contain_text("connection dropped")
            page.screenshot(path=str(output_dir / "dropped.png"), full_page=True)
            proxy.blocked = False
            page.click("#reconnect")
            expect(page.locator("#conn")).to_have_text("connected")
            page.click("#hangup")
            expect(page.locator("#conn")).to_have_text("call ended")
        finally:
            proxy.close()
        assert not errors, errors
    finally:
        browser.close()


def test_browser_call_resumes_after_a_dropped_connection(platform, playwright, output_dir):
    """The network drops mid-call: the page shows "Reconnecting…", dials the same call back with
    its resume token (same session, no second greeting), and the microphone, the player and
    typed turns go on."""
    from playwright.sync_api import expect

    from common.audio import write_wav

    wav = output_dir / "quiet.wav"
    write_wav(wav, silence(5.0), 16000)  # a quiet room: the microphone runs, nobody speaks
    browser = launch(playwright, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={wav}")
    proxy = DropProxy(platform["port"])
    page = None
    try:
        page, errors = open_page(browser, f"{platform['http']}/?server=ws://127.0.0.1:{proxy.port}")
        page.fill("#caller", "browser-resume")
        page.click("#connect")
        expect(page.locator("#conn")).to_have_text("connected")
        expect(page.locator("#agent-state")).to_have_text("listening")  # the greeting is over
        before = stats(page)
        assert before["sessionId"] and before["resumes"] == 0, before

        proxy.cut()
        expect(page.locator("#conn")).to_have_text("Reconnecting…")
        expect(page.locator("#mic-state")).to_have_text("on")  # kept, not torn down
        expect(page.locator("#conn")).to_have_text("connected")
        after = stats(page)
        assert after["sessionId"] == before["sessionId"] and after["resumes"] == 1, after
        expect(page.locator("#message")).to_contain_text("goes on")
        # the microphone goes on, on the new socket
        page.wait_for_function(f"() => window.voiceStats.framesSent > {after['framesSent'] + 25}")

        page.fill("#text", "What are your opening hours?")
        page.click("#send")
        expect(page.locator("#log li.agent").filter(has_text=re.compile("monday", re.I)).first).to_be_visible()
        page.wait_for_function(f"() => window.voiceStats.audioBytesReceived > {after['audioBytesReceived']}")
        greetings = page.locator("#log li.agent").filter(has_text="How can I help?")  # VOICE_GREETING
        expect(greetings).to_have_count(1)  # the call went on: no second greeting
        started = page.evaluate(
            "() => [...document.querySelectorAll('#events li')].map(e => JSON.parse(e.textContent))"
            ".filter(e => e.type === 'session.started')"
        )
        assert [e["resumed"] for e in started] == [False, True], started
        assert started[0]["session_id"] == started[1]["session_id"]
        assert started[0]["resume_token"] != started[1]["resume_token"]
        page.screenshot(path=str(output_dir / "resumed.png"), full_page=True)

        page.click("#hangup")
        expect(page.locator("#conn")).to_have_text("call ended")
        assert stats(page)["lastEnd"] == "hangup"
        assert not errors, errors
    except Exception:
        if page is not None:
            save_failure(page, output_dir)
        raise
    finally:
        proxy.close()
        browser.close()
