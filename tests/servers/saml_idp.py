"""The npm package saml-idp as an external SAML IdP on a free loopback port.

`SamlIdpServer(folder, acs_url=..., audience=..., user={...}).start()` writes the IdP's key
pair and a config file (the user it signs in) into `folder`, starts `node run.js` in its own
session and waits until /metadata answers. `stop()` ends it. The package is installed once
into tests/servers/saml_idp/node_modules by `npm ci` from the lock file (its dependency
`samlp` points at a git URL that cannot be reached: package.json overrides it with 7.1.1).

`sign_in(location)` plays the browser: it opens the IdP's SSO address Kursa redirected to,
submits the IdP's sign-in form for the configured user and returns the SAMLResponse.
"""

import atexit
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from sso.keys import write_self_signed_pair
from tests.servers.process import end_process, free_port, wait_until_ready

PACKAGE = Path(__file__).with_name("saml_idp")
RUN_JS = PACKAGE / "node_modules" / "saml-idp" / "bin" / "run.js"
ISSUER = "urn:kursa-test:saml-idp"


def ensure_installed() -> None:
    if RUN_JS.exists():
        return
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for the external SAML IdP (npm saml-idp)")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PACKAGE, check=True, timeout=300)


class SamlIdpServer:
    def __init__(self, folder: Path, *, acs_url: str, audience: str, user: dict, slo_url: str = ""):
        self.folder = folder
        self.acs_url = acs_url
        self.slo_url = slo_url
        self.audience = audience
        self.user = user
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "SamlIdpServer":
        ensure_installed()
        self.folder.mkdir(parents=True, exist_ok=True)
        key, cert = write_self_signed_pair(self.folder / "keys", "saml-idp")
        config = self.folder / "config.js"
        config.write_text(f"module.exports = {{user: {json.dumps(self.user)}, metadata: []}};\n")
        command = ["node", str(RUN_JS), "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--cert", cert, "--key", key, "--issuer", ISSUER]
        command += ["--acsUrl", self.acs_url, "--audience", self.audience]
        command += ["--configFile", str(config.resolve())]
        if self.slo_url:  # the SP's single logout address: the IdP then offers SLO too
            command += ["--sloUrl", self.slo_url]
        log = (self.folder / "idp.log").open("wb")
        self.process = subprocess.Popen(
            command, cwd=PACKAGE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        atexit.register(self.stop)
        self._wait()
        return self

    def _wait(self) -> None:
        wait_until_ready(
            self.process,
            lambda: requests.get(f"{self.url}/metadata", timeout=1).ok,
            name="saml-idp",
            log=self.folder / "idp.log",
            pause=0.1,
        )

    def metadata(self) -> str:
        return requests.get(f"{self.url}/metadata", timeout=5).text

    def sign_in(self, location: str, browser: requests.Session | None = None) -> str:
        """Follow Kursa's redirect to the IdP, submit its form; return the SAMLResponse.

        Pass a `browser` to keep the IdP's session (its cookie) for a later logout."""
        session = browser if browser is not None else requests.Session()
        page = session.get(location, timeout=5)
        page.raise_for_status()
        request = _input_value(page.text, "_authnRequest")
        form = {"_authnRequest": request, **self.user}
        answer = session.post(f"{self.url}/signin", data=form, timeout=5)
        answer.raise_for_status()
        return _input_value(answer.text, "SAMLResponse")

    def stop(self) -> None:
        end_process(self.process)


def _input_value(page: str, name: str) -> str:
    match = re.search(rf"name=[\"']{name}[\"'][^>]*?value=[\"']([^\"']*)[\"']", page, re.S)
    if match is None:
        raise AssertionError(f"no {name} field in the IdP's page: {page[:500]}")
    # Its pages escape '=' as '&#x3D;': unescape the form value as a browser would.
    return html.unescape(match.group(1))
