"""Run the measuring agent on another device over OpenSSH.

The agent (``runners/`` packed as a zip app) and the model files travel as one tar stream on the
ssh channel's stdin; the agent's JSON lines come back on stdout as they are produced, so a killed
run keeps everything measured so far. Safety: host keys are always verified
(``StrictHostKeyChecking=yes``), ``BatchMode=yes`` never prompts, the remote command line is built
with :func:`shlex.quote` on every argument, and local commands are argv lists (no local shell).
"""

from __future__ import annotations

import io
import json
import queue
import re
import shlex
import subprocess
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dass_edge.errors import DassEdgeError

__all__ = ["SshTarget", "agent_zip", "parse_host"]

_HOST_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
                      r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))(?::(?P<port>\d{1,5}))?$")
_RUNNERS = Path(__file__).parent / "runners"
# The zip app's entry point: a device without numpy still gets a one-line JSON error, not a traceback.
_AGENT_MAIN = """import json, sys
try:
    from dass_edge_agent.agent import main
except ImportError as e:
    msg = "the agent cannot start with %s: %s" % (sys.executable, e)
    sys.stdout.write(json.dumps({"type": "error", "kind": "backend", "message": msg}) + "\\n")
    sys.exit(3)
sys.exit(main(sys.argv[1:]))
"""


def parse_host(text: str) -> tuple[str | None, str, int]:
    """``user@host[:port]`` (IPv6 as ``user@[::1]:22``) -> ``(user, host, port)``.

    Raises:
        DassEdgeError: malformed, or a host starting with ``-`` (it would be read as an ssh option).
    """
    m = _HOST_RE.match(text.strip())
    host = (m.group("v6") or m.group("host")) if m else None
    if not m or not host or host.startswith("-"):
        raise DassEdgeError(f"--host {text!r} is not of the form user@host[:port]")
    port = int(m.group("port") or 22)
    if not 1 <= port <= 65535:
        raise DassEdgeError(f"--host {text!r}: port must be in 1..65535")
    return m.group("user"), host, port


def agent_zip() -> bytes:
    """The self-contained agent: ``runners/*.py`` as package ``dass_edge_agent`` plus ``__main__.py``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("__main__.py", _AGENT_MAIN)
        for py in sorted(_RUNNERS.glob("*.py")):
            z.writestr(f"dass_edge_agent/{py.name}", py.read_text())
    return buf.getvalue()


def _explain(stderr: str, target: SshTarget) -> str:
    """Turn ssh's stderr into one line that says what to do."""
    where = f"{target.user + '@' if target.user else ''}{target.host}:{target.port}"
    s = stderr.lower()
    if "remote host identification has changed" in s:
        return f"the host key of {where} has CHANGED since it was recorded in known_hosts; refusing to connect"
    if "host key verification failed" in s or "host key is known" in s:
        kh = target.known_hosts or "~/.ssh/known_hosts"
        return (f"the host key of {where} is not in {kh} (host keys are always verified); check its fingerprint, "
                f"then add it: ssh-keyscan -p {target.port} {target.host} >> {kh}")
    if "permission denied" in s or "too many authentication failures" in s:
        return f"authentication to {where} failed; pass --ssh-key or load your key into ssh-agent"
    if "connection refused" in s:
        return f"{where} refused the connection; is sshd running there and is the port right?"
    if "could not resolve hostname" in s or "name or service not known" in s:
        return f"cannot resolve host {target.host!r}"
    if "timed out" in s:
        return f"{where} did not answer within {target.connect_timeout} s (unreachable?)"
    if "no route to host" in s or "network is unreachable" in s:
        return f"{where} is unreachable"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"ssh to {where} failed: {last[-1] if last else 'no message'}"


