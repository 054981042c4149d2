#!/usr/bin/env python3
"""The proxy side by side with nginx and HAProxy in front of the same upstream (run by bench/proxy_vs.sh).

Every contender runs at once, pinned to CPU 1 with the upstream; the load generator (wrk, one thread) and the
SSE client run on CPU 0. Rounds interleave the contenders at each concurrency so that all see the same
moment of the machine; the table shows the median over rounds. Contenders:

- direct: the upstream itself, the client sending the bearer and beta flag;
- nginx, haproxy: reverse proxies injecting a static `Authorization: Bearer sk-ant-oat01-…` and
  `anthropic-beta: oauth-2025-04-20`, removing `x-api-key`, keep-alive to the upstream;
- ours: `anthropic-wif proxy`, exchanging 60-second tokens with the emulator (relayed by the upstream);
- old (with --old BIN): the same for another build, e.g. the proxy before the issue-10 fixes.

Measured per contender: req/s and latency p50/p99 (wrk --latency) at each concurrency, added latency over
direct; CPU seconds per 10 000 requests (utime+stime of the contender's processes over the non-streaming
runs); peak RSS (VmHWM, summed over its processes); SSE time to first event and gap between events.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BODY = '{"model":"claude-bench","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}'
RULE = "fdrl_01TestRule000000000000000"
ORG = "00000000-0000-4000-8000-000000000001"
STATIC = "sk-ant-oat01-bench-static-token"
TICK = os.sysconf("SC_CLK_TCK")
LOAD_CPU, SERVER_CPU = "0", "1"

WRK_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["content-type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["x-api-key"] = "placeholder"
local auth = os.getenv("WRK_AUTH")
if auth then
  wrk.headers["authorization"] = auth
  wrk.headers["anthropic-beta"] = "oauth-2025-04-20"
  wrk.headers["x-api-key"] = nil
end
""" % BODY

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/nginx-body;
  proxy_temp_path {dir}/nginx-proxy;
  fastcgi_temp_path {dir}/nginx-fastcgi;
  uwsgi_temp_path {dir}/nginx-uwsgi;
  scgi_temp_path {dir}/nginx-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream api {{
    server {upstream};
    keepalive 512;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    client_max_body_size 32m;
    location / {{
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Api-Key "";
      proxy_set_header Authorization "Bearer {token}";
      proxy_set_header anthropic-beta "oauth-2025-04-20";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""

HAPROXY_CONF = """
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 10s
  timeout client 60s
  timeout server 600s
  timeout http-keep-alive 60s
  option http-keep-alive
  option http-no-delay
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  http-request del-header x-api-key
  http-request set-header Authorization "Bearer {token}"
  http-request set-header anthropic-beta "oauth-2025-04-20"
  default_backend be
backend be
  server up {upstream}
"""


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, name, workdir, timeout=15):
    import socket
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            log = open(os.path.join(workdir, f"{name}.log")).read()
            raise SystemExit(f"{name} exited ({proc.returncode}) before listening:\n{log}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def pids_of(root):
    """The process and its descendants."""
    out = [root]
    try:
        kids = open(f"/proc/{root}/task/{root}/children").read().split()
    except OSError:
        kids = []
    for k in kids:
        out += pids_of(int(k))
    return out


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime, stime
        except OSError:
            pass
    return total


def peak_rss_kib(pids):
    total = 0
    for p in pids:
        try:
            m = re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{p}/status").read())
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total


def start(cmd, name, workdir, env=None, ready_line=False):
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, stdout=subprocess.PIPE if ready_line else log,
                         stderr=log, env=env, start_new_session=True)
    base = None
    if ready_line:
        line = p.stdout.readline().decode()
        try:
            base = json.loads(line)["base_url"]
        except (ValueError, KeyError):
            raise SystemExit(f"{name} did not start: {line!r}; see {log.name}")
    return p, base


def wrk(url, conns, secs, auth=None):
    env = dict(os.environ)
    if auth:
        env["WRK_AUTH"] = auth
    else:
        env.pop("WRK_AUTH", None)
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{secs:g}s", "--latency",
                          "-s", WRK_LUA_PATH, url], capture_output=True, text=True, env=env).stdout

    def ms(label):
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    if "Requests/sec" not in out:
        raise SystemExit(f"wrk against {url} printed no result:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(x) for x in errs.groups()) if errs else 0)
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "n": total, "errors": errors}


def sse(sse_bin, url, streams, rounds, auth):
    cmd = ["taskset", "-c", LOAD_CPU, sse_bin, "--url", url, "--streams", str(streams), "--rounds", str(rounds)]
    if auth:
        cmd.append("--auth")
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout)


def post_json(url, body, headers=None):
    import urllib.request
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **(headers or {})})
    return json.load(urllib.request.urlopen(req))


