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
import sys
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


# ---- the daemon sidecar: deploy/kubernetes/app-with-daemon.yaml (docs/daemon.md) ---------------------------

DAEMON_MANIFEST = ROOT / "deploy" / "kubernetes" / "app-with-daemon.yaml"


def daemon_pod() -> dict:
    docs = list(yaml.safe_load_all(DAEMON_MANIFEST.read_text()))
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (side,) = [c for c in pod.get("initContainers", []) if c["name"] == "anthropic-wif"]
    (app,) = pod["containers"]
    return {"docs": docs, "pod": pod, "sidecar": side, "app": app}


def _env(c: dict) -> dict:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def _mounts(c: dict) -> dict:
    return {m["name"]: m for m in c.get("volumeMounts", [])}


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_daemon_manifest_has_the_recipe_shape() -> None:
    m = daemon_pod()
    pod, side, app = m["pod"], m["sidecar"], m["app"]
    assert [d["kind"] for d in m["docs"]] == ["Namespace", "ServiceAccount", "Deployment"]
    assert pod["automountServiceAccountToken"] is False
    assert side["restartPolicy"] == "Always", "a native sidecar, started (and ready) before the app"
    # One uid for both containers (the SDKs refuse a group-readable credentials file), set once for the pod.
    uid = pod["securityContext"]["runAsUser"]
    assert uid != 0 and pod["securityContext"]["runAsNonRoot"]
    for c in (side, app):
        assert c.get("securityContext", {}).get("runAsUser", uid) == uid, c["name"]
    # The shared directory: an in-memory emptyDir, the sidecar's ANTHROPIC_CONFIG_DIR and the app's.
    side_env, app_env = _env(side), _env(app)
    assert set(app_env) == {"ANTHROPIC_PROFILE", "ANTHROPIC_CONFIG_DIR"}, "the app is told nothing else"
    assert side_env["ANTHROPIC_CONFIG_DIR"] == app_env["ANTHROPIC_CONFIG_DIR"]
    shared = [n for n, mnt in _mounts(app).items() if mnt["mountPath"] == app_env["ANTHROPIC_CONFIG_DIR"]]
    assert len(shared) == 1 and _mounts(side)[shared[0]]["mountPath"] == side_env["ANTHROPIC_CONFIG_DIR"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == shared[0]]
    assert vol["emptyDir"]["medium"] == "Memory"
    assert "anthropic-token" not in _mounts(app), "only the sidecar sees the identity token"
    # The daemon keeps the profile the app names, and writes it.
    args = side["args"]
    assert args[0] == "daemon" and _arg(args, "--target-profile") == app_env["ANTHROPIC_PROFILE"]
    assert "--write-profile" in args
    # Its identity token is the projected one; its cache and ready file are on a volume of its own
    # (the root file system is read-only).
    (proj,) = [v for v in pod["volumes"] if "projected" in v]
    sat = proj["projected"]["sources"][0]["serviceAccountToken"]
    assert sat["audience"] == "https://api.anthropic.com"
    assert side_env["ANTHROPIC_IDENTITY_TOKEN_FILE"] == f"{_mounts(side)[proj['name']]['mountPath']}/{sat['path']}"
    assert side["securityContext"]["readOnlyRootFilesystem"]
    writable = [mnt["mountPath"] for mnt in _mounts(side).values() if not mnt.get("readOnly")]
    ready = _arg(args, "--ready-file")
    assert any(ready.startswith(p + "/") for p in writable), ready
    assert any(side_env["XDG_CACHE_HOME"] == p for p in writable)
    for probe in ("startupProbe", "readinessProbe"):
        assert side[probe]["exec"]["command"] == ["/usr/local/bin/anthropic-wif", "probe", "--ready-file", ready]


def test_the_daemon_sidecar_and_an_sdk_app_work_outside_a_container() -> None:
    """The manifest's args and env, paths mapped into a temporary directory, with the image's binary (the
    release CLI) and the pod's uid when this runs as root; the app is the official Python SDK with exactly
    the app container's environment."""
    anthropic = pytest.importorskip("anthropic")
    m = daemon_pod()
    side, app, pod = m["sidecar"], m["app"], m["pod"]
    work = Path(tempfile.mkdtemp(prefix="wif-daemon-pod-"))
    work.chmod(0o755)
    # Every absolute path of the manifest, inside `work`.
    mounts = {mnt["mountPath"]: work / mnt["name"] for c in (side, app) for mnt in c.get("volumeMounts", [])}
    def local(v: str) -> str:
        for path, d in mounts.items():
            if v == path or v.startswith(path + "/"):
                return str(d) + v[len(path):]
        return v
    emu = subprocess.Popen([emulator_binary(), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    daemon = None
    try:
        base = json.loads(emu.stdout.readline())["base_url"]  # type: ignore[union-attr]
        for d in set(mounts.values()):
            d.mkdir()
        token = Path(local(_env(side)["ANTHROPIC_IDENTITY_TOKEN_FILE"]))
        token.write_text(json.load(_post(base + "/_emulator/jwt"))["jwt"])
        token.chmod(0o644)  # as the kubelet projects it
        env = {k: local(v) for k, v in _env(side).items()}
        env.update(ANTHROPIC_BASE_URL=base, PATH=os.environ.get("PATH", ""), HOME=str(work))
        uid = pod["securityContext"]["runAsUser"]
        prefix: list[str] = []
        exe = binary()
        if os.geteuid() == 0 and shutil.which("setpriv"):
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            for d in set(mounts.values()):
                os.chown(d, uid, uid)
            exe = str(work / "anthropic-wif")
            shutil.copy(binary(), exe)
            os.chmod(exe, 0o755)
        daemon = subprocess.Popen([*prefix, exe, *[local(a) for a in side["args"]]], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, env=env)
        probe = [exe, *[local(a) for a in side["startupProbe"]["exec"]["command"][1:]]]
        deadline = time.time() + 30
        while subprocess.run([*prefix, *probe], capture_output=True).returncode != 0:
            assert daemon.poll() is None, daemon.stderr.read()  # type: ignore[union-attr]
            assert time.time() < deadline, "the startup probe never passed"
            time.sleep(0.1)
        # The app: the official SDK, as the pod's uid, with the app container's environment alone.
        app_env = {k: local(v) for k, v in _env(app).items()}
        app_env.update(PATH=os.environ.get("PATH", ""), HOME=str(work))
        client = ("import anthropic; m = anthropic.Anthropic().messages.create(model='claude-test', max_tokens=16, "
                  "messages=[{'role': 'user', 'content': 'hi'}]); print(m.type)")
        run_as = prefix if prefix and subprocess.run([*prefix, sys.executable, "-c", "import anthropic"],
                                                     capture_output=True).returncode == 0 else []
        out = subprocess.run([*run_as, sys.executable, "-c", client], capture_output=True, text=True, env=app_env,
                             timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "message", out.stderr
        assert anthropic  # the same SDK the subprocess imported
        creds = Path(local(app_env["ANTHROPIC_CONFIG_DIR"])) / "credentials" / f"{app_env['ANTHROPIC_PROFILE']}.json"
        assert creds.stat().st_mode & 0o777 == 0o600
        if prefix:
            assert creds.stat().st_uid == uid, "written as the pod's uid"
    finally:
        if daemon is not None:
            daemon.terminate()
            _, err = daemon.communicate(timeout=30)
            assert daemon.returncode == 0, err
            assert "sk-ant-oat01-" not in err and "eyJ" not in err
        emu.terminate()
        emu.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
