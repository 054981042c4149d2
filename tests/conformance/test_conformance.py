"""The conformance table (cases.json) through the CLI, the Python module and the
Node module alike (docs/design.md §11).

For every case and every face: a fresh sandbox (HOME, config and cache dirs,
profile files, an unused identity JWT from the emulator in a 0600 file), the
case's options spelled the way that face's user writes them (`--flags` for
`anthropic-wif token`, keyword arguments for `anthropic_wif.Provider`, a
camelCase object for `new Provider()`), the case's environment, one token
asked for. What must come out: the token request as the emulator recorded it
(the body exactly; the headers `Content-Type`, `anthropic-beta` and the
face's `User-Agent`), or an error of the case's kind whose message contains
the case's phrases (with option names spelled for the face) and is, once the
option names are spelled alike, the same message in all three faces. Nothing
secret reaches stderr.

What runs is what users install: `$ANTHROPIC_WIF_BIN` (scripts/test.sh: the CLI
from the release archive), the `anthropic_wif` this interpreter imports
(scripts/test.sh: the wheel in a fresh venv), and the package installed in
`$ANTHROPIC_WIF_NODE_APP` (scripts/test.sh: the packed npm packages); without
those variables, the debug builds and the checkout. The three faces run in
parallel, each against its own emulator (`$ANTHROPIC_WIF_EMULATOR`).
"""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import anthropic_wif
from anthropic_wif import _native

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TABLE = json.loads((HERE / "cases.json").read_text())
CASES: List[Dict[str, Any]] = TABLE["cases"]
FACES = ("cli", "python", "node")
OPTIONS = {o["name"]: o for o in json.loads(_native.schema())["options"]}

RULE = "fdrl_01ConformanceRule000000000"
ORG = "00000000-0000-4000-8000-00000000c0de"
SVAC = "svac_01ConformanceAccount000000"
WS = "wrkspc_01ConformanceSpace00000"
URL_SOURCE_SECRET = "url-source-secret"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
BETA = "oauth-2025-04-20,oidc-federation-2026-04-01"
EXIT_KINDS = {1: "internal", 2: "config", 3: "identity", 4: "denied", 5: "unavailable"}
SECRET_RE = re.compile(r"sk-ant-oat01-|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")


def _target(name: str) -> str:
    return str(Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug" / name)


CLI = os.environ.get("ANTHROPIC_WIF_BIN") or _target("anthropic-wif")
EMULATOR = os.environ.get("ANTHROPIC_WIF_EMULATOR") or _target("wif-emulator")
NODE_APP = os.environ.get("ANTHROPIC_WIF_NODE_APP")


# ---- how each face spells an option ------------------------------------------------------------


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def key(face: str, name: str) -> str:
    """How the face's user writes the option `name` (snake_case; known or not)."""
    o = OPTIONS.get(name)
    if face == "cli":
        return o["flag"] if o and o["flag"] else "--" + name.replace("_", "-")
    if face == "node":
        return o["camel"] if o else camel(name)
    return name


def label(face: str, name: str) -> str:
    """How the face's messages name the option in a sentence."""
    return {"cli": "", "python": "argument ", "node": "option "}[face] + key(face, name)


def cli_args(options: Dict[str, Any]) -> List[str]:
    args = []
    for name, value in options.items():
        flag = key("cli", name)
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, str):
            args.append(f"{flag}={value}")
        else:
            args.append(f"{flag}={json.dumps(value)}")
    return args


def normalise(message: str, places: Dict[str, str]) -> str:
    """The message with every option name, in any face's spelling, written `<name>`, the API's
    name dropped, and what differs from run to run (paths, ports, request ids) as placeholders."""
    message = re.sub(r"^(new )?\w+\((options)?\): ", "", message)
    for name in OPTIONS:
        for face in FACES:
            message = re.sub(rf"(?<![\w-]){re.escape(label(face, name))}(?![\w-])", f"<{name}>", message)
    for k, v in sorted(places.items(), key=lambda kv: -len(kv[1])):
        message = message.replace(v, "{" + k + "}")
    return re.sub(r"req_[A-Za-z0-9]+", "req_…", message)


def fill(value: Any, places: Dict[str, str], face: str) -> Any:
    if isinstance(value, str):
        value = re.sub(r"\{opt:(\w+)\}", lambda m: label(face, m.group(1)), value)
        value = re.sub(r"\{key:(\w+)\}", lambda m: key(face, m.group(1)), value)
        for k, v in places.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: fill(v, places, face) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, places, face) for v in value]
    return value


# ---- the services: an emulator per face, and a url identity source ---------------------------


