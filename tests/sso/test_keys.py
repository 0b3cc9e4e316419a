"""The SP key pair: configured files, or a self-signed pair generated once; checked at start."""

import stat

import pytest

from app import create_app
from config import ConfigError
from sso.keys import ensure_self_signed_pair


def test_self_signed_pair_is_generated_once_and_private(tmp_path):
    key, cert = ensure_self_signed_pair(tmp_path / "sso")

    assert stat.S_IMODE((tmp_path / "sso" / "key.pem").stat().st_mode) == 0o600
    assert "BEGIN CERTIFICATE" in open(cert).read()
    assert ensure_self_signed_pair(tmp_path / "sso") == (key, cert)
    assert open(key).read() == (tmp_path / "sso" / "key.pem").read_text()


@pytest.mark.parametrize(
    ("sso", "message"),
    [
        ({"key_file": "/etc/hostname"}, "set together"),
        ({"key_file": "/nope.pem", "cert_file": "/nope.crt"}, "not a readable file"),
        ({"request_lifetime_seconds": 0}, "positive"),
    ],
)
def test_wrong_sso_settings_fail_at_start(tmp_path, sso, message):
    settings = {"database": {"url": f"sqlite:///{tmp_path / 'k.db'}"}, "sso": sso}
    with pytest.raises(ConfigError, match=message):
        create_app(settings, environ={})
