"""The HTML report in a real browser: headless Debian Chromium.

1. A report of two real tiny-model runs is screenshotted with Chromium's own ``--screenshot``
   (``--window-size=1280,2000``); Chromium's log (``--enable-logging=stderr``) must hold no
   ``CONSOLE`` line (the page has no scripts, so any console message, a Content-Security-Policy
   violation included, is a failure), and the PNG must not be blank. The screenshot is kept at
   ``test-artifacts/report.png`` (git-ignored) and in tmp_path.
2. A report whose strings carry ``<script>alert(1)</script>`` / ``<img src=x onerror=alert(1)>``,
   with its CSP removed (so escaping alone must protect it), is driven over the DevTools protocol
   (``--remote-debugging-pipe``, stdlib only): no JavaScript dialog, console call, exception or log
   error may appear, no ``script`` element or ``onerror`` attribute may exist, and the payloads
   must be visible text.

Skips when Chromium is missing, unless MMGPT_EVAL_REQUIRE_CHROMIUM=1 (CI), where it fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from test_report import IMG, SCRIPT, make_payload_runs, make_real_runs

from mmgpt_eval.report import build_report, write_report
from mmgpt_eval.results import RunResults

pytestmark = pytest.mark.chromium

REPO = Path(__file__).resolve().parents[1]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    msg = "headless Chromium not found (/usr/bin/chromium; Debian: apt-get install -y chromium)"
    if os.environ.get("MMGPT_EVAL_REQUIRE_CHROMIUM") == "1":
        pytest.fail(msg + " and MMGPT_EVAL_REQUIRE_CHROMIUM=1 requires it")
    pytest.skip(msg + "; set MMGPT_EVAL_REQUIRE_CHROMIUM=1 to make this a failure")


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, chromium):  # chromium first: skip before spending time on model runs
    return make_real_runs(tmp_path_factory)


def _nonblank(png: Path) -> tuple[float, float]:
    """(fraction of non-white pixels, grey-level standard deviation) of a screenshot."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        a = np.asarray(im.convert("L"), dtype=np.float32)
    return float((a < 245).mean()), float(a.std())


def test_report_screenshot_no_console_errors(runs, chromium, tmp_path):
    a, b = RunResults.load(runs["A"]), RunResults.load(runs["B"])
    gate = json.loads(runs["gate"].read_text())
    page = write_report(tmp_path / "report.html", [b], baseline=a, gate=gate, n_resamples=500)
    shot = tmp_path / "report.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    t = time.time()
    proc = subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = proc.stdout + proc.stderr
    assert shot.is_file(), f"no screenshot (rc {proc.returncode}):\n{log[-3000:]}"
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert not console, "console messages:\n" + "\n".join(console)
    assert time.time() - t < 30
    dark, std = _nonblank(shot)
    assert dark > 0.02 and std > 10, (dark, std)  # text, tables and badges drawn, not a blank page
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copyfile(shot, artifacts / "report.png")


