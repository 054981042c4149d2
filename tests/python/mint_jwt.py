"""Identity-token command for the tests: ask the emulator for a fresh JWT
(each has a unique jti, as a real identity provider's would) and print it.

Usage: python mint_jwt.py BASE_URL [COUNTER_FILE]
With COUNTER_FILE, append one line per run so tests can count identity fetches.
"""

import json
import sys
import urllib.request


def main() -> int:
    base_url = sys.argv[1].rstrip("/")
    req = urllib.request.Request(
        f"{base_url}/_emulator/jwt",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        jwt = json.loads(resp.read())["jwt"]
    if len(sys.argv) > 2:
        with open(sys.argv[2], "a") as f:
            f.write("fetch\n")
    sys.stdout.write(jwt + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
