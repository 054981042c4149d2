"""The official SDKs, with no code of ours loaded, through rotations kept by `anthropic-wif daemon` and `exec`
(issue 13, items 1, 2 and 6).

One emulator minting 60-second tokens (the shortest lifetime a federation rule allows; the daemon replaces
each 45 s before expiry, every 15 s, 15 s before Node refuses a token) and an identity token file it refills
after every exchange, like a platform rotating a projected token. Beside one daemon, for at least three
rotations, all at once:

- a long-lived Python SDK client and a long-lived Node SDK client, each one process with ONLY
  `ANTHROPIC_PROFILE` and `ANTHROPIC_CONFIG_DIR` set (plus PATH and an empty HOME), making a request
  every 0.7 s: not one may fail or meet a 401;
- `anthropic-wif exec -- python client.py`: the same long-lived Python client as exec's child;
- `anthropic-wif token` every 2 s with the daemon's configuration.

Then: every API request the emulator saw was answered 200, each client used every token the daemon wrote,
and the emulator saw one exchange per rotation, all by the daemon or exec's keeper (they share the cache and
its lock): the `token` calls exchanged nothing.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from proxy_harness import ORG, ROOT, RULE, binary, emulator_binary

LIFETIME = 60
ROTATIONS = 3

PY_CLIENT = r"""
import json, os, sys, time
import anthropic
stop = sys.argv[1]
client = anthropic.Anthropic()  # configured by ANTHROPIC_PROFILE / ANTHROPIC_CONFIG_DIR alone
ok, errors = 0, []
while not os.path.exists(stop):
    try:
        m = client.messages.create(model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        assert m.type == "message"
        ok += 1
    except Exception as e:  # every failure is reported, none retried by hand
        errors.append(f"{type(e).__name__}: {e}")
    time.sleep(0.7)
print(json.dumps({"ok": ok, "errors": errors}))
"""

NODE_CLIENT = r"""
const fs = require('node:fs');
const Anthropic = require('@anthropic-ai/sdk').default;
const stop = process.argv[1]; // node -e SCRIPT STOPFILE
const client = new Anthropic(); // configured by ANTHROPIC_PROFILE / ANTHROPIC_CONFIG_DIR alone
(async () => {
  let ok = 0;
  const errors = [];
  while (!fs.existsSync(stop)) {
    try {
      const m = await client.messages.create({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
      if (m.type !== 'message') throw new Error(`unexpected ${m.type}`);
      ok += 1;
    } catch (e) {
      errors.push(`${e.constructor.name}: ${e.message}`);
    }
    await new Promise((r) => setTimeout(r, 700));
  }
  console.log(JSON.stringify({ ok, errors }));
})();
"""


def _control(base: str, path: str) -> object:
    import urllib.request

    with urllib.request.urlopen(base + path) as r:
        return json.load(r)


def _node_app() -> str:
    app = os.environ.get("ANTHROPIC_WIF_NODE_APP") or str(ROOT)
    if not (Path(app) / "node_modules" / "@anthropic-ai" / "sdk").exists():
        pytest.fail(f"no @anthropic-ai/sdk under {app}: run `npm ci` (scripts/test.sh sets ANTHROPIC_WIF_NODE_APP)")
    return app


def test_sdks_through_rotations_kept_by_the_daemon_and_exec() -> None:
    node_app = _node_app()
    work = Path(tempfile.mkdtemp(prefix="wif-daemon-sdks-"))
    jwt = work / "identity-token"
    config = work / "config"
    stop = work / "stop"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work), "XDG_CACHE_HOME": str(work / "cache"),
           "ANTHROPIC_CONFIG_DIR": str(config)}
    emu = subprocess.Popen([emulator_binary(), "--listen", "127.0.0.1:0", "--token-lifetime", str(LIFETIME),
                            "--identity-token-file", str(jwt)], stdout=subprocess.PIPE, text=True, env=env)
    procs: list[subprocess.Popen] = []
    try:
        base = json.loads(emu.stdout.readline())["base_url"]  # type: ignore[union-attr]
        fed = ["--base-url", base, "--federation-rule-id", RULE, "--organization-id", ORG,
               "--identity-token-file", str(jwt)]
        ready = work / "ready"
        daemon = subprocess.Popen([binary(), "daemon", "--target-profile", "app", "--write-profile",
                                   "--ready-file", str(ready), *fed],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(daemon)
        deadline = time.time() + 30
        while not ready.exists():
            assert daemon.poll() is None, daemon.stderr.read()  # type: ignore[union-attr]
            assert time.time() < deadline, "the daemon never became ready"
            time.sleep(0.05)

        # The SDKs' clients: nothing but the profile's name and directory (and PATH, an empty HOME).
        def sdk_env(name: str) -> dict:
            home = work / f"home-{name}"
            home.mkdir()
            return {"PATH": env["PATH"], "HOME": str(home), "ANTHROPIC_PROFILE": "app", "ANTHROPIC_CONFIG_DIR": str(config)}

        py = subprocess.Popen([sys.executable, "-c", PY_CLIENT, str(stop)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=sdk_env("python"))
        node = subprocess.Popen(["node", "-e", NODE_CLIENT, str(stop)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=sdk_env("node"), cwd=node_app)
        # exec's child: the same Python client, given its private profile by exec.
        under_exec = subprocess.Popen([binary(), "exec", *fed, "--", sys.executable, "-c", PY_CLIENT, str(stop)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs += [py, node, under_exec]

        # Watch the daemon's file for ROTATIONS rotations, with `anthropic-wif token` beside it.
        credentials = config / "credentials" / "app.json"
        written: list[tuple[str, int, float]] = []
        token_calls = []
        deadline = time.time() + LIFETIME * 1.5 + 10
        next_token_call = 0.0
        while len(written) < ROTATIONS + 1:
            assert time.time() < deadline, f"only {len(written)} tokens written"
            for p in (daemon, py, node, under_exec):
                assert p.poll() is None, f"{p.args[:2]} exited early: {p.stderr.read()}"  # type: ignore[union-attr]
            try:
                c = json.loads(credentials.read_text())
            except (OSError, ValueError):
                c = None
            if c and (not written or written[-1][0] != c["access_token"]):
                written.append((c["access_token"], c["expires_at"], time.time()))
            if time.time() >= next_token_call:
                t = subprocess.run([binary(), "token", *fed], capture_output=True, text=True, env=env, timeout=30)
                assert t.returncode == 0, t.stderr
                token_calls.append(json.loads(t.stdout)["access_token"])
                next_token_call = time.time() + 2
            time.sleep(0.2)
        time.sleep(2)  # a few requests with the last token
        stop.touch()
        results = {}
        for name, p in (("python", py), ("node", node), ("exec", under_exec)):
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, f"{name}: exit {p.returncode}\n{err}"
            results[name] = json.loads(out.strip().splitlines()[-1])
        daemon.send_signal(signal.SIGTERM)
        _, daemon_log = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, daemon_log

        # Not one failed request, in any client, through every rotation.
        for name, r in results.items():
            assert r["errors"] == [], f"{name}: {r['errors']}"
            assert r["ok"] >= 20, f"{name}: only {r['ok']} requests"
        api = _control(base, "/_emulator/api-requests")
        assert [q for q in api if q["status"] != 200] == [], "every API request was answered 200 (no 401)"
        # Each reader used every token the daemon wrote: the rotations reached them while they ran.
        daemon_tokens = [t for t, _, _ in written]
        for ua_prefix in ("Anthropic/Python", "Anthropic/JS"):
            used = {q["headers"]["authorization"].removeprefix("Bearer ") for q in api
                    if q["headers"].get("user-agent", "").startswith(ua_prefix)}
            missing = [i for i, t in enumerate(daemon_tokens) if t not in used]
            assert missing == [], f"{ua_prefix} never used tokens {missing} of {len(daemon_tokens)}"
        # Each replaced ahead of the old one's expiry: 45 s before, well outside Node's 30 s.
        for (_, old_exp, _), (_, _, appeared) in zip(written, written[1:]):
            assert old_exp - appeared > 40, f"replaced {old_exp - appeared:.0f} s before expiry"
        # One exchange per rotation, made by the daemon or exec's keeper (one cache, one lock between them);
        # the `token` calls beside them (User-Agent "(cli)") never exchanged and printed their tokens.
        exchanges = _control(base, "/_emulator/requests")
        agents = [r["headers"]["user-agent"].rsplit("(", 1)[-1].rstrip(")") for r in exchanges]
        assert set(agents) <= {"daemon", "exec"}, agents
        minted = daemon_tokens + [t for t in token_calls if t not in daemon_tokens]
        assert len(exchanges) == len(set(minted)), (len(exchanges), len(daemon_tokens))
        assert len(token_calls) >= 15 and set(token_calls) <= set(minted)
        assert "sk-ant-oat01-" not in daemon_log and "eyJ" not in daemon_log
        print(f"{len(daemon_tokens)} tokens ({len(daemon_tokens) - 1} rotations), {len(exchanges)} exchanges "
              f"({', '.join(agents)}), {len(token_calls)} token calls, requests: "
              + ", ".join(f"{n} {r['ok']}" for n, r in results.items()) + f", {len(api)} answered 200")
    finally:
        stop.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        emu.terminate()
        emu.wait(timeout=10)