class Emulator:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [EMULATOR, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        self.base_url: str = json.loads(self.proc.stdout.readline())["base_url"]

    def call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


class JwtServer:
    """GET /jwt/<face> with `Authorization: Bearer url-source-secret` → {"value": <that face's JWT>}."""

    def __init__(self) -> None:
        self.jwts: Dict[str, str] = {}
        jwts = self.jwts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                face = self.path.rsplit("/", 1)[-1]
                ok = self.headers.get("Authorization") == f"Bearer {URL_SOURCE_SECRET}" and face in jwts
                body = json.dumps({"value": jwts.get(face, "")} if ok else {"error": "unauthorized"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwt/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- one case in one face ------------------------------------------------------------------------


class Outcome:
    def __init__(self, face: str) -> None:
        self.face = face
        self.ok: Optional[bool] = None
        self.kind: Optional[str] = None
        self.message = ""
        self.stderr = ""
        self.requests: List[Dict[str, Any]] = []
        self.places: Dict[str, str] = {}
        self.cache_files: List[str] = []
        self.files: List[str] = []
        self.problem: Optional[str] = None


def run_one(face: str, case: Dict[str, Any], emu: Emulator, jwt_server: JwtServer, root: Path, node_driver: str) -> Outcome:
    out = Outcome(face)
    emu.call("POST", "/_emulator/reset")
    jwt = emu.call("POST", "/_emulator/jwt", case.get("jwt", {}))["jwt"]
    jwt_server.jwts[face] = jwt
    sandbox = Path(tempfile.mkdtemp(prefix=f"{case['name'][:40]}-", dir=root))
    home, cache, config = sandbox / "home", sandbox / "cache", sandbox / "config"
    for d in (home, cache, config):
        d.mkdir(mode=0o700)
    token_file = sandbox / "identity-token"
    token_file.write_text(jwt + "\n")
    token_file.chmod(0o600)
    out.places = places = {
        "rule": RULE, "org": ORG, "svac": SVAC, "ws": WS, "base_url": emu.base_url, "jwt": jwt,
        "token_file": str(token_file), "config_dir": str(config), "jwt_url": jwt_server.url + face,
    }
    for name, profile in fill(case.get("profiles", {}), places, face).items():
        (config / "configs").mkdir(mode=0o700, exist_ok=True)
        path = config / "configs" / f"{name}.json"
        path.write_text(json.dumps(profile))
        path.chmod(0o600)
    if "active_config" in case:
        (config / "active_config").write_text(case["active_config"] + "\n")
        (config / "active_config").chmod(0o600)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CACHE_HOME": str(cache), "ANTHROPIC_CONFIG_DIR": str(config)}
    env.update(fill(case.get("env", {}), places, face))
    options = fill(case.get("options", {}), places, face)

    if face == "cli":
        argv = [CLI, "token", *cli_args(options)]
    elif face == "python":
        argv = [sys.executable, str(HERE / "drive.py"), json.dumps(options)]
    else:
        argv = ["node", node_driver, json.dumps({key("node", k): v for k, v in options.items()})]
    proc = subprocess.run(argv, env=env, cwd=sandbox, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    out.stderr = proc.stderr
    if face == "cli":
        if proc.returncode == 0:
            out.ok = True
        else:
            out.ok = False
            m = re.match(r"anthropic-wif: error \[(\w+)\]: (.*)", proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
            out.kind, out.message = (m.group(1), m.group(2)) if m else (None, proc.stderr)
            if out.kind is not None and EXIT_KINDS.get(proc.returncode) != out.kind:
                out.problem = f"exit code {proc.returncode} for an error of kind {out.kind}"
    else:
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out.problem = f"the driver failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}"
            return out
        installed = NODE_APP if face == "node" else None
        if installed and not result["module"].startswith(os.path.realpath(installed)):
            out.problem = f"anthropic-wif came from {result['module']}, not the install in {installed}"
        if face == "python" and "site-packages" not in result["module"]:
            out.problem = f"anthropic_wif came from {result['module']}, not an installed package"
        out.ok, out.kind, out.message = result["ok"], result.get("kind"), result.get("message", "")
    out.requests = [r for r in emu.call("GET", "/_emulator/requests") if r["path"] == "/v1/oauth/token"]
    # The access-token cache and its lock; the record of presented identity tokens is kept with
    # no_cache too (the guard is not a cache: docs/design.md §4).
    out.cache_files = [str(p) for p in cache.rglob("*") if p.is_file() and not p.name.startswith("presented-identity-tokens")]
    out.files = [str(p) for p in sandbox.rglob("*") if p.is_file()]
    shutil.rmtree(sandbox, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def outcomes() -> Iterator[Dict[Tuple[str, str], Outcome]]:
    root = Path(tempfile.mkdtemp(prefix="wif-conformance-"))
    # Node resolves `anthropic-wif` from the driver's location: put it in the app that installed it.
    node_dir = Path(NODE_APP) / ".conformance" if NODE_APP else root / "node"
    node_dir.mkdir(parents=True, exist_ok=True)
    node_driver = str(node_dir / "drive.js")
    shutil.copy(HERE / "drive.js", node_driver)
    if not NODE_APP:
        # A checkout run: the package is the checkout itself.
        (node_dir / "node_modules").mkdir(exist_ok=True)
        link = node_dir / "node_modules" / "anthropic-wif"
        if not link.exists():
            link.symlink_to(REPO)
    jwt_server = JwtServer()
    emulators = {face: Emulator() for face in FACES}

    def run_face(face: str) -> Dict[Tuple[str, str], Outcome]:
        return {
            (c["name"], face): run_one(face, c, emulators[face], jwt_server, root, node_driver)
            for c in CASES
            if face in c.get("faces", FACES)
        }

    results: Dict[Tuple[str, str], Outcome] = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(len(FACES)) as pool:
            for part in pool.map(run_face, FACES):
                results.update(part)
        yield results
    finally:
        for emu in emulators.values():
            emu.stop()
        jwt_server.stop()
        shutil.rmtree(root, ignore_errors=True)
        if NODE_APP:
            shutil.rmtree(node_dir, ignore_errors=True)


# ---- the checks ----------------------------------------------------------------------------------


def check(case: Dict[str, Any], o: Outcome) -> List[str]:
    face, p = o.face, o.places
    expect = fill(case["expect"], p, face)
    problems = [o.problem] if o.problem else []
    if SECRET_RE.search(o.stderr) or p["jwt"] in o.stderr:
        problems.append(f"a secret on stderr: {o.stderr!r}")
    for want in expect.get("stderr", []):
        if want not in o.stderr:
            problems.append(f"stderr lacks {want!r}: {o.stderr!r}")
    for unwanted in expect.get("absent_stderr", []):
        if unwanted in o.stderr:
            problems.append(f"stderr has {unwanted!r}: {o.stderr!r}")
    if "body" in expect:
        if not o.ok:
            return problems + [f"expected a token, got [{o.kind}] {o.message}"]
        if len(o.requests) != 1:
            return problems + [f"expected one token request, got {len(o.requests)}"]
        req = o.requests[0]
        body = {"grant_type": GRANT, "assertion": p["jwt"], **expect["body"]}
        if req["body"] != body:
            problems.append(f"body {json.dumps(req['body'])} != {json.dumps(body)}")
        headers = req["headers"]
        want = {"content-type": "application/json", "anthropic-beta": BETA, "user-agent": f"anthropic-wif/{anthropic_wif.__version__} ({face})"}
        for h, v in want.items():
            if headers.get(h) != v:
                problems.append(f"header {h}: {headers.get(h)!r} != {v!r}")
        if expect.get("no_cache_file") and o.cache_files:
            problems.append(f"no_cache wrote {o.cache_files}")
        for f in expect.get("files", []):
            if f not in o.files:
                problems.append(f"no file {f} (files: {o.files})")
    else:
        err = expect["error"]
        if o.ok:
            return problems + [f"expected an error [{err['kind']}], got a token"]
        if o.kind != err["kind"]:
            problems.append(f"kind {o.kind} != {err['kind']}: {o.message}")
        for phrase in err.get("contains", []) + err.get(f"{face}_contains", []):
            if phrase not in o.message:
                problems.append(f"message lacks {phrase!r}: {o.message}")
        for phrase in err.get("absent", []):
            if phrase in o.message:
                problems.append(f"message has {phrase!r}: {o.message}")
        if err["kind"] in ("config", "identity") and o.requests:
            problems.append(f"{len(o.requests)} token request(s) sent for a {err['kind']} error")
        if expect.get("request") and not o.requests:
            problems.append("no token request was sent")
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_face_agrees(case: Dict[str, Any], outcomes: Dict[Tuple[str, str], Outcome]) -> None:
    faces = [f for f in FACES if (case["name"], f) in outcomes]
    problems = [f"{face}: {p}" for face in faces for p in check(case, outcomes[(case["name"], face)])]
    if "error" in case["expect"] and case.get("same_message", True) and not problems:
        texts = {face: normalise(o.message, o.places) for face in faces for o in [outcomes[(case["name"], face)]]}
        if len(set(texts.values())) > 1:
            problems.append("the faces' messages differ:\n" + "\n".join(f"  {f}: {t}" for f, t in texts.items()))
    assert not problems, "\n".join(problems)


def test_the_table_covers_the_drifts_and_every_option() -> None:
    names = {c["name"] for c in CASES}
    for must in (
        "empty_service_account_id_is_left_out_not_taken_from_env",
        "min_remaining_below_zero",
        "min_remaining_above_a_day",
        "unknown_option_did_you_mean",
        "anthropic_wif_log_info",
        "lock_timeout_in_every_face",
    ):
        assert must in names
    used = {k for c in CASES for k in c.get("options", {})}
    provider = {n for n, o in OPTIONS.items() if o["scope"] == "provider" and o["flag"]}
    assert provider - used == set(), f"options no case uses: {sorted(provider - used)}"
