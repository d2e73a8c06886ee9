"""requests-oauth2client as an independent DPoP client of keybound.

For crates/keybound-cli/tests/interop_clients.rs:

    python client.py ISSUER CLIENT_ID CLIENT_SECRET API_URL

RFC 8414 discovery, a fresh ES256 DPoPKey, client credentials with client_secret_basic and
dpop=True (the library answers `use_dpop_nonce` itself: it reads DPoP-Nonce and signs a new
proof), then GET API_URL through requests with the DPoPToken as the auth handler (it adds the
`Authorization: DPoP` header and a proof with `ath`, and retries itself if the resource server
asks for a nonce). The HTTP exchanges are watched in the session's transport adapter, only
to count the nonce challenges. Prints one JSON line:
    {token_type, access_token, jkt_in_token, jkt, public_jwk, token_nonce_retries,
     api_nonce_retries, api_status, api_body}
Any other failure exits 1 with a traceback on stderr.

keybound runs on http://127.0.0.1 in the test: requests-oauth2client refuses non-https issuer
and endpoint URLs unless `testing=True`, which is passed here, and only for loopback URLs.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests_oauth2client import ClientSecretBasic, DPoPKey, DPoPToken, OAuth2Client

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def jwt_payload(jwt: str) -> dict:
    """The payload of a JWT, decoded (no signature check: the test checks the token)."""
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def main() -> int:
    if len(sys.argv) != 5:
        print("usage: python client.py ISSUER CLIENT_ID CLIENT_SECRET API_URL", file=sys.stderr)
        return 2
    issuer, client_id, client_secret, api_url = sys.argv[1:]
    if urlsplit(issuer).hostname not in LOOPBACK or urlsplit(api_url).hostname not in LOOPBACK:
        print(f"testing=True is only used against loopback: refusing {issuer} {api_url}", file=sys.stderr)
        return 2

    # Count the nonce challenges (a 400 use_dpop_nonce from the token endpoint, a 401 with
    # `DPoP error="use_dpop_nonce"` from the resource server) where every exchange passes: in
    # the transport adapter. A session hook would miss the resource server's, because the
    # DPoPToken's own response hook resends the request and hands later hooks the new response.
    seen = {"token": 0, "api": 0}

    class CountingAdapter(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            response = super().send(request, *args, **kwargs)
            if response.status_code == 400 and "use_dpop_nonce" in response.text:
                seen["token"] += 1
            challenge = response.headers.get("WWW-Authenticate", "")
            if response.status_code == 401 and 'error="use_dpop_nonce"' in challenge:
                seen["api"] += 1
            return response

    session = requests.Session()
    session.mount("http://", CountingAdapter())

    oauth2client = OAuth2Client.from_discovery_endpoint(
        url=f"{issuer}/.well-known/oauth-authorization-server",
        issuer=issuer,
        auth=ClientSecretBasic(client_id, client_secret),
        session=session,
        testing=True,
    )
    dpop_key = DPoPKey.generate(alg="ES256")
    token = oauth2client.client_credentials(dpop=True, dpop_key=dpop_key)
    if not isinstance(token, DPoPToken):
        print(f"not a DPoP token: {token!r}", file=sys.stderr)
        return 1

    response = session.get(api_url, auth=token, headers={"Accept": "application/json"})
    try:
        api_body = response.json()
    except ValueError:
        api_body = response.text

    print(
        json.dumps(
            {
                "token_type": token.token_type,
                "access_token": token.access_token,
                "jkt_in_token": jwt_payload(token.access_token).get("cnf", {}).get("jkt"),
                "jkt": dpop_key.dpop_jkt,
                "public_jwk": dict(dpop_key.public_jwk),
                "token_nonce_retries": seen["token"],
                "api_nonce_retries": seen["api"],
                "api_status": response.status_code,
                "api_body": api_body,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
