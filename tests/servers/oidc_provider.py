"""The npm package oidc-provider (8.8.1) as an external OpenID Provider on a free loopback port.

`OidcProviderServer(folder, redirect_uri=..., users={...}).start()` writes a config file (one
confidential client, a fresh RSA signing key, the users) into `folder`, starts
`node server.mjs` in its own session and waits until discovery answers; `stop()` ends it. The
package is installed once into tests/servers/oidc_provider/node_modules by `npm ci`.

`sign_in(location, login)` plays the browser: it opens the authorization address Kursa
redirected to, posts the provider's devInteractions login and consent forms and returns the
redirect back to Kursa's callback (without following it).
"""

import atexit
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from joserfc.jwk import RSAKey

from tests.servers.process import end_process, free_port, wait_until_ready

PACKAGE = Path(__file__).with_name("oidc_provider")
MODULE = PACKAGE / "node_modules" / "oidc-provider" / "package.json"
CLIENT_ID = "kursa"
CLIENT_SECRET = "kursa-test-client-secret"


def ensure_installed() -> None:
    if MODULE.exists():
        return
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for the external OpenID Provider (oidc-provider)")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PACKAGE, check=True, timeout=300)


class OidcProviderServer:
    def __init__(
        self,
        folder: Path,
        *,
        redirect_uri: str,
        users: dict[str, dict],
        post_logout_redirect_uri: str = "",
    ):
        self.folder = folder
        self.redirect_uri = redirect_uri
        self.post_logout_redirect_uri = post_logout_redirect_uri
        self.users = users
        self.client_id, self.client_secret = CLIENT_ID, CLIENT_SECRET
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.process: subprocess.Popen | None = None

    def start(self) -> "OidcProviderServer":
        ensure_installed()
        self.folder.mkdir(parents=True, exist_ok=True)
        key = RSAKey.generate_key(2048, parameters={"kid": "op-key-1", "use": "sig"})
        config = {
            "port": self.port,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": self.redirect_uri,
            "post_logout_redirect_uri": self.post_logout_redirect_uri,
            "jwks": {"keys": [key.as_dict(private=True)]},
            "users": self.users,
        }
        path = self.folder / "config.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        log = (self.folder / "op.log").open("wb")
        self.process = subprocess.Popen(
            ["node", str(PACKAGE / "server.mjs")],
            cwd=PACKAGE,
            env={"PATH": _path(), "OP_CONFIG": str(path)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        atexit.register(self.stop)
        self._wait()
        return self

    def _wait(self) -> None:
        wait_until_ready(
            self.process,
            lambda: requests.get(self.discovery_url, timeout=1).ok,
            name="oidc-provider",
            log=self.folder / "op.log",
        )

    def sign_in(self, location: str, login: str, browser: requests.Session | None = None) -> str:
        """Log in as `login` and consent; return the provider's redirect to Kursa's callback.

        Pass the same `browser` again to keep the provider's session (its cookies)."""
        session = browser if browser is not None else requests.Session()
        answer = session.get(location, allow_redirects=False, timeout=5)
        for _ in range(10):
            if answer.is_redirect:
                target = urljoin(answer.url, answer.headers["Location"])
                if target.startswith(self.redirect_uri):
                    return target
                answer = session.get(target, allow_redirects=False, timeout=5)
                continue
            answer.raise_for_status()
            action, fields = _form(answer.text)
            if fields.get("prompt") == "login":
                fields.update(login=login, password="any")
            answer = session.post(
                urljoin(answer.url, action), data=fields, allow_redirects=False, timeout=5
            )
        raise AssertionError(f"the provider never redirected back: {answer.text[:500]}")

    def sign_out(self, location: str, browser: requests.Session) -> str:
        """Follow the RP's logout address, confirm the provider's logout form, and return the
        redirect to the post-logout address (without following it)."""
        answer = browser.get(location, allow_redirects=False, timeout=5)
        answer.raise_for_status()
        action, fields = _form(answer.text)
        fields["logout"] = "yes"
        answer = browser.post(
            urljoin(answer.url, action), data=fields, allow_redirects=False, timeout=5
        )
        if not answer.is_redirect:
            raise AssertionError(f"the provider did not redirect after logout: {answer.text[:500]}")
        return urljoin(answer.url, answer.headers["Location"])

    def stop(self) -> None:
        end_process(self.process)


def _path() -> str:
    return str(Path(shutil.which("node")).parent) + ":/usr/bin:/bin"


def _form(page: str) -> tuple[str, dict[str, str]]:
    match = re.search(r"<form[^>]*action=\"([^\"]+)\"[^>]*>(.*?)</form>", page, re.S)
    if match is None:
        raise AssertionError(f"no form in the provider's page: {page[:500]}")
    fields = dict(re.findall(r"<input[^>]*name=\"([^\"]+)\"[^>]*value=\"([^\"]*)\"", match[2]))
    return match[1], fields
