"""docs/daemon.md's CI recipe, run as written: the GitHub Actions step that starts `anthropic-wif daemon` in the
background runs in bash with a runner's environment (RUNNER_TEMP, GITHUB_ENV, the OIDC request variables
pointing at a stand-in for the runner's token endpoint that hands out a fresh emulator JWT per request), then
the official Python SDK plays `agent.py` with the job's environment plus what the step wrote to GITHUB_ENV.
(The Kubernetes recipe is tested in test_deploy.py.)"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from proxy_harness import ROOT, binary, emulator_binary

STEP = "Keep Claude API credentials fresh for this job"


def ci_workflow() -> dict:
    text = (ROOT / "docs" / "daemon.md").read_text()
    start = text.index("### A CI job")
    section = text[start:text.index("\n### ", start + 5)]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    return yaml.safe_load(block)


def _jwt(emu_url: str) -> str:
    req = urllib.request.Request(emu_url + "/_emulator/jwt", data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["jwt"]


def fake_runner(emu_url: str, request_token: str) -> tuple[ThreadingHTTPServer, list[str]]:
    """The runner's OIDC endpoint: `GET …&audience=AUD` with the request token as bearer → {"count", "value"}."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            if self.headers.get("Authorization") != f"Bearer {request_token}":
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"count": 1, "value": _jwt(emu_url)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_the_ci_recipe_runs_as_written() -> None:
    job = ci_workflow()["jobs"]["agent"]
    assert job["permissions"]["id-token"] == "write"
    (step,) = [s for s in job["steps"] if s.get("name") == STEP]
    assert "--identity-source github-actions" in step["run"]
    last = job["steps"][-1]["run"]
    assert last.startswith("python agent.py"), last

    work = Path(tempfile.mkdtemp(prefix="wif-ci-recipe-"))
    bindir = work / "bin"
    bindir.mkdir()
    (bindir / "anthropic-wif").symlink_to(binary())
    emu = subprocess.Popen([emulator_binary(), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    server = None
    shell = None
    try:
        emu_url = json.loads(emu.stdout.readline())["base_url"]  # type: ignore[union-attr]
        server, seen = fake_runner(emu_url, "runner-request-token")
        (work / "runner-temp").mkdir()
        github_env = work / "github-env"
        github_env.touch()
        job_env = {k: str(v) for k, v in job["env"].items()}
        env = {
            **job_env,
            # The emulator stands in for api.anthropic.com.
            "ANTHROPIC_BASE_URL": emu_url,
            "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
            "HOME": str(work / "home"),
            "RUNNER_TEMP": str(work / "runner-temp"),
            "GITHUB_ENV": str(github_env),
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-request-token",
        }
        # The step, as the runner runs it: bash -e, in its own process group (so the test can end the
        # background daemon, as the runner does at the end of the job).
        shell = subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        out, err = shell.communicate(timeout=60)
        assert shell.returncode == 0, f"the step failed:\n{out}\n{err}"
        assert seen and "audience=https%3A%2F%2Fapi.anthropic.com" in seen[0], seen
        # The next step's environment: the job's, plus GITHUB_ENV's lines.
        added = dict(line.split("=", 1) for line in github_env.read_text().splitlines() if line)
        assert added == {"ANTHROPIC_PROFILE": "ci"}
        agent_env = {**env, **added}
        agent = ("import anthropic; m = anthropic.Anthropic().messages.create(model='claude-test', max_tokens=16, "
                 "messages=[{'role': 'user', 'content': 'hi'}]); print(m.type)")
        r = subprocess.run([sys.executable, "-c", agent], env=agent_env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "message", r.stderr
        log = (work / "runner-temp" / "anthropic-wif.log").read_text()
        assert "wrote a new access token" in log and "sk-ant-oat01-" not in log, log
    finally:
        if shell is not None:
            try:
                os.killpg(shell.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if server is not None:
            server.shutdown()
        emu.terminate()
        emu.wait(timeout=10)