def emulator_token(emu_base):
    """A token from the emulator that outlives the run (its lifetime is raised for this one exchange)."""
    post_json(emu_base + "/_emulator/config", {"token_lifetime": 7200})
    jwt = post_json(emu_base + "/_emulator/jwt", {"ttl": 7200})["jwt"]
    tok = post_json(emu_base + "/v1/oauth/token",
                    {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": jwt,
                     "federation_rule_id": RULE, "organization_id": ORG},
                    {"anthropic-beta": "oauth-2025-04-20,oidc-federation-2026-04-01"})["access_token"]
    post_json(emu_base + "/_emulator/config", {"token_lifetime": 60})
    return tok


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="anthropic-wif (release)")
    ap.add_argument("--emulator", required=True, help="wif-emulator (release)")
    ap.add_argument("--examples", required=True, help="directory with bench_upstream and bench_sse")
    ap.add_argument("--old", help="another anthropic-wif build to compare (e.g. before a change)")
    ap.add_argument("--quick", action="store_true", help="CI smoke: short runs, 1 and 64 connections, 1 round")
    ap.add_argument("--secs", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", default="1,16,64,256")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()
    if a.quick:
        a.secs, a.rounds, a.conns = 2, 1, "1,64"
    conns = [int(c) for c in a.conns.split(",")]
    work = tempfile.mkdtemp(prefix="proxy-vs-")
    global WRK_LUA_PATH
    WRK_LUA_PATH = os.path.join(work, "post.lua")
    open(WRK_LUA_PATH, "w").write(WRK_LUA)
    procs = []

    def cleanup(*_):
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))
    try:
        run(a, conns, work, procs)
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)


