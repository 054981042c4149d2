#!/usr/bin/env python3
"""Instructions per forwarded request, counted by valgrind's callgrind (run by bench/proxy_callgrind.sh).

Wall-clock figures on a shared 2-core machine move with every neighbour; instruction counts do not. Each
contender runs under `valgrind --tool=callgrind` twice, in front of the same upstream as bench/proxy_vs.py
(`bench_upstream`, not under valgrind) with `h2load --h1 -c 16` POSTing the same Messages body: once for
LOW requests, once for HIGH. Per request = (I(HIGH) - I(LOW)) / (HIGH - LOW), which cancels start-up,
the token exchange and shut-down. Ours gets a one-hour token from the emulator (relayed by the upstream)
before the counted requests, so no exchange or refresh falls between LOW and HIGH. nginx (with --nginx)
runs with `master_process off` so the one process under callgrind is the worker.

Prints one line per contender and, with --annotate DIR, keeps the HIGH run's callgrind file there for
`callgrind_annotate`.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_vs  # noqa: E402  (same body, headers, upstream, start-up helpers)

LOW_CPU, SERVER_CPU = proxy_vs.LOAD_CPU, proxy_vs.SERVER_CPU


def h2load(url, n, body_path, auth=None):
    cmd = ["taskset", "-c", LOW_CPU, "h2load", "--h1", "-c", "16", "-n", str(n), "-d", body_path,
           "-H", "content-type: application/json", "-H", "anthropic-version: 2023-06-01"]
    cmd += ["-H", f"authorization: {auth}", "-H", "anthropic-beta: oauth-2025-04-20"] if auth else \
        ["-H", "x-api-key: placeholder"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=900).stdout
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not m or int(m.group(1)) != n:
        raise SystemExit(f"h2load against {url}: not every request got a 2xx:\n{out}")


def total_ir(path):
    for line in open(path):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def wait_healthy(url, proc, log, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exited ({proc.returncode}) before it was ready:\n{open(log).read()}")
        try:
            if urllib.request.urlopen(url, timeout=5).status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s; see {log}")


def under_callgrind(cmd, out, log, env=None):
    vg = ["taskset", "-c", SERVER_CPU, "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    return subprocess.Popen(vg + cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), env=env,
                            start_new_session=True)


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit("a contender did not stop within 120 s of SIGTERM")


def count_ours(a, n, work, up_base, emu_base, body_path):
    home = tempfile.mkdtemp(prefix="home-", dir=work)
    jwt_file = os.path.join(home, "identity-token")
    jwt = proxy_vs.post_json(emu_base + "/_emulator/jwt", {"ttl": 3600})["jwt"]
    open(jwt_file, "w").write(jwt)
    out, log = os.path.join(work, f"ours-{n}.cg"), os.path.join(work, f"ours-{n}.log")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": home}
    p = under_callgrind([a.bin, "proxy", "--listen", "127.0.0.1:0", "--quiet", "--base-url", up_base,
                         "--federation-rule-id", proxy_vs.RULE, "--organization-id", proxy_vs.ORG,
                         "--identity-token-file", jwt_file], out, log, env)
    try:
        line = p.stdout.readline().decode()
        base = proxy_vs.json.loads(line)["base_url"]
        wait_healthy(base + "/healthz", p, log)
        h2load(base + "/v1/messages", n, body_path)
    finally:
        stop(p)
    return out, total_ir(out)


def count_nginx(n, work, upstream, body_path):
    port = proxy_vs.free_port()
    d = tempfile.mkdtemp(prefix="nginx-", dir=work)
    conf = os.path.join(d, "nginx.conf")
    open(conf, "w").write("master_process off;\n" + proxy_vs.NGINX_CONF.format(
        dir=d, upstream=upstream, port=port, token=proxy_vs.STATIC))
    out, log = os.path.join(work, f"nginx-{n}.cg"), os.path.join(work, f"nginx-{n}.log")
    p = under_callgrind(["nginx", "-p", d, "-c", conf], out, log)
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if p.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"nginx did not start under callgrind; see {log}")
                time.sleep(0.2)
        h2load(f"http://127.0.0.1:{port}/v1/messages", n, body_path)
    finally:
        stop(p)
    return out, total_ir(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="anthropic-wif (release)")
    ap.add_argument("--emulator", required=True, help="wif-emulator (release)")
    ap.add_argument("--examples", required=True, help="directory with bench_upstream")
    ap.add_argument("--nginx", action="store_true", help="also count nginx's worker")
    ap.add_argument("--low", type=int, default=500)
    ap.add_argument("--high", type=int, default=4500)
    ap.add_argument("--annotate", help="keep the HIGH runs' callgrind files in this directory")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="proxy-cg-")
    procs = []
    try:
        emu, emu_base = proxy_vs.start([a.emulator, "--listen", "127.0.0.1:0", "--token-lifetime", "3600"],
                                       "emulator", work, ready_line=True)
        procs.append(emu)
        up, up_base = proxy_vs.start([os.path.join(a.examples, "bench_upstream"), "--token-base", emu_base],
                                     "upstream", work, ready_line=True)
        procs.append(up)
        body_path = os.path.join(work, "body.json")
        open(body_path, "w").write(proxy_vs.BODY)
        rows = []
        contenders = [("ours", lambda n: count_ours(a, n, work, up_base, emu_base, body_path))]
        if a.nginx:
            upstream = up_base.removeprefix("http://")
            contenders.append(("nginx", lambda n: count_nginx(n, work, upstream, body_path)))
        for name, count in contenders:
            _, low = count(a.low)
            high_file, high = count(a.high)
            per = (high - low) / (a.high - a.low)
            rows.append((name, per))
            print(f"{name}: {per:,.0f} instructions per forwarded request "
                  f"(I({a.high}) = {high:,}, I({a.low}) = {low:,})", flush=True)
            if a.annotate:
                os.makedirs(a.annotate, exist_ok=True)
                shutil.copy(high_file, os.path.join(a.annotate, f"{name}-{a.high}.cg"))
        if a.nginx:
            print(f"ours/nginx: {rows[0][1] / rows[1][1]:.2f}")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
