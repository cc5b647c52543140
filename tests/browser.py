"""Open a page in a real headless Chromium over the DevTools protocol (--remote-debugging-pipe).

No port is opened: Chromium reads commands on fd 3 and writes replies and events on fd 4, NUL-separated
JSON. The page's console errors, uncaught exceptions, network requests, image sizes, a full-page
screenshot and the DOM are collected. Chromium runs headless, with --no-sandbox (tests run as root), in
its own session and profile directory; every process it started is gone when `open_page` returns.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({src: i.currentSrc.slice(0, 40),
    complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})))"""


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    screenshot: Path
    dom: Path
    images: list[dict[str, Any]]
    console_errors: list[str]
    requests: list[str]
    killed_pids: list[int] = field(default_factory=list)   # still running after the grace period: killed
    alive_pids: list[int] = field(default_factory=list)    # still running after that: must be empty


class DevTools:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def _profile_pids(profile: str) -> list[int]:
    """Live processes whose command line names our private profile directory (crashpad setsid()s)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if profile.encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def open_page(html: Path, out_dir: Path, width: int = 1280, height: int = 900) -> PageReport:
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium is not installed: run scripts/install-deps.sh --test (Debian package chromium)")
    profile = tempfile.mkdtemp(prefix="lab-report-chromium-")
    cmd_r, cmd_w = os.pipe()
    res_r, res_w = os.pipe()
    # move the child's ends out of the way of fds 3 and 4 before dup2 in the child
    child_in, child_out = fcntl_dup(cmd_r), fcntl_dup(res_w)

    def child_fds() -> None:
        os.dup2(child_in, 3)
        os.dup2(child_out, 4)

    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-breakpad", "--disable-crash-reporter", "--mute-audio",
            "--hide-scrollbars", f"--window-size={width},{height}", "about:blank"]
    # close_fds=False: the fds dup2()ed onto 3 and 4 in the child must survive; Python's own fds are
    # close-on-exec, so nothing else leaks into Chromium
    proc = subprocess.Popen(argv, close_fds=False, preexec_fn=child_fds, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for fd in (cmd_r, res_w, child_in, child_out):
        os.close(fd)
    tools = DevTools(cmd_w, res_r)
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.send(f"{domain}.enable", session=session)
        tools.send("Page.navigate", {"url": html.resolve().as_uri()}, session=session)
        tools.wait_event("Page.loadEventFired", timeout=60)
        images = json.loads(tools.send("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True},
                                       session=session)["result"]["value"])
        metrics = tools.send("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = tools.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}},
            session=session, timeout=60)
        screenshot = out_dir / "screenshot.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        dom_html = tools.send("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                   "returnByValue": True}, session=session)["result"]["value"]
        dom = out_dir / "dom.html"
        dom.write_text(dom_html, encoding="utf-8")
        try:
            tools.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError):
            pass
    finally:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        os.close(cmd_w)
        os.close(res_r)
    killed = _reap(proc.pid, profile)
    alive = sorted(set(_session_pids(proc.pid) + _profile_pids(profile)))
    shutil.rmtree(profile, ignore_errors=True)
    errors, requests = [], []
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed":
            errors.append(f"loading failed: {params.get('errorText')}")
    return PageReport(screenshot, dom, images, errors, requests, killed_pids=killed, alive_pids=alive)


def _reap(sid: int, profile: str, grace: float = 5.0) -> list[int]:
    """Give Chromium's helpers `grace` seconds to exit after the browser closed, then kill what is left.

    Only processes of the session we started, or naming our private profile directory, by pid.
    """
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _session_pids(sid) and not _profile_pids(profile):
            return []
        time.sleep(0.1)
    left = sorted(set(_session_pids(sid) + _profile_pids(profile)))
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)
    return left


def fcntl_dup(fd: int) -> int:
    """A close-on-exec duplicate of fd numbered 10 or higher (dup2 onto 3 and 4 cannot clobber it)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
