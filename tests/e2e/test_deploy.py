"""The sidecar image and the Kubernetes example (Dockerfile, deploy/kubernetes/agent-with-proxy.yaml).

No container engine runs on the project's machines, so the image is not built here. Instead: the
Dockerfile and the manifest are parsed and checked for what the recipe depends on, and the release CLI
runs with exactly the manifest's arguments and environment (as the image's non-root uid when
possible), outside a container, against the emulator: its probes pass and the official SDK, holding
only the agent container's placeholder, gets answers through it."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from proxy_harness import ROOT, binary, emulator_binary

DOCKERFILE = ROOT / "Dockerfile"
MANIFEST = ROOT / "deploy" / "kubernetes" / "agent-with-proxy.yaml"


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        logical += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        word, _, rest = logical.strip().partition(" ")
        logical = ""
        word = word.upper()
        assert word in {"ARG", "FROM", "WORKDIR", "COPY", "RUN", "USER", "ENV", "ENTRYPOINT", "CMD", "EXPOSE"}, word
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, rest.strip()))
    return stages


def sidecar() -> dict:
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (c,) = [c for c in pod.get("initContainers", []) if c["name"] == "anthropic-wif"]
    return {"pod": pod, "container": c, "docs": docs}


def test_dockerfile_is_multi_stage_minimal_and_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a run stage"
    final = dict(stages[-1])
    assert "distroless" in final["FROM"] and ":nonroot" in final["FROM"], final["FROM"]
    assert final["USER"].split(":")[0] not in ("0", "root"), final["USER"]
    assert json.loads(final["ENTRYPOINT"]) == ["/usr/local/bin/anthropic-wif"]
    cmd = json.loads(final["CMD"])
    assert cmd[0] == "proxy" and cmd[cmd.index("--listen") + 1].startswith("127.0.0.1:"), cmd
    build = dict(stages[0])
    assert "cargo build --release --locked -p anthropic-wif-cli" in build["RUN"]
    # Every workspace member is copied in (cargo reads all member manifests).
    cargo = (ROOT / "Cargo.toml").read_text()
    listed = cargo.split("members = [", 1)[1].split("]", 1)[0]
    copied = {w.split()[0] for k, w in stages[0] if k == "COPY"}
    for m in [s.strip().strip('"') for s in listed.split(",") if s.strip()]:
        assert m in copied, f"the build stage does not COPY the workspace member {m}"


def test_manifest_has_the_recipe_shape() -> None:
    s = sidecar()
    pod, c = s["pod"], s["container"]
    kinds = [d["kind"] for d in s["docs"]]
    assert kinds == ["Namespace", "ServiceAccount", "Deployment"], kinds
    assert pod["automountServiceAccountToken"] is False
    (vol,) = [v for v in pod["volumes"] if "projected" in v]
    sat = vol["projected"]["sources"][0]["serviceAccountToken"]
    assert sat["audience"] == "https://api.anthropic.com" and sat["expirationSeconds"] <= 3600
    mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["ANTHROPIC_IDENTITY_TOKEN_FILE"] == f"{mount['mountPath']}/{sat['path']}" and mount["readOnly"]
    assert c["restartPolicy"] == "Always", "a native sidecar"
    sc = c["securityContext"]
    assert sc["runAsUser"] != 0 and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    # The agent holds no token volume and no secret, only the proxy's URL and a placeholder.
    (agent,) = pod["containers"]
    assert "volumeMounts" not in agent
    agent_env = {e["name"]: e["value"] for e in agent["env"]}
    port = c["args"][c["args"].index("--listen") + 1].split(":")[1]
    assert agent_env["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{port}"
    assert not any(v.startswith(("sk-ant-", "eyJ")) for v in agent_env.values())


def _exec_probe(probe: dict, port: str) -> list[str]:
    argv = probe["exec"]["command"]
    assert argv[0] == "/usr/local/bin/anthropic-wif" and argv[1] == "probe", argv
    return [binary(), *[a.replace(":8787", f":{port}") for a in argv[1:]]]


def test_the_sidecar_args_and_env_work_outside_a_container() -> None:
    """The manifest's args and env, with the image's binary (the release CLI) and uid, no container."""
    anthropic = pytest.importorskip("anthropic")
    c = sidecar()["container"]
    # A directory the image's uid can enter (pytest's own tmp_path sits under a 0700 directory).
    work = Path(tempfile.mkdtemp(prefix="wif-sidecar-"))
    work.chmod(0o755)
    # The emulator stands in for api.anthropic.com; a file stands in for the projected token.
    emu = subprocess.Popen([emulator_binary(), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    proxy = None
    jwt = "unset"
    try:
        base = json.loads(emu.stdout.readline())["base_url"]  # type: ignore[union-attr]
        token = work / "token"
        jwt = json.load(_post(base + "/_emulator/jwt"))["jwt"]
        token.write_text(jwt)
        token.chmod(0o644)  # as the kubelet projects it: root-owned, world-readable
        env = {e["name"]: e["value"] for e in c["env"]}
        env.update(
            ANTHROPIC_IDENTITY_TOKEN_FILE=str(token),
            XDG_CACHE_HOME=str(work / "cache"),
            ANTHROPIC_BASE_URL=base,
            PATH=os.environ.get("PATH", ""),
            HOME=str(work),
        )
        (work / "cache").mkdir()
        args = list(c["args"])
        listen = args.index("--listen") + 1
        args[listen] = "127.0.0.1:0"  # a free port on this shared machine, instead of the pod's 8787
        # As the image's user (uid 65532) when this runs as root and setpriv exists.
        prefix: list[str] = []
        if os.geteuid() == 0 and shutil.which("setpriv"):
            uid = c["securityContext"]["runAsUser"]
            os.chown(work / "cache", uid, uid)
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            exe = work / "anthropic-wif"
            shutil.copy(binary(), exe)  # the binary itself may sit in a directory only root can enter
            exe.chmod(0o755)
        else:
            exe = Path(binary())
        proxy = subprocess.Popen([*prefix, str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        ready = json.loads(proxy.stdout.readline() or "{}")  # type: ignore[union-attr]
        assert "base_url" in ready, proxy.stderr.read() if proxy.stderr else ""
        port = ready["base_url"].rsplit(":", 1)[1]
        # The probes the kubelet runs (exec, in the sidecar's own network namespace).
        deadline = time.time() + 20
        while subprocess.run(_exec_probe(c["startupProbe"], port)).returncode != 0:
            assert time.time() < deadline, "the startup probe never passed"
            time.sleep(0.1)
        for probe in ("readinessProbe", "livenessProbe"):
            assert subprocess.run(_exec_probe(c[probe], port)).returncode == 0, probe
        # The agent: the official SDK with the agent container's environment and nothing else.
        agent_env = {e["name"]: e["value"] for e in sidecar()["pod"]["containers"][0]["env"]}
        client = anthropic.Anthropic(
            base_url=agent_env["ANTHROPIC_BASE_URL"].replace(":8787", f":{port}"),
            auth_token=agent_env["ANTHROPIC_AUTH_TOKEN"],
        )
        msg = client.messages.create(model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        assert msg.type == "message"
    finally:
        if proxy is not None:
            proxy.terminate()
            _, err = proxy.communicate(timeout=30)
            assert proxy.returncode == 0, err
            assert jwt not in err
        emu.terminate()
        emu.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def _post(url: str):
    import urllib.request

    return urllib.request.urlopen(urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"}))


def test_the_dockerfile_command_is_the_documented_one() -> None:
    """docs/proxy.md's sidecar snippet and the image's default command agree on the listener."""
    final = dict(dockerfile_stages()[-1])
    cmd = json.loads(final["CMD"])
    docs = (ROOT / "docs" / "proxy.md").read_text()
    assert shlex.join(["anthropic-wif", *cmd]) in docs or " ".join(cmd[1:]) in docs