def run(a, conns, work, procs):
    load_before = loadavg()
    emu, emu_base = start([a.emulator, "--listen", "127.0.0.1:0", "--token-lifetime", "60"], "emulator",
                          work, ready_line=True)
    procs.append(emu)
    up, up_base = start([os.path.join(a.examples, "bench_upstream"), "--token-base", emu_base,
                         "--stream-events", "10", "--stream-delay-ms", "20"], "upstream", work, ready_line=True)
    procs.append(up)
    upstream = up_base.removeprefix("http://")
    contenders = {"direct": {"url": up_base, "pids": lambda: [], "auth": f"Bearer {STATIC}"}}
    # The emulator's own Messages API, called directly with a live token: is it fast enough to be the
    # common upstream? (Its requests/s are printed as a reference row.)
    emu_token = emulator_token(emu_base)

    port = free_port()
    conf = os.path.join(work, "nginx.conf")
    open(conf, "w").write(NGINX_CONF.format(dir=work, upstream=upstream, port=port, token=STATIC))
    p, _ = start(["nginx", "-p", work, "-c", conf], "nginx", work)
    procs.append(p)
    wait_port(port, p, "nginx", work)
    contenders["nginx"] = {"url": f"http://127.0.0.1:{port}", "proc": p}

    port = free_port()
    conf = os.path.join(work, "haproxy.cfg")
    open(conf, "w").write(HAPROXY_CONF.format(upstream=upstream, port=port, token=STATIC))
    p, _ = start(["haproxy", "-db", "-f", conf], "haproxy", work)
    procs.append(p)
    wait_port(port, p, "haproxy", work)
    contenders["haproxy"] = {"url": f"http://127.0.0.1:{port}", "proc": p}

    bins = [("ours", a.bin)] + ([("old", a.old)] if a.old else [])
    for name, binary in bins:
        home = os.path.join(work, f"home-{name}")
        os.makedirs(home, mode=0o700)
        jwt_file = os.path.join(home, "identity-token")
        # A fresh JWT in the file every few seconds, as a projected token would be.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home}
        p, base = start([binary, "proxy", "--listen", "127.0.0.1:0", "--quiet", "--base-url", up_base,
                         "--federation-rule-id", RULE, "--organization-id", ORG, "--identity-token-file", jwt_file],
                        name, work, env=env, ready_line=True)
        contenders[name] = {"url": base, "proc": p, "jwt": jwt_file}
        procs.append(p)
    import threading
    import urllib.request
    stop = threading.Event()

    def rotate():
        while not stop.is_set():
            for c in contenders.values():
                if "jwt" in c:
                    req = urllib.request.Request(emu_base + "/_emulator/jwt", data=b"{}",
                                                 headers={"content-type": "application/json"})
                    jwt = json.load(urllib.request.urlopen(req))["jwt"]
                    tmp = c["jwt"] + ".tmp"
                    with open(tmp, "w") as f:
                        f.write(jwt)
                    os.replace(tmp, c["jwt"])
            stop.wait(5)

    t = threading.Thread(target=rotate, daemon=True)
    t.start()
    for name, c in contenders.items():
        if "jwt" in c:
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(c["url"] + "/healthz").status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            else:
                raise SystemExit(f"{name} is not ready after 20 s; see {work}/{name}.log")
        c["pids"] = (lambda p: (lambda: pids_of(p.pid)))(c["proc"]) if "proc" in c else c["pids"]
        c["cpu"], c["n"] = 0, 0
        wrk(c["url"] + "/v1/messages", 16, 1, c.get("auth"))  # warm-up
        c["cpu"], c["n"] = 0, 0

    results = {name: {n: [] for n in conns} for name in contenders}
    emulator_rps = {n: [] for n in conns}
    for r in range(a.rounds):
        for n in conns:
            emulator_rps[n].append(wrk(emu_base + "/v1/messages", n, a.secs, f"Bearer {emu_token}"))
            for name, c in contenders.items():
                pids = c["pids"]()
                before = cpu_ticks(pids)
                res = wrk(c["url"] + "/v1/messages", n, a.secs, c.get("auth"))
                c["cpu"] += cpu_ticks(pids) - before
                c["n"] += res["n"]
                results[name][n].append(res)
    sse_res = {}
    for name, c in contenders.items():
        sse_res[name] = sse(os.path.join(a.examples, "bench_sse"), c["url"] + "/v1/messages",
                            16, 2 if a.quick else 10, bool(c.get("auth")))
    stop.set()
    load_after = loadavg()
    rss = {name: peak_rss_kib(c["pids"]()) for name, c in contenders.items()}
    emu_stats = json.load(urllib.request.urlopen(emu_base + "/_emulator/stats"))

    med = lambda xs, k: statistics.median(x[k] for x in xs)
    print(f"\n# proxy_vs: {a.rounds} round(s) x {a.secs:g} s per cell, wrk -t1 on CPU {LOAD_CPU}; "
          f"servers on CPU {SERVER_CPU}; load average {load_before} before, {load_after} after")
    names = list(contenders)
    head = "| connections | " + " | ".join(names) + " | ours/nginx |"
    sep = "|---" * (len(names) + 2) + "|"
    print("\n## requests/s (median)\n" + head + "\n" + sep)
    for n in conns:
        row = [med(results[k][n], "rps") for k in names]
        ratio = med(results["ours"][n], "rps") / med(results["nginx"][n], "rps")
        print(f"| {n} | " + " | ".join(f"{v:,.0f}" for v in row) + f" | {ratio:.2f} |")
    print("\nthe emulator's Messages API called directly (reference: is it fast enough as the upstream?): "
          + ", ".join(f"{n} conns {med(emulator_rps[n], 'rps'):,.0f}/s" for n in conns))
    for q in ("p50", "p99"):
        print(f"\n## added latency {q} over direct, ms (median of rounds; direct's own {q} in its column)")
        print(head + "\n" + sep)
        for n in conns:
            d = med(results["direct"][n], q)
            cells = [f"{d:.3f}"] + [f"{med(results[k][n], q) - d:+.3f}" for k in names[1:]]
            on, oo = med(results["nginx"][n], q) - d, med(results["ours"][n], q) - d
            ratio = f"{oo / on:.2f}" if on > 0.0005 else "n/a"
            print(f"| {n} | " + " | ".join(cells) + f" | {ratio} |")
    print("\n## cost\n| | " + " | ".join(names[1:]) + " | ours/nginx |\n" + "|---" * (len(names) + 1) + "|")
    cpu = {k: contenders[k]["cpu"] / TICK / max(contenders[k]["n"], 1) * 10_000 for k in names[1:]}
    print("| CPU s per 10 000 requests | " + " | ".join(f"{cpu[k]:.3f}" for k in names[1:])
          + f" | {cpu['ours'] / cpu['nginx']:.2f} |")
    print("| peak RSS, MiB | " + " | ".join(f"{rss[k] / 1024:.1f}" for k in names[1:])
          + f" | {rss['ours'] / max(rss['nginx'], 1):.2f} |")
    print("\n## SSE: 16 concurrent streams of 10 events 20 ms apart, ms\n| | " + " | ".join(names)
          + " | ours/nginx |\n" + "|---" * (len(names) + 2) + "|")
    for key, label in (("ttfe_p50_ms", "time to first event p50"), ("ttfe_p99_ms", "time to first event p99"),
                       ("gap_p50_ms", "gap between events p50"), ("gap_p99_ms", "gap between events p99")):
        vals = [sse_res[k][key] for k in names]
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in vals)
              + f" | {sse_res['ours'][key] / sse_res['nginx'][key]:.2f} |")
    failed = {k: sum(r["errors"] for n in conns for r in results[k][n]) + sse_res[k]["failed"] for k in names}
    failed["emulator"] = sum(r["errors"] for n in conns for r in emulator_rps[n])
    print(f"\nfailed requests/streams: {failed}; token exchanges during the run: {emu_stats['exchanges']}")
    if a.json:
        json.dump({"results": results, "emulator": emulator_rps, "sse": sse_res, "cpu_per_10k": cpu, "rss_kib": rss, "failed": failed,
                   "load": [load_before, load_after]}, open(a.json, "w"), indent=1)
    if any(failed.values()):
        raise SystemExit("some requests failed: the figures above are not comparable")


if __name__ == "__main__":
    main()
