"""A small OpenID Provider on a loopback port that puts a flaw into its next ID token.

The npm oidc-provider is certified and so never mints a bad token; the refusal tests need
one. `FlawedOp(redirect_uri=..., users={...}).start()` serves discovery, a JWKS with one RSA
key, an authorization endpoint that signs in `login` at once (no forms), a token endpoint
(client_secret_basic, PKCE S256 checked) and userinfo, from stdlib `http.server` in a
thread; `stop()` shuts it down and joins the thread.

`spoil(...)` arms the next token: claims to override (`iss`, `aud`, `azp`, `exp`, `iat`,
...), how to sign it (`signing="other_key"` signs with another key under the known key id,
`"none"` sends an unsigned token, `"hs256_public_key"` an HMAC keyed with the public key PEM)
and claims userinfo answers differently (`userinfo={"sub": ...}`). The flaw is used once.
"""

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "kursa-flawed"
CLIENT_SECRET = "flawed-op-client-secret"
KEY_ID = "flawed-op-key-1"


@dataclass
class Flaw:
    claims: dict = field(default_factory=dict)
    signing: str = "good"  # good | other_key | none | hs256_public_key
    userinfo: dict = field(default_factory=dict)


@dataclass
class _Grant:
    login: str
    nonce: str
    challenge: str
    redirect_uri: str
    flaw: Flaw


class FlawedOp:
    def __init__(self, *, redirect_uri: str, users: dict[str, dict]):
        self.redirect_uri = redirect_uri
        self.users = users
        self.client_id, self.client_secret = CLIENT_ID, CLIENT_SECRET
        self.key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID})
        self._flaw = Flaw()
        self._grants: dict[str, _Grant] = {}  # code -> grant
        self._tokens: dict[str, _Grant] = {}  # access token -> grant
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.issuer = ""
        self.discovery_url = ""

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> "FlawedOp":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self._thread = threading.Thread(target=self._server.serve_forever, name="flawed-op")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    # --- what a test controls ----------------------------------------------------------------

    def spoil(self, *, signing: str = "good", userinfo: dict | None = None, **claims) -> None:
        """Put this flaw into the token minted for the next authorization."""
        with self._lock:
            self._flaw = Flaw(dict(claims), signing, dict(userinfo or {}))

    def authorize(self, location: str, browser) -> str:
        """Open the authorization address (as the browser would) and return the redirect
        back to the relying party, without following it."""
        answer = browser.get(location, allow_redirects=False, timeout=5)
        assert answer.status_code == 302, answer.text
        return answer.headers["Location"]

    # --- the endpoints -----------------------------------------------------------------------

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def jwks(self) -> dict:
        return {"keys": [self.key.as_dict(private=False)]}

    def grant(self, query: dict[str, str]) -> tuple[int, str]:
        """The authorization endpoint: (status, redirect or error text)."""
        if query.get("client_id") != CLIENT_ID or query.get("redirect_uri") != self.redirect_uri:
            return 400, "unknown client or redirect_uri"
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 400, "code flow with PKCE S256 only"
        login = query.get("login_hint") or next(iter(self.users))
        code = secrets.token_urlsafe(24)
        with self._lock:
            flaw, self._flaw = self._flaw, Flaw()
            self._grants[code] = _Grant(
                login, query.get("nonce", ""), query["code_challenge"], query["redirect_uri"], flaw
            )
        answer = urlencode({"code": code, "state": query.get("state", "")})
        return 302, f"{self.redirect_uri}?{answer}"

    def token(self, authorization: str, form: dict[str, str]) -> tuple[int, dict]:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if not hmac.compare_digest(authorization, f"Basic {expected}"):
            return 401, {"error": "invalid_client"}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant"}
        if _b64(hashlib.sha256(verifier.encode()).digest()) != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        access = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[access] = grant
        body = {"access_token": access, "token_type": "Bearer", "expires_in": 300}
        return 200, {**body, "id_token": self._id_token(grant)}

    def userinfo(self, authorization: str) -> tuple[int, dict]:
        with self._lock:
            grant = self._tokens.get(authorization.removeprefix("Bearer "))
        if grant is None:
            return 401, {"error": "invalid_token"}
        return 200, {"sub": _subject(grant.login), **self.users[grant.login], **grant.flaw.userinfo}

    def _id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": _subject(grant.login),
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": grant.nonce,
            **grant.flaw.claims,
        }
        signing = grant.flaw.signing
        if signing == "good":
            return jwt.encode({"alg": "RS256", "kid": KEY_ID}, claims, self.key)
        if signing == "other_key":
            return jwt.encode({"alg": "RS256", "kid": KEY_ID}, claims, self.other_key)
        if signing == "none":
            return _compact({"alg": "none", "kid": KEY_ID}, claims, lambda _: b"")
        if signing == "hs256_public_key":
            secret = self.key.as_pem(private=False)
            mac = lambda data: hmac.new(secret, data, hashlib.sha256).digest()  # noqa: E731
            return _compact({"alg": "HS256", "kid": KEY_ID}, claims, mac)
        raise ValueError(f"unknown signing flaw {signing!r}")


def _subject(login: str) -> str:
    return f"sub-{login}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict, claims: dict, sign) -> str:
    """A compact JWS made by hand, so no library refuses to make a bad one."""
    signing_input = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _handler(op: FlawedOp):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            if parts.path == "/.well-known/openid-configuration":
                self._json(200, op.discovery())
            elif parts.path == "/jwks":
                self._json(200, op.jwks())
            elif parts.path == "/authorize":
                status, text = op.grant(query)
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", text)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif parts.path == "/userinfo":
                self._json(*op.userinfo(self.headers.get("Authorization", "")))
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path == "/token":
                self._json(*op.token(self.headers.get("Authorization", ""), form))
            else:
                self._json(404, {"error": "not_found"})

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # the test output stays quiet
            pass

    return Handler
