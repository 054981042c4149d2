"""README.md's "Try it locally" runs as written: the shell blocks in bash, the Python block in this
interpreter (the installed module and the official SDK), the JavaScript block in node from an app
that has anthropic-wif and @anthropic-ai/sdk installed ($ANTHROPIC_WIF_NODE_APP, which scripts/test.sh
sets; else this checkout, which needs `npm install` there first)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy_harness import ROOT, binary, emulator_binary

EMULATOR_REPLY = "This is the anthropic-wif emulator"


def section_blocks() -> list[tuple[str, str]]:
    """The fenced code blocks of the "Try it locally" section, as (language, code)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("### Try it locally")
    end = min(i for i in (text.find("\n## ", start), text.find("\n### ", start + 5)) if i != -1)
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end], re.S)


@pytest.fixture()
def checkout_like(tmp_path: Path) -> Path:
    """A directory whose target/debug holds the binaries under test, for the block's `$PWD/target/debug`."""
    d = tmp_path / "checkout" / "target" / "debug"
    d.mkdir(parents=True)
    (d / "anthropic-wif").symlink_to(binary())
    (d / "wif-emulator").symlink_to(emulator_binary())
    return tmp_path / "checkout"


def test_try_it_locally_snippets_run_as_written(checkout_like: Path, tmp_path: Path) -> None:
    blocks = section_blocks()
    langs = [lang for lang, _ in blocks]
    assert langs == ["sh", "sh", "sh", "python", "js"], langs
    (_, start), (_, example), (_, commands), (_, python), (_, js) = blocks
    assert "wif-emulator --print-env" in start

    # Terminal 1, verbatim: serves until stopped, prints the exports.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    emu = subprocess.Popen(["bash", "-c", start], cwd=checkout_like, env=env, stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        printed = []
        for line in emu.stdout:  # type: ignore[union-attr]
            printed.append(line)
            if line.startswith("export ANTHROPIC_IDENTITY_TOKEN_FILE="):
                break
        printed_text = "".join(printed)
        # The README's example output has the same lines, values aside.
        def shape(text: str) -> list[str]:
            return [re.sub(r"=.*", "=", l) for l in text.splitlines() if l and not l.startswith("#")]
        assert shape(example) == shape(printed_text), printed_text

        # Terminal 2: paste, then the commands, verbatim.
        env2 = dict(env, XDG_CACHE_HOME=str(tmp_path / "cache"), ANTHROPIC_CONFIG_DIR=str(tmp_path / "config"),
                    PATH=f"{checkout_like / 'target' / 'debug'}:{env.get('PATH', '')}")
        pasted = subprocess.run(["bash", "-c", printed_text + "\nenv -0"], env=env2, capture_output=True, text=True,
                                check=True).stdout
        env2 = dict(kv.split("=", 1) for kv in pasted.split("\0") if "=" in kv)
        out = subprocess.run(["bash", "-c", commands], env=env2, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        token = json.loads(out.stdout.splitlines()[0])
        assert token["access_token"].startswith("sk-ant-oat01-")  # and `doctor` exited 0: healthy

        # The Python snippet: this interpreter has the installed module and the official SDK.
        py = subprocess.run([sys.executable, "-c", python], env=env2, capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
        assert py.returncode == 0, py.stderr
        assert EMULATOR_REPLY in py.stdout, py.stdout

        # The Node snippet, from an app that has both packages.
        app = os.environ.get("ANTHROPIC_WIF_NODE_APP") or str(ROOT)
        if not (Path(app) / "node_modules" / "@anthropic-ai" / "sdk").exists():
            pytest.skip(f"no @anthropic-ai/sdk under {app}: run `npm install` (scripts/test.sh sets ANTHROPIC_WIF_NODE_APP)")
        node = subprocess.run(["node", "-e", js], env=env2, capture_output=True, text=True, timeout=60, cwd=app)
        assert node.returncode == 0, node.stderr
        assert EMULATOR_REPLY in node.stdout, node.stdout
    finally:
        os.killpg(emu.pid, 15)
        emu.wait(timeout=10)


def test_the_claude_code_recipes_are_the_tested_ones() -> None:
    """README's Claude Code section shows the ways tests/e2e/claude_code.test.mjs runs against the real Claude Code
    (setup claude-code + daemon, exec, proxy), and none that the tests show refused."""
    text = (ROOT / "README.md").read_text()
    start = text.index("### Claude Code")
    section = text[start:text.index("\n### ", start + 5)]
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))
    commands = [line.split("#")[0].strip() for line in blocks.splitlines() if line.strip()]
    assert commands == [
        "anthropic-wif setup claude-code",
        "anthropic-wif daemon --target-profile claude-code &",
        "claude",
        "anthropic-wif exec -- claude",
        "anthropic-wif proxy --listen 127.0.0.1:8787 --quiet &",
        "export ANTHROPIC_BASE_URL=http://127.0.0.1:8787 ANTHROPIC_AUTH_TOKEN=placeholder",
        "claude",
    ], commands
    for refused in ("apiKeyHelper", "--env-token", "--credentials-path"):
        assert refused not in blocks, refused
