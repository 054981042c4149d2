"""The credential-process CLI against the official Python SDK, side by side in one run.

For each, on the same profile against the local emulator:
- cache hit: a process that finds an unexpired token in credentials/<profile>.json;
- cold exchange: a process that finds no cache and exchanges a fresh identity token.
Reports medians, peak RSS and ratios. Run via `bash bench/run.sh` (builds release first).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Emulator, fmt_ms, median, release_bin, run_measured  # noqa: E402

N_HIT_CLI = int(os.environ.get("BENCH_N_HIT_CLI", "200"))
N_HIT_SDK = int(os.environ.get("BENCH_N_HIT_SDK", "20"))
N_COLD_CLI = int(os.environ.get("BENCH_N_COLD_CLI", "50"))
N_COLD_SDK = int(os.environ.get("BENCH_N_COLD_SDK", "15"))

SDK_SNIPPET = (
    "from anthropic.lib.credentials import CredentialsFile\n"
    "t = CredentialsFile('bench')()\n"
    "print(t.expires_at)\n"
)


def main() -> None:
    emu = Emulator()
    tmp = Path(tempfile.mkdtemp(prefix="wif-bench-"))
    try:
        cfg = tmp / "config"
        (cfg / "configs").mkdir(parents=True)
        (tmp / "home").mkdir()
        ident = tmp / "identity-token"
        profile = {
            "version": "1.0",
            "organization_id": "00000000-0000-4000-8000-000000000001",
            "base_url": emu.base_url,
            "authentication": {
                "type": "oidc_federation",
                "federation_rule_id": "fdrl_01BenchRule000000000000000",
                "service_account_id": "svac_01BenchServiceAccount0000000",
                "identity_token": {"source": "file", "path": str(ident)},
            },
        }
        (cfg / "configs" / "bench.json").write_text(json.dumps(profile))
        os.chmod(cfg / "configs" / "bench.json", 0o600)
        creds = cfg / "credentials" / "bench.json"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp / "home"),
            "ANTHROPIC_CONFIG_DIR": str(cfg),
            "ANTHROPIC_PROFILE": "bench",
            "XDG_CACHE_HOME": str(tmp / "cache"),
        }
        cli = [str(release_bin()), "token", "--profile", "bench"]
        sdk = [sys.executable, "-c", SDK_SNIPPET]

        def cold(argv: list[str], n: int) -> tuple[list[float], int]:
            times, rss = [], 0
            for _ in range(n):
                ident.write_text(emu.jwt())
                creds.unlink(missing_ok=True)
                t, r = run_measured(argv, env)
                times.append(t)
                rss = max(rss, r)
            return times, rss

        def hit(argv: list[str], n: int) -> tuple[list[float], int]:
            ident.write_text(emu.jwt())
            creds.unlink(missing_ok=True)
            run_measured(cli, env)  # one exchange writes the shared cache
            before = emu.stats()["exchanges"]
            times, rss = [], 0
            for _ in range(n):
                t, r = run_measured(argv, env)
                times.append(t)
                rss = max(rss, r)
            if emu.stats()["exchanges"] != before:
                raise SystemExit("a cache-hit run exchanged: the benchmark is not measuring cache hits")
            return times, rss

        hit_cli, rss_hit_cli = hit(cli, N_HIT_CLI)
        hit_sdk, rss_hit_sdk = hit(sdk, N_HIT_SDK)
        cold_cli, rss_cold_cli = cold(cli, N_COLD_CLI)
        cold_sdk, rss_cold_sdk = cold(sdk, N_COLD_SDK)
    finally:
        emu.close()

    import anthropic  # noqa: PLC0415  (only for the version line)

    print(f"CLI (anthropic-wif, release) vs official Python SDK {anthropic.__version__} CredentialsFile, same profile, emulator on loopback")
    print(f"{'case':<28}{'anthropic-wif':>14}{'python SDK':>14}{'ratio':>10}   peak RSS (wif / SDK)")
    rows = [
        ("cache hit, whole process", hit_cli, hit_sdk, rss_hit_cli, rss_hit_sdk),
        ("cold exchange, whole process", cold_cli, cold_sdk, rss_cold_cli, rss_cold_sdk),
    ]
    for name, a, b, ra, rb in rows:
        ma, mb = median(a), median(b)
        print(f"{name:<28}{fmt_ms(ma):>14}{fmt_ms(mb):>14}{mb / ma:>9.0f}x   {ra / 1024:.1f} MiB / {rb / 1024:.1f} MiB")
    print(f"(medians of {N_HIT_CLI}/{N_HIT_SDK} cache-hit and {N_COLD_CLI}/{N_COLD_SDK} cold runs)")
    print("targets: cache hit <= 3 ms and >= 300x faster than the SDK process; peak RSS <= 10 MiB; cold <= 15 ms")


if __name__ == "__main__":
    main()
