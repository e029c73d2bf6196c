"""Screenshot the explanation explorer running live in JupyterLab, rendered by headless Chromium.

Steps, all in a temporary folder that is removed at the end:

1. write a small notebook that builds the explorer of notebook 07 on the
   synthetic platform (Chinese and English titles). It picks a user whose
   top recommendation has a Chinese title and selects that item, so its
   LIME and SHAP figure shows, then displays the panel;
2. start JupyterLab on 127.0.0.1 (random token, no browser, the app exposed
   to the page's JavaScript) and headless Chromium with a DevTools port on
   127.0.0.1;
3. through the DevTools protocol: open the notebook, hide the side bar, run
   all cells in the page's kernel, wait until the widget has drawn the
   explanation image, and capture the page;
4. stop both processes and write the image to
   ``figures/07_explanations_lime_shap_explorer.png``.

Chromium is Debian's ``chromium`` package (``apt-get install -y chromium``);
nothing is downloaded. The DevTools client is tornado's websocket client,
which JupyterLab already installs.

Usage::

    .venv/bin/python benchmarks/screenshot_explorer.py [--chromium /usr/bin/chromium] [--port 8899] [--timeout 900]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

from vidrec_lab.config import figures_dir
from vidrec_lab.io import atomic_write_bytes

NAME = "07_explanations_lime_shap_explorer.png"
WINDOW = (1400, 1900)  # width, height in CSS pixels

SETUP_MODULE = '''
"""Build the explorer panel shown in the screenshot (written by benchmarks/screenshot_explorer.py)."""

import torch

from vidrec_lab.datasets import make_synthetic
from vidrec_lab.explain import build_fused_recommender
from vidrec_lab.explain.lime_text import has_cjk
from vidrec_lab.features.text import TextEncoder
from vidrec_lab.splits import leave_last_out
from vidrec_lab.viz import set_style
from vidrec_lab.widgets import ExplorerPanel, ExplorerState


def build_panel(seed: int = 42):
    torch.set_num_threads(2)
    set_style()
    dataset = make_synthetic(n_users=200, n_items=300, seed=seed)
    split = leave_last_out(dataset.interactions, items=dataset.items)
    setup = build_fused_recommender(dataset.items, split.train, encoder=TextEncoder(max_length=64), max_epochs=20, seed=seed)
    state = ExplorerState(setup.model, dataset.items, split.history("test"), k=8, lime_samples=300, seed=seed)
    panel = ExplorerPanel(state)
    for user in state.users:
        panel.user_box.value = user
        if has_cjk(state.recommendations()["title"].iloc[0]):
            break
    panel.item_picker.value = state.recommendations()["item_id"].iloc[0]
    return panel
'''

# Widget-rendered explanation image inside a notebook output: the sign that the panel is drawn.
WIDGET_READY_JS = (
    "!!document.querySelector('.jp-OutputArea .widget-vbox img[src^=\"blob:\"], .jp-OutputArea .widget-vbox img[src^=\"data:\"]')"
)


# The notebook panel in the main area. Headless Chromium has no focus, so shell.currentWidget stays null.
_PANEL_JS = "Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.sessionContext)"
KERNEL_IDLE_JS = f"(() => {{ const panel = {_PANEL_JS}; return panel?.sessionContext?.session?.kernel?.status === 'idle'; }})()"
# Activating the panel makes it the notebook tracker's current widget, which the command runs on.
# The command's promise is not awaited: it resolves only when every cell has run.
RUN_ALL_JS = (
    f"(() => {{ const panel = {_PANEL_JS}; window.jupyterapp.shell.activateById(panel.id); "
    "void window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; })()"
)
RUN_STARTED_JS = "Array.from(document.querySelectorAll('.jp-InputPrompt')).some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"port {port} on 127.0.0.1 is in use; pass another with --port")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _opener():
    # No proxy: both servers listen on loopback only.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_for_json(url: str, process: subprocess.Popen, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before responding at {url}")
        try:
            with _opener().open(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            time.sleep(1.0)
    raise TimeoutError(f"{what} did not respond at {url} within {timeout:.0f} s")


def _write_notebook(folder: Path) -> Path:
    (folder / "explorer_setup.py").write_text(textwrap.dedent(SETUP_MODULE), encoding="utf-8")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# 07 · Explorer: recommendations, LIME words and SHAP modalities"),
        # Training logs and progress bars stay in the first cell's captured output, so only the panel shows.
        nbformat.v4.new_code_cell("%%capture\nfrom explorer_setup import build_panel\n\npanel = build_panel()"),
        nbformat.v4.new_code_cell("panel"),
    ]
    path = folder / "explorer.ipynb"
    nbformat.write(notebook, path)
    return path


class _DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.counter = 0

    async def call(self, method: str, **params):
        self.counter += 1
        await self.connection.write_message(json.dumps({"id": self.counter, "method": method, "params": params}))
        while True:
            message = await self.connection.read_message()
            if message is None:
                raise ConnectionError(f"DevTools connection closed while waiting for {method}")
            reply = json.loads(message)
            if reply.get("id") == self.counter:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
                return reply["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script {expression!r} failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str) -> float:
        started = time.monotonic()
        while not await self.evaluate(expression):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            await asyncio.sleep(2.0)
        return time.monotonic() - started


async def _capture(websocket_url: str, page_url: str, timeout: float) -> bytes:
    from tornado.websocket import websocket_connect

    connection = await websocket_connect(websocket_url, max_message_size=1 << 28)
    try:
        tools = _DevTools(connection)
        await tools.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1, mobile=False)
        await tools.call("Page.navigate", url=page_url)
        await tools.wait_for("!!(window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell'))", 120, "JupyterLab to open the notebook")
        # Run the cells only once the kernel is idle: a run requested while it still starts is dropped.
        await tools.wait_for(KERNEL_IDLE_JS, 180, "the notebook's kernel to start")
        await tools.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area').then(() => true)")
        sys.stderr.write("running the notebook in the page's kernel ...\n")
        await tools.evaluate(RUN_ALL_JS)
        await tools.wait_for(RUN_STARTED_JS, 60, "the first cell to start running")
        seconds = await tools.wait_for(WIDGET_READY_JS, timeout, "the explorer widget to draw its explanation")
        sys.stderr.write(f"widget drawn after {seconds:.0f} s\n")
        await asyncio.sleep(3.0)  # let the image and fonts settle
        shot = await tools.call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])
    finally:
        connection.close()


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--port", type=int, default=8899, help="JupyterLab port on 127.0.0.1")
    parser.add_argument("--timeout", type=int, default=900, help="seconds to wait for the notebook to run and draw the widget")
    args = parser.parse_args(argv)
    # Turn SIGTERM (from `timeout`, say) into SystemExit so the finally block stops JupyterLab and Chromium.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not Path(args.chromium).is_file():
        raise FileNotFoundError(f"Chromium not found at {args.chromium}; install it with `apt-get install -y chromium`")
    _check_port_free(args.port)
    jupyter = Path(sys.executable).with_name("jupyter")
    token = secrets.token_hex(16)

    with tempfile.TemporaryDirectory(prefix="vidrec_explorer_") as tmp:
        folder = Path(tmp)
        _write_notebook(folder)
        settings = folder / "lab-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        # Without this setting JupyterLab shows a pop-up about fetching news, which would cover the panel.
        (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}', encoding="utf-8")
        env = {
            **os.environ,
            "VIDREC_LAB_HOME": str(folder / "home"),
            "PYTHONPATH": str(folder),
            "JUPYTERLAB_SETTINGS_DIR": str(folder / "lab-settings"),
        }
        lab_command = [
            str(jupyter), "lab", "--no-browser", "--ip", "127.0.0.1", f"--port={args.port}", f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={folder}", "--LabApp.expose_app_in_browser=True",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lab_command.append("--allow-root")  # JupyterLab will not start as root without it (containers)
        devtools_port = _free_port()
        chrome_command = [
            args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-proxy-server",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={devtools_port}", f"--user-data-dir={folder / 'chromium-profile'}", "about:blank",
        ]
        lab = chrome = None
        log_path = folder / "jupyterlab.log"
        try:
            with log_path.open("wb") as log:
                lab = subprocess.Popen(lab_command, cwd=str(folder), env=env, stdout=log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{args.port}"
            try:
                _wait_for_json(f"{base}/api/status?token={token}", lab, 120, "JupyterLab")
            except (TimeoutError, RuntimeError) as exc:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"{exc}; JupyterLab log ends with:\n{tail}") from exc
            chrome = subprocess.Popen(chrome_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            targets = _wait_for_json(f"http://127.0.0.1:{devtools_port}/json/list", chrome, 60, "Chromium")
            pages = [target for target in targets if target.get("type") == "page"]
            if not pages:
                raise RuntimeError(f"Chromium lists no page target: {targets}")
            png = asyncio.run(_capture(pages[0]["webSocketDebuggerUrl"], f"{base}/lab/tree/explorer.ipynb?token={token}", args.timeout))
        finally:
            _stop(chrome)
            _stop(lab)
    target = atomic_write_bytes(figures_dir() / NAME, png)
    sys.stdout.write(f"wrote {target}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
