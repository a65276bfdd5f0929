"""A throw-away JupyterLab server for the browser tests.

``LabServer`` serves a *copy* of the course notebooks (JupyterLab autosaves, and running a
lesson must never touch its source) on a free localhost port with a random token, with
everything that would reach the network switched off (news feed, update check, PyPI
extension manager) and its settings and workspaces in a temporary folder, so a student's
own JupyterLab configuration neither changes the test nor is changed by it. Kernels get the
quick profile and Numba's CUDA simulator, and matplotlib's inline backend, so that figures
reach the browser even where ``MPLBACKEND=Agg`` is exported (as ``.ci/run`` does).

``stop()`` shuts the server down through its API (which shuts the kernels down), then ends
its process group and any process it started that is still alive.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

# User settings of the JupyterLab under test: no news or update check (both would reach the
# network) and no toasts over the screenshots. Everything else is JupyterLab's default, as
# a student has it.
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_notebooks(source: Path, target: Path) -> Path:
    """Copy the notebook tree ``source`` to ``target`` (no checkpoints, no caches)."""
    shutil.copytree(source, target,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return target


def _write_user_settings(settings_dir: Path) -> None:
    for plugin, values in USER_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


class LabServer:
    """``jupyter lab`` on ``root_dir`` (start with ``start()``, end with ``stop()``).

    ``home`` is a scratch folder for the server's configuration, runtime files, settings
    and workspaces; ``log_path`` receives the server's and the kernels' console output.
    """

    def __init__(self, root_dir: Path, home: Path, log_path: Path, *,
                 env: dict[str, str] | None = None):
        self.root_dir = Path(root_dir)
        self.home = Path(home)
        self.log_path = Path(log_path)
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def lab_url(self) -> str:
        return f"{self.url}/lab?token={self.token}"

    def environment(self) -> dict[str, str]:
        """The server's (and so the kernels') environment."""
        env = dict(os.environ)
        for name in ("JUPYTER_TOKEN", "JUPYTER_PATH", "JUPYTERLAB_SETTINGS_DIR",
                     "JUPYTERLAB_WORKSPACES_DIR"):
            env.pop(name, None)
        env.update({
            "HPDL_PROFILE": "quick",
            "NUMBA_ENABLE_CUDASIM": "1",
            "MPLBACKEND": INLINE_BACKEND,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "IPYTHONDIR": str(self.home / "ipython"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # debugpy's frozen-modules warning
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        settings = self.home / "user-settings"
        as_root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        return [
            sys.executable, "-m", "jupyterlab", *as_root, "--no-browser", "--ip=127.0.0.1",
            f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: drive it by commands
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",  # the PyPI manager would query pypi.org
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
        ]

    def start(self, timeout: float = 120.0) -> LabServer:
        """Start the server and wait until ``/api/status`` answers (RuntimeError if not)."""
        for sub in ("config", "runtime", "ipython", "workspaces"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        _write_user_settings(self.home / "user-settings")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            self.command(), cwd=self.root_dir, env=self.environment(), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with status {self.process.returncode} "
                                   f"before answering; its log:\n{self.log_tail()}")
            if self._api_ok("/api/status"):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer {self.url}/api/status within "
                                   f"{timeout:.0f} s; its log:\n{self.log_tail()}")
            time.sleep(0.2)

    def _api_ok(self, path: str, method: str = "GET") -> bool:
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 6000) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """Shut the server and its kernels down; kill whatever is left of them."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if process.poll() is None:
            self._api_ok("/api/shutdown", method="POST")  # also shuts the kernels down
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        # Kernels run in sessions of their own, so the process group does not hold them.
        alive = [child for child in children if child.is_running()]
        for child in alive:
            child.terminate()
        _, alive = psutil.wait_procs(alive, timeout=5)
        for child in alive:
            child.kill()
        if self._log is not None:
            self._log.close()
            self._log = None
