"""Conformance driver, Python face: `python drive.py OPTIONS_JSON` builds
`anthropic_wif.Provider(**options)`, asks it for a token once, and prints one
JSON line: {"ok": true, "expires_at": …, "token": …} or {"ok": false, "kind":
…, "message": …}, plus "module": where anthropic_wif was imported from (the
runner checks it is the installed package). Run by tests/conformance/test_conformance.py."""

import json
import sys


def main() -> None:
    options = json.loads(sys.argv[1])
    import anthropic_wif

    out = {"module": anthropic_wif.__file__}
    try:
        token = anthropic_wif.Provider(**options)()
        out.update(ok=True, token=token.token, expires_at=token.expires_at)
    except anthropic_wif.WifError as err:
        out.update(ok=False, kind=err.kind, message=str(err))
    print(json.dumps(out))


main()
