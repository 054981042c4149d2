#!/usr/bin/env python3
"""Endurance and fault soak of `anthropic-wif proxy` (run by scripts/soak.sh; loopback only, bounded).

Set-up: the emulator (token endpoint and Messages API, checking every bearer) with short-lived tokens,
reached by the proxy through a TCP relay that stands for the upstream's network address (so "the
upstream restarts" without the emulator forgetting the tokens it minted); a fresh identity JWT is
written to the proxy's identity file every second, as a projected token would be.

Phase 1, endurance: steady non-streaming load (4 keep-alive clients, 10 requests/s each) plus 4 SSE
streams at a time, each lasting about 3/4 of a token's lifetime so that every stream spans rotations. RSS
and open descriptors of the proxy are sampled every 5 s. Pass: no failed request or stream, no 401
upstream or at a client, one exchange per rotation (every token request an exchange, as many as the
rotation period predicts), RSS and descriptors flat (least-squares slopes after a warm-up minute).

Phase 2, faults, under the same load: the token endpoint answers 503 for `--outage` seconds, then
recovers; then the upstream relay is restarted twice. Pass: no 503 while the token in hand had more
than the mandatory window left; 503s (fail closed) once it had less; the proxy ready again without help
within the longest back-off after the endpoint recovers; after each upstream restart, requests succeed
again within 5 s and failures stay inside the restart window.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

RULE = "fdrl_01TestRule000000000000000"
ORG = "00000000-0000-4000-8000-000000000001"
BODY = json.dumps({"model": "claude-soak", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = json.dumps({"model": "claude-soak", "max_tokens": 16, "stream": True,
                          "messages": [{"role": "user", "content": "hi"}]})
BACKOFF_CAP = 30  # core's REFRESH_FAILURE_BACKOFF_SECONDS: the proxy's longest wait between attempts


# ---------------------------------------------------------------------------------------------------------
# The relay: a restartable stand-in for the upstream's address.

def relay_main(listen_port: int, target_port: int) -> None:
    import asyncio

    async def pipe(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                w.close()
            except OSError:
                pass

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------------------

def ready_line(p: subprocess.Popen) -> dict:
    line = p.stdout.readline()
    if not line:
        raise SystemExit(f"{p.args[:2]} exited before it was ready")
    return json.loads(line)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class World:
    def __init__(self, a, work: str):
        self.a, self.work = a, work
        self.t0 = time.monotonic()
        self.emu = subprocess.Popen(
            [a.emulator, "--listen", "127.0.0.1:0", "--token-lifetime", str(a.lifetime),
             "--stream-delay-ms", "1000", "--stream-deltas", str(self.stream_deltas)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.emu_url = ready_line(self.emu)["base_url"]
        self.emu_port = int(self.emu_url.rsplit(":", 1)[1])
        self.relay_port = free_port()
        self.relay = None
        self.start_relay()
        self.jwt_file = os.path.join(work, "identity-token")
        self.rotate_jwt()
        self.proxy_log = open(os.path.join(work, "proxy.log"), "w+")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": work}
        self.proxy = subprocess.Popen(
            [a.bin, "proxy", "--listen", "127.0.0.1:0", "--log-format", "json", "--quiet",
             "--base-url", f"http://127.0.0.1:{self.relay_port}", "--federation-rule-id", RULE,
             "--organization-id", ORG, "--identity-token-file", self.jwt_file],
            stdout=subprocess.PIPE, stderr=self.proxy_log, text=True, env=env)
        self.url = ready_line(self.proxy)["base_url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[tuple[float, int, str]] = []  # (t, status or 0, detail)
        self.streams: list[tuple[float, float, int, bool, str]] = []  # (start, end, status, complete, detail)
        self.samples: list[tuple[float, int, int]] = []  # (t, rss KiB, fds)
        self.metrics: list[tuple[float, dict]] = []

    @property
    def stream_deltas(self) -> int:
        return max(3, self.a.lifetime * 3 // 4)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start_relay(self) -> None:
        self.relay = subprocess.Popen([sys.executable, __file__, "--relay", str(self.relay_port), str(self.emu_port)],
                                      stdout=subprocess.PIPE, text=True)
        assert self.relay.stdout.readline().strip() == "ready"

    def restart_relay(self, gap: float) -> None:
        self.relay.kill()
        self.relay.wait()
        time.sleep(gap)
        self.start_relay()

    def control(self, path: str, body: dict | None = None, method: str | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.emu_url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def rotate_jwt(self) -> None:
        tmp = self.jwt_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.control("/_emulator/jwt", {})["jwt"])
        os.replace(tmp, self.jwt_file)

    def scrape(self) -> dict:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, v = line.rsplit(" ", 1)
                    out[k] = float(v)
            return out

    # -- load -------------------------------------------------------------------------------------------
    def rotator(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.rotate_jwt()
            except OSError:
                pass

    def requester(self, rate: float) -> None:
        conn = None
        period = 1.0 / rate
        nxt = time.monotonic()
        while not self.stop.is_set():
            nxt += period
            t = self.now()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/v1/messages", BODY, {"content-type": "application/json",
                                                            "x-api-key": "placeholder"})
                r = conn.getresponse()
                body = r.read()
                detail = "" if r.status == 200 else body[:200].decode(errors="replace")
                with self.lock:
                    self.requests.append((t, r.status, detail))
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.requests.append((t, 0, f"{type(e).__name__}: {e}"))
                conn = None
            time.sleep(max(0.0, nxt - time.monotonic()))

    def streamer(self) -> None:
        while not self.stop.is_set():
            t = self.now()
            status, complete, detail, deltas = 0, False, "", 0
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/v1/messages", STREAM_BODY, {"content-type": "application/json",
                                                                   "x-api-key": "placeholder"})
                r = conn.getresponse()
                status = r.status
                if status == 200:
                    for line in r:
                        if line.startswith(b"event: content_block_delta"):
                            deltas += 1
                        elif line.startswith(b"event: message_stop"):
                            complete = deltas == self.stream_deltas
                            break
                    if not complete:
                        detail = f"ended after {deltas} of {self.stream_deltas} deltas"
                else:
                    detail = r.read()[:200].decode(errors="replace")
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                detail = f"{type(e).__name__}: {e}"
            with self.lock:
                self.streams.append((t, self.now(), status, complete, detail))
            if status != 200:
                self.stop.wait(1.0)

    def sampler(self) -> None:
        while not self.stop.is_set():
            try:
                status = open(f"/proc/{self.proxy.pid}/status").read()
                rss = int(status.split("VmRSS:")[1].split()[0])
                fds = len(os.listdir(f"/proc/{self.proxy.pid}/fd"))
                with self.lock:
                    self.samples.append((self.now(), rss, fds))
                self.metrics.append((self.now(), self.scrape()))
            except (OSError, ValueError, IndexError):
                pass
            self.stop.wait(5.0)

    def start_load(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.rotator, daemon=True),
                   threading.Thread(target=self.sampler, daemon=True)]
        threads += [threading.Thread(target=self.requester, args=(10.0,), daemon=True) for _ in range(4)]
        threads += [threading.Thread(target=self.streamer, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        return threads

    def close(self) -> None:
        self.stop.set()
        for p in (self.proxy, self.relay, self.emu):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    p.kill()


def slope_per_min(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 3:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    return 0.0 if var == 0 else sum((p[0] - mx) * (p[1] - my) for p in points) / var * 60.0


def wait_ready(w: World, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(w.url + "/healthz", timeout=5).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the proxy did not become ready")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--relay":
        relay_main(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the anthropic-wif binary (its proxy)")
    ap.add_argument("--emulator", required=True, help="the wif-emulator binary")
    ap.add_argument("--minutes", type=float, default=25, help="endurance phase length")
    ap.add_argument("--lifetime", type=int, default=60, help="access token lifetime, seconds")
    ap.add_argument("--outage", type=float, default=120, help="token endpoint outage, seconds")
    ap.add_argument("--restarts", type=int, default=2, help="upstream restarts in the fault phase")
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--short", action="store_true", help="CI: ~2 minutes (1 min endurance, 20 s tokens, 30 s outage)")
    a = ap.parse_args()
    if a.short:
        a.minutes, a.lifetime, a.outage = 1, 20, 30
    work = tempfile.mkdtemp(prefix="wif-soak-")
    w = World(a, work)
    failures: list[str] = []
    try:
        wait_ready(w)
        w.start_load()
        print(f"== endurance: {a.minutes:g} min, {a.lifetime} s tokens, 40 requests/s + 4 streams of "
              f"{w.stream_deltas} s; proxy pid {w.proxy.pid}", flush=True)
        end = w.t0 + 60 * a.minutes
        while time.monotonic() < end:
            time.sleep(min(30, max(0.1, end - time.monotonic())))
            with w.lock:
                n, bad = len(w.requests), sum(1 for r in w.requests if r[1] != 200)
                s = w.samples[-1] if w.samples else (0, 0, 0)
            print(f"   t={w.now():6.0f} s  requests {n} (failed {bad}), streams {len(w.streams)}, "
                  f"RSS {s[1]} KiB, fds {s[2]}", flush=True)
        t_end = w.now()
        with w.lock:
            reqs, streams, samples = list(w.requests), list(w.streams), list(w.samples)
        stats = w.control("/_emulator/stats")
        m = w.scrape()
        bad = [r for r in reqs if r[1] != 200]
        bad_streams = [s for s in streams if s[1] <= t_end and not (s[2] == 200 and s[3])]
        done_streams = [s for s in streams if s[1] <= t_end]
        warm = [s for s in samples if s[0] >= min(60, t_end / 3)]
        rss_slope = slope_per_min([(s[0], s[1]) for s in warm])
        fd_slope = slope_per_min([(s[0], s[2]) for s in warm])
        ok_exchanges = m.get('anthropic_wif_proxy_token_exchanges_total{outcome="ok"}', -1)
        # Rotation period: schedule() replaces a token (advisory - mandatory) s before its floor.
        adv, mand = min(120, a.lifetime // 2), min(30, a.lifetime // 4)
        floor = max(mand, min(300, a.lifetime // 2))
        period = a.lifetime - floor - max(1, adv - mand)
        expected = t_end / period + 1
        print(f"\n## endurance result ({t_end:.0f} s)")
        print(f"requests: {len(reqs)}, failed: {len(bad)}; streams completed: {len(done_streams)}, "
              f"failed: {len(bad_streams)}; 401s answered by upstream: {stats['messages_unauthorized']}")
        print(f"exchanges: {stats['exchanges']} (token requests {stats['token_requests']}, proxy's ok count "
              f"{ok_exchanges:.0f}); rotation every {period} s predicts {expected:.1f}")
        print(f"RSS: {warm[0][1] if warm else 0} -> {warm[-1][1] if warm else 0} KiB, slope {rss_slope:+.1f} KiB/min; "
              f"fds: {min((s[2] for s in warm), default=0)}..{max((s[2] for s in warm), default=0)}, "
              f"slope {fd_slope:+.2f}/min ({len(warm)} samples after warm-up)")
        for r in bad[:5]:
            failures.append(f"request at {r[0]:.1f} s: {r[1]} {r[2]}")
        for s in bad_streams[:5]:
            failures.append(f"stream at {s[0]:.1f} s: {s[2]} {s[4]}")
        if stats["messages_unauthorized"]:
            failures.append(f"{stats['messages_unauthorized']} requests reached upstream with a refused token (401)")
        if stats["exchanges"] != stats["token_requests"] or stats["exchanges"] != ok_exchanges:
            failures.append("token requests, exchanges and the proxy's tokens differ: not one exchange per rotation")
        if abs(stats["exchanges"] - expected) > 2:
            failures.append(f"{stats['exchanges']} exchanges where rotations predict {expected:.1f}")
        long_run = a.minutes >= 10
        if long_run and (rss_slope > 64 or fd_slope > 0.2):
            failures.append(f"not flat: RSS {rss_slope:+.1f} KiB/min, fds {fd_slope:+.2f}/min")
        if warm and max(s[2] for s in warm) - min(s[2] for s in warm) > 24:
            failures.append("open descriptors vary by more than 24")

        if not a.no_faults:
            failures += fault_phase(w, a)
    finally:
        w.close()
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures) + f"\n(proxy log: {work}/proxy.log)")
        return 1
    print("\nsoak passed")
    return 0


def fault_phase(w: World, a) -> list[str]:
    failures = []
    adv, mand = min(120, a.lifetime // 2), min(30, a.lifetime // 4)
    floor = max(mand, min(300, a.lifetime // 2))
    m = w.scrape()
    left = m.get("anthropic_wif_proxy_token_expires_in_seconds", 0)
    t_out = w.now()
    print(f"\n== faults: token endpoint answers 503 for {a.outage:g} s (token in hand: {left:.0f} s left, "
          f"floor {floor} s), then {a.restarts} upstream restarts", flush=True)
    w.control("/_emulator/faults", {"faults": [{"kind": "status", "status": 503, "count": 1_000_000,
                                                "endpoint": "token"}]})
    time.sleep(a.outage)
    w.control("/_emulator/faults", method="DELETE")
    t_back = w.now()
    deadline = time.monotonic() + BACKOFF_CAP + 15
    while time.monotonic() < deadline:
        if w.scrape().get("anthropic_wif_proxy_ready") == 1:
            break
        time.sleep(0.2)
    t_ready = w.now()
    restarts = []
    for _ in range(a.restarts):
        time.sleep(10)
        t = w.now()
        w.restart_relay(1.0)
        restarts.append((t, w.now()))
    time.sleep(10)
    t_end = w.now()
    with w.lock:
        reqs = [r for r in w.requests if t_out <= r[0] <= t_end]
    first_503 = next((r[0] for r in reqs if r[1] == 503), None)
    last_503 = max((r[0] for r in reqs if r[1] == 503), default=None)
    n503 = sum(1 for r in reqs if r[1] == 503)
    print("\n## fault result")
    unusable_at = t_out + left - floor
    print(f"outage {t_out:.0f}..{t_back:.0f} s; token unusable from {unusable_at:.0f} s; first 503 at "
          f"{first_503 if first_503 is None else round(first_503, 1)} s, last at "
          f"{last_503 if last_503 is None else round(last_503, 1)} s ({n503} in all); ready again at {t_ready:.1f} s "
          f"({t_ready - t_back:.1f} s after the endpoint recovered)")
    if first_503 is None:
        failures.append("no 503 during the token outage: the proxy did not fail closed (or the outage was too short)")
    elif first_503 < unusable_at - 1.5:
        failures.append(f"503 at {first_503:.1f} s, before the token in hand reached the floor ({unusable_at:.1f} s)")
    if t_ready - t_back > BACKOFF_CAP + 10:
        failures.append(f"not ready {t_ready - t_back:.0f} s after the token endpoint recovered")
    before_restarts = [r for r in reqs if r[1] not in (200, 503) and r[0] < (restarts[0][0] if restarts else t_end)]
    for r in before_restarts[:5]:
        failures.append(f"request at {r[0]:.1f} s during the outage: {r[1]} {r[2]}")
    late_503 = [r for r in reqs if r[1] == 503 and r[0] > t_ready + 1]
    if late_503:
        failures.append(f"{len(late_503)} 503s after the proxy was ready again")
    for i, (t0, t1) in enumerate(restarts):
        window = [r for r in reqs if t0 - 0.5 <= r[0] <= t1 + 5]
        bad = [r for r in window if r[1] != 200]
        after = [r for r in reqs if t1 + 5 < r[0] <= t1 + 9]
        outside = [r for r in reqs if t1 + 5 < r[0] <= (restarts[i + 1][0] if i + 1 < len(restarts) else t_end)
                   and r[1] != 200]
        print(f"upstream restart {i + 1} at {t0:.1f} s (down {t1 - t0:.1f} s): {len(bad)} failed requests "
              f"within 5 s ({', '.join(sorted({str(r[1]) for r in bad})) or 'none'}); then "
              f"{sum(1 for r in after if r[1] == 200)}/{len(after)} succeeded")
        if not after or any(r[1] != 200 for r in after) or outside:
            failures.append(f"no recovery within 5 s of upstream restart {i + 1}")
    return failures


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