@dataclass
class SshTarget:
    """A device reachable over OpenSSH.

    Args:
        host: host name or address; user and port as for ``ssh -l/-p``.
        identity_file: private key (``ssh -i``); default: ssh-agent / the user's config.
        known_hosts: known_hosts file to verify the host key against; default: the user's.
        config_file: ssh config (``ssh -F``); ``"none"`` ignores the user's config.
        connect_timeout: seconds to wait for the connection.
        idle_timeout: seconds without any agent output before a remote run is abandoned.
        python: the device's interpreter for the agent.
    """

    host: str
    user: str | None = None
    port: int = 22
    identity_file: str | None = None
    known_hosts: str | None = None
    config_file: str | None = None
    connect_timeout: int = 10
    idle_timeout: float = 600.0
    python: str = "python3"
    extra_options: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> SshTarget:
        user, host, port = parse_host(text)
        return cls(host=host, user=user, port=port, **kwargs)

    @property
    def label(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    # -- ssh plumbing -------------------------------------------------------------------------
    def ssh_argv(self, remote_argv: list[str]) -> list[str]:
        """The local argv: every option explicit, then ``--``, the host and one quoted command string."""
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={int(self.connect_timeout)}", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR", "-p", str(self.port)]
        if self.config_file:
            argv += ["-F", self.config_file]
        if self.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.identity_file:
            argv += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        if self.user:
            argv += ["-l", self.user]
        argv += list(self.extra_options)
        return argv + ["--", self.host, shlex.join(remote_argv)]

    def run(self, remote_argv: list[str], stdin: bytes | BinaryIO | None = None, timeout: float | None = None) -> str:
        """Run one remote command (``stdin``: bytes or an open file); return its stdout, or raise a one-line error."""
        timeout = timeout or self.connect_timeout + 60
        feed = {"input": stdin} if isinstance(stdin, bytes) or stdin is None else {"stdin": stdin}
        try:
            proc = subprocess.run(self.ssh_argv(remote_argv), capture_output=True, timeout=timeout, check=False,
                                  **feed)
        except FileNotFoundError:
            raise DassEdgeError("the ssh client is not installed here (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise DassEdgeError(f"{self.label}: {remote_argv[0]} did not finish within {timeout:.0f} s") from None
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        if proc.returncode == 255:
            raise DassEdgeError(_explain(err, self))
        if proc.returncode == 127:
            raise DassEdgeError(f"{self.label}: {remote_argv[0]!r} was not found on the device "
                                f"(set remote_python in the profile or pass --remote-python)")
        if proc.returncode != 0:
            detail = _agent_error(out) or (err.strip().splitlines() or ["no message"])[-1]
            raise DassEdgeError(f"{self.label}: {shlex.join(remote_argv[:2])} failed: {detail}")
        return out

    def check(self) -> str:
        """Connect and run the device's Python once: unreachable, auth and missing-Python errors come first."""
        return self.run([self.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).strip()

    # -- agent session ------------------------------------------------------------------------
    def model_name(self) -> str | None:
        """``/proc/device-tree/model`` of the device (for ``--device jetson``), or None."""
        try:
            out = self.run(["cat", "/proc/device-tree/model"])
        except DassEdgeError as e:
            if "failed" in str(e):
                return None
            raise
        return out.replace("\x00", "").strip() or None

    def open_workdir(self) -> str:
        path = self.run(["mktemp", "-d", "/tmp/dass-edge.XXXXXXXX"]).strip()
        if not re.fullmatch(r"/[A-Za-z0-9._/-]+", path):
            raise DassEdgeError(f"{self.label}: unexpected temporary directory {path!r}")
        return path

    def upload(self, workdir: str, files: Iterable[tuple[str, bytes | Path]]) -> None:
        """Send ``(relative name, bytes or local file)`` pairs as one tar stream into ``workdir``.

        The archive is spooled to a local temporary file (student models add up to ~100 MB), then fed
        to ``tar -x`` on the device.
        """
        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w") as tar:
                for name, content in files:
                    data = content.read_bytes() if isinstance(content, Path) else content
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                    tar.addfile(info, io.BytesIO(data))
            spool.seek(0)
            self.run(["tar", "-xf", "-", "-C", workdir], stdin=spool, timeout=self.connect_timeout + 900)

    def cleanup(self, workdir: str) -> None:
        try:
            self.run(["rm", "-rf", "--", workdir], timeout=self.connect_timeout + 30)
        except DassEdgeError:
            pass  # best effort: the directory is under /tmp

    def stream_agent(self, workdir: str, on_message: Callable[[dict], None]) -> None:
        """Run ``agent.pyz run job.json`` and pass each JSON message to ``on_message`` as it arrives."""
        argv = self.ssh_argv([self.python, f"{workdir}/agent.pyz", "run", f"{workdir}/job.json"])
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines: queue.Queue[bytes | None] = queue.Queue()
        err_chunks: list[bytes] = []

        def pump_out() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump_out, daemon=True).start()
        threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True).start()
        error: dict | None = None
        try:
            while True:
                try:
                    line = lines.get(timeout=self.idle_timeout)
                except queue.Empty:
                    raise DassEdgeError(f"{self.label}: the agent printed nothing for {self.idle_timeout:.0f} s; "
                                        "gave up (is the device overloaded or hung?)") from None
                if line is None:
                    break
                for msg in _messages(line.decode(errors="replace")):
                    if msg.get("type") == "error":
                        error = msg
                    else:
                        on_message(msg)
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = b"".join(err_chunks).decode(errors="replace")
        if rc == 255:
            raise DassEdgeError(_explain(stderr, self))
        if rc == 127:
            raise DassEdgeError(f"{self.label}: {self.python!r} was not found on the device "
                                "(set remote_python in the profile or pass --remote-python)")
        if error is not None or rc != 0:
            detail = error["message"] if error else (stderr.strip().splitlines() or [f"exit code {rc}"])[-1]
            raise DassEdgeError(f"{self.label}: the agent failed: {detail}")

    def run_job(self, settings: dict, items: list[dict], emit: Callable[[dict], None], seed: int = 0,
                on_info: Callable[[dict], None] | None = None) -> dict:
        """Measure ``items`` (``id``, local ``path``, ``input_shape``, ``rounds``) on the device.

        Uploads the agent, the job and the model files, runs the agent (it checks its backend and
        reports the device first; ``on_info`` may veto then), streams the records to ``emit`` and
        removes the remote folder. Returns the device information.
        """
        workdir = self.open_workdir()
        try:
            job = {"settings": settings, "seed": seed,
                   "items": [{"id": it["id"], "artifact": f"models/{i:04d}_{Path(it['path']).name}",
                              "input_shape": list(it["input_shape"]) if it.get("input_shape") else None,
                              "rounds": list(it["rounds"]), "sessions": it.get("sessions")}
                             for i, it in enumerate(items)]}
            files: list[tuple[str, bytes | Path]] = [("agent.pyz", agent_zip()), ("job.json", json.dumps(job).encode())]
            files += [(j["artifact"], Path(it["path"])) for j, it in zip(job["items"], items)]
            self.upload(workdir, files)
            info: dict = {}

            def on_message(msg: dict) -> None:
                if msg.get("type") == "info":
                    info.update(msg["device"])
                    if on_info is not None:
                        on_info(msg["device"])  # may raise: the run is then stopped before it measures much
                elif msg.get("type") == "record":
                    emit(msg)

            self.stream_agent(workdir, on_message)
            if not info:
                raise DassEdgeError(f"{self.label}: the agent printed no device information")
            return info
        finally:
            self.cleanup(workdir)


def _messages(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(msg, dict):
                out.append(msg)
    return out


def _agent_error(text: str) -> str | None:
    for msg in _messages(text):
        if msg.get("type") == "error":
            return str(msg.get("message"))
    return None