# ------------------------------------------------------------------------------------------ DevTools
class _CDP:
    """Minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, chromium: str, profile: Path):
        self._in_r, self._in_w = os.pipe()  # we write commands -> chromium reads fd 3
        self._out_r, self._out_w = os.pipe()  # chromium writes fd 4 -> we read
        in_r, out_w = self._in_r, self._out_w

        def child() -> None:  # runs in the child before exec: put the pipe ends on fds 3 and 4
            a, b = os.dup(in_r), os.dup(out_w)  # above 4 here (0-4 are taken), so no clash below
            os.dup2(a, 3, inheritable=True)
            os.dup2(b, 4, inheritable=True)

        self.proc = subprocess.Popen(
            [
                chromium,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "--window-size=1280,2000",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child,
            close_fds=False,
        )
        os.close(self._in_r)
        os.close(self._out_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._in_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self._buf:
            left = deadline - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([self._out_r], [], [], left)
            if not r:
                return None
            chunk = os.read(self._out_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 20) -> dict:
        self._id += 1
        cmd = {"id": self._id, "method": method, "params": params or {}}
        if session:
            cmd["sessionId"] = session
        os.write(self._in_w, json.dumps(cmd).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read(deadline)
            if m is None:
                raise TimeoutError(method)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._event(m, session)

    def _event(self, m: dict, session: str | None) -> None:
        self.events.append(m)
        if m.get("method") == "Page.javascriptDialogOpening" and session:  # dismiss, or the page hangs
            self._id += 1
            os.write(
                self._in_w,
                json.dumps(
                    {
                        "id": self._id,
                        "method": "Page.handleJavaScriptDialog",
                        "params": {"accept": True},
                        "sessionId": session,
                    }
                ).encode()
                + b"\0",
            )

    def wait_for(self, method: str, session: str, timeout: float = 20) -> bool:
        deadline = time.time() + timeout
        while True:
            if any(e.get("method") == method for e in self.events):
                return True
            m = self._read(deadline)
            if m is None:
                return False
            if "id" not in m:
                self._event(m, session)

    def drain(self, session: str, seconds: float) -> None:
        deadline = time.time() + seconds
        while (m := self._read(deadline)) is not None:
            if "id" not in m:
                self._event(m, session)


@contextlib.contextmanager
def opened_page(chromium: str, page: Path, profile: Path) -> Iterator[tuple[_CDP, str, Callable[[str], Any]]]:
    """``page`` loaded in a fresh headless Chromium over DevTools (Page, Runtime and Log enabled):
    yields the connection, the session id and ``js(expression) -> value``; closed afterwards."""
    profile.mkdir(parents=True, exist_ok=True)
    cdp = _CDP(chromium, profile)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Page.enable", "Runtime.enable", "Log.enable"):
            cdp.send(m, session=sid)
        cdp.send("Page.navigate", {"url": page.resolve().as_uri()}, session=sid)
        assert cdp.wait_for("Page.loadEventFired", sid), "page did not load"
        cdp.drain(sid, 0.5)

        def js(expr: str) -> Any:
            return cdp.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sid)["result"][
                "value"
            ]

        yield cdp, sid, js
    finally:
        cdp.close()


def noisy_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a quiet page never shows: dialogs, console calls, exceptions, logged errors and warnings."""
    return [
        e
        for e in events
        if e.get("method") in ("Page.javascriptDialogOpening", "Runtime.consoleAPICalled", "Runtime.exceptionThrown")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") in ("error", "warning"))
    ]


def test_report_payloads_inert_in_chromium(runs, chromium, tmp_path):
    pa, pb = make_payload_runs(runs, tmp_path)
    html = build_report([RunResults.load(pb)], baseline=RunResults.load(pa), labels=[f"cand {IMG}"], n_resamples=500)
    # without the Content-Security-Policy only the escaping stands between the payloads and the browser
    start = html.index('<meta http-equiv="Content-Security-Policy"')
    html = html[:start] + html[html.index(">", start) + 1 :]
    page = tmp_path / "payload.html"
    page.write_text(html, encoding="utf-8")
    t = time.time()
    with opened_page(chromium, page, tmp_path / "profile") as (cdp, sid, js):
        n_scripts = js("document.querySelectorAll('script').length")
        n_handlers = js(
            "Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes)"
            ".some(a => a.name.startsWith('on'))).length"
        )
        text = js("document.body.innerText")
        shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session=sid)["data"]
        report_events = list(cdp.events)
        # control: the same payloads unescaped DO fire here, so silence above means they were inert
        control = tmp_path / "control.html"
        control.write_text(f"<!DOCTYPE html><html><body><p>x</p>{IMG}</body></html>", encoding="utf-8")
        cdp.events.clear()
        cdp.send("Page.navigate", {"url": control.resolve().as_uri()}, session=sid)
        cdp.wait_for("Page.javascriptDialogOpening", sid, timeout=10)
        control_events = list(cdp.events)
    assert any(e.get("method") == "Page.javascriptDialogOpening" for e in control_events), "control did not alert"
    bad = noisy_events(report_events)
    assert not bad, json.dumps(bad, indent=1)[:3000]
    assert n_scripts == 0 and n_handlers == 0
    assert SCRIPT in text and IMG in text and f"cand {IMG}" in text  # the payloads are visible text
    assert time.time() - t < 30
    (tmp_path / "payload.png").write_bytes(base64.b64decode(shot))
    dark, std = _nonblank(tmp_path / "payload.png")
    assert dark > 0.02 and std > 10
