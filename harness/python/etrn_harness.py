"""Drive ``etrn-harness serve`` from Python tests: standard library only.

``SmartHost`` starts the fake smart host on free loopback ports, reads its ready line, and talks
to its HTTP API; ``smart_host`` is a pytest fixture around it (pytest is only needed for the
fixture). Use it in a test suite with::

    # conftest.py
    pytest_plugins = ["etrn_harness"]          # harness/python on sys.path or PYTHONPATH

    # test_client.py
    import smtplib

    def test_client_sends_etrn(smart_host):
        with smtplib.SMTP(smart_host.smtp_host, smart_host.smtp_port, timeout=10) as smtp:
            smtp.ehlo("client.example")
            smtp.docmd("ETRN", "a.example")
        etrns = smart_host.wait_for_etrn("a.example", timeout=5)
        assert etrns[-1]["reply"] == 250

The binary is ``$ETRN_HARNESS_BIN`` if set, else ``etrn-harness`` on ``PATH``.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["SmartHost", "HarnessError", "smart_host", "to_toml"]

# How long start-up and shutdown may take before the helper gives up.
DEFAULT_DEADLINE = 10.0


class HarnessError(Exception):
    """The harness refused a request (the API's ``error`` and ``fix``) or did not start."""

    def __init__(self, message, status=None, fix=None):
        super().__init__(message if fix is None else f"{message} ({fix})")
        self.status = status
        self.fix = fix


def binary():
    """The etrn-harness binary: ``$ETRN_HARNESS_BIN``, else ``etrn-harness`` on ``PATH``."""
    named = os.environ.get("ETRN_HARNESS_BIN")
    if named:
        # Checked here, so that a wrong setting is said as such, not as a bare FileNotFoundError.
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise HarnessError(
                f"ETRN_HARNESS_BIN is {named!r}, which is no executable file: set it to the "
                "etrn-harness binary (e.g. target/debug/etrn-harness) or unset it to use "
                "etrn-harness on PATH"
            )
        return named
    path = shutil.which("etrn-harness")
    if not path:
        raise HarnessError(
            "etrn-harness not found: set ETRN_HARNESS_BIN or put etrn-harness on PATH "
            "(cargo install --path .)"
        )
    return path


class SmartHost:
    """A running ``etrn-harness serve`` on 127.0.0.1, port 0 for SMTP and for the API.

    ``args`` are more ``serve`` options (``["--profile", "postfix"]``; the helper sets
    ``--listen``, ``--api``, ``--events`` and ``--record`` itself, and ``--retain all`` unless
    ``args`` give ``--retain``: a test reads every session it caused). Start it with
    ``start()`` or ``with SmartHost() as host:``; ``stop()`` ends it with SIGTERM and returns the
    recording.
    """

    def __init__(self, args=(), deadline=DEFAULT_DEADLINE):
        self.args = list(args)
        self.deadline = deadline
        self.process = None
        self.ready = None
        self.stopped = None
        self.smtp_host = self.smtp_port = self.api_url = None
        self._lines = queue.Queue()
        self._folder = None
        self._reader = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self):
        """Starts serve and waits (at most ``deadline`` seconds) for its ready line."""
        self._folder = tempfile.TemporaryDirectory(prefix="etrn-harness-")
        self._record = os.path.join(self._folder.name, "recording.jsonl")
        self._stderr = open(os.path.join(self._folder.name, "stderr.log"), "wb")
        command = [
            binary(), "serve",
            "--listen", "127.0.0.1:0",
            "--api", "127.0.0.1:0",
            "--events", "jsonl",
            "--record", self._record,
            *([] if any(a == "--retain" or a.startswith("--retain=") for a in self.args)
              else ["--retain", "all"]),
            *self.args,
        ]
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
            )
        except OSError as e:
            # Gone or changed since binary() looked: still said with the path and the setting.
            self._stderr.close()
            self._folder.cleanup()
            raise HarnessError(
                f"cannot run {command[0]!r} ({e.strerror}): set ETRN_HARNESS_BIN to the "
                "etrn-harness binary or put etrn-harness on PATH"
            ) from e
        # stdout is read to its end by a thread of its own: serve is never held by a full pipe,
        # and every line (the live events, the stop line) is kept.
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        try:
            first = self._lines.get(timeout=self.deadline)
        except queue.Empty:
            self._kill()
            raise HarnessError(f"serve printed no ready line within {self.deadline} s")
        if first is None:
            code = self.process.wait(timeout=self.deadline)
            raise HarnessError(f"serve exited with status {code}: {self.stderr().strip()}")
        self.ready = json.loads(first)
        if self.ready.get("event") != "ready":
            self._kill()
            raise HarnessError(f"serve's first line is not the ready object: {first!r}")
        host, port = self.ready["smtp"].rsplit(":", 1)
        self.smtp_host, self.smtp_port = host.strip("[]"), int(port)
        self.api_url = self.ready["api_url"]
        return self

    def stop(self):
        """SIGTERM, then the recording: the ``--record`` stream, one dict per line (sessions
        opened and closed, every event), complete once serve has exited. ``self.stopped`` is the
        stop line (``{"event": "stopped", "sessions": N, "etrn": N, ...}``)."""
        if self.process is None:
            return []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=self.deadline)
        except subprocess.TimeoutExpired:
            self._kill()
            raise HarnessError(f"serve did not stop within {self.deadline} s of SIGTERM")
        self._reader.join(timeout=self.deadline)
        self.events = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            self.events.append(json.loads(line))
            if self.events[-1].get("event") == "stopped":
                self.stopped = self.events[-1]
        self._stderr.close()
        if code != 0:
            raise HarnessError(f"serve exited with status {code}: {self.stderr().strip()}")
        with open(self._record, encoding="utf-8") as stream:
            recording = [json.loads(line) for line in stream if line.strip()]
        self.process = None
        self._folder.cleanup()
        return recording

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def stderr(self):
        """What serve logged so far."""
        with open(os.path.join(self._folder.name, "stderr.log"), encoding="utf-8",
                  errors="replace") as log:
            return log.read()

    def _read_stdout(self):
        for raw in self.process.stdout:
            self._lines.put(raw.decode("utf-8", "replace"))
        self._lines.put(None)

    def _kill(self):
        self.process.kill()
        self.process.wait()

    # -- the API -----------------------------------------------------------------------------

    def wait_for_etrn(self, domain, timeout=10):
        """Waits until an ETRN for ``domain`` has arrived (compared as domains: case, trailing
        dot and IDNA form do not matter); returns every ETRN of the sessions held (dicts with ``domain``,
        ``reply``, ``session``...). ``TimeoutError`` when none came within ``timeout`` s."""
        query = urllib.parse.urlencode({"wait": domain, "timeout": timeout})
        return self._request("GET", f"/etrn?{query}", timeout=timeout)

    def recording(self):
        """The recording so far: ``{"sessions": [...], ...}`` as ``GET /recording`` gives it."""
        return self._request("GET", "/recording")

    def reset(self):
        """Forgets what was recorded (``POST /reset``)."""
        return self._request("POST", "/reset")

    def script(self, script):
        """Answers from the next connection on as ``script`` says: TOML text like a scenario's
        ``[smarthost]`` table, or a dict of the same (``{"etrn_default": ["458 busy"]}``).
        ``HarnessError`` (status 422, with the line and column) when it is invalid."""
        text = script if isinstance(script, str) else to_toml(script)
        return self._request("PUT", "/script", body=text.encode("utf-8"),
                             content_type="application/toml")

    def _request(self, method, path, body=None, content_type=None, timeout=0):
        request = urllib.request.Request(self.api_url + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout + self.deadline) as response:
                text = response.read()
        except urllib.error.HTTPError as e:
            try:
                error = json.loads(e.read())
            except ValueError:
                error = {"error": str(e)}
            if e.code == 408:
                raise TimeoutError(error.get("error")) from None
            raise HarnessError(error.get("error"), e.code, error.get("fix")) from None
        return json.loads(text) if text else None


def to_toml(table):
    """A dict as TOML: keys at the top level, nested dicts as inline tables."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in table.items())


def _key(key):
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string (the same escapes).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


try:
    import pytest
except ImportError:  # the module works without pytest; only the fixture needs it
    pytest = None

if pytest is not None:

    @pytest.fixture
    def smart_host():
        """A running ``etrn-harness serve`` (rfc1985 profile), stopped after the test."""
        host = SmartHost().start()
        yield host
        if host.process is not None:
            host.stop()
