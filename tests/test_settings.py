"""Settings are validated at start-up: one line naming the variable, never a later failure."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.config import REQUIRED, Settings, SettingsError
from tests.stack import ROOT

GOOD = {
    "GATEWAY_S3_BUCKET": "gw-bucket",
    "GATEWAY_MASTER_KEY": "file:keys/master.key",
    "GATEWAY_SECRET_KEY": "s" * 32,
}


def test_defaults() -> None:
    s = Settings.from_env(GOOD)
    assert s.database_url == "sqlite:///instance/gateway.db"
    assert s.max_upload_bytes == 262_144_000
    assert (s.read_link_seconds, s.write_link_seconds, s.idle_logout_seconds) == (900, 300, 900)
    assert s.s3_endpoint_url is None


@pytest.mark.parametrize("name", REQUIRED)
def test_each_required_setting_is_named_when_missing(name: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != name}
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_MASTER_KEY", "vault:abc"),
        ("GATEWAY_MAX_UPLOAD_BYTES", "lots"),
        ("GATEWAY_MAX_UPLOAD_BYTES", "-1"),
        ("GATEWAY_READ_LINK_SECONDS", "0"),
        ("GATEWAY_IDLE_LOGOUT_SECONDS", "1.5"),
        ("GATEWAY_S3_ENDPOINT_URL", "localhost:9000"),
        ("GATEWAY_S3_BUCKET", "Bad_Bucket"),
        ("GATEWAY_DATABASE_URL", "instance/gateway.db"),
        ("GATEWAY_SECRET_KEY", "short"),
        ("GATEWAY_TRUSTED_PROXIES", "-1"),
        ("GATEWAY_TRUSTED_PROXIES", "all"),
    ],
)
def test_malformed_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**GOOD, name: value})


def _clean_env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    base.update(env)
    return base


@pytest.mark.parametrize("name", REQUIRED)
def test_wsgi_app_refuses_to_start_with_one_line(name: str) -> None:
    env = _clean_env(**{k: v for k, v in GOOD.items() if k != name})
    proc = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], proc.stderr


def test_command_refuses_with_one_line() -> None:
    env = _clean_env(**{k: v for k, v in GOOD.items() if k != "GATEWAY_SECRET_KEY"})
    proc = subprocess.run([sys.executable, "-m", "gateway", "files", "purge"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "GATEWAY_SECRET_KEY" in lines[0], proc.stderr


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///{tmp}/empty.db", "no such table: organisations (run `gateway db upgrade`)"),
    ("postgresql+psycopg://nobody@127.0.0.1:1/none", "Connection refused"),
])
def test_a_database_problem_is_one_line(tmp_path, url: str, expected: str) -> None:
    env = _clean_env(GATEWAY_DATABASE_URL=url.format(tmp=tmp_path))
    proc = subprocess.run([sys.executable, "-m", "gateway", "orgs", "list"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: database error: "), proc.stderr
    assert expected in lines[0]


def test_trusted_proxies_default_to_none() -> None:
    assert Settings.from_env(GOOD).trusted_proxies == 0
    assert Settings.from_env({**GOOD, "GATEWAY_TRUSTED_PROXIES": "0"}).trusted_proxies == 0
    assert Settings.from_env({**GOOD, "GATEWAY_TRUSTED_PROXIES": "2"}).trusted_proxies == 2


@pytest.mark.parametrize(("env", "dev", "secure"), [
    ({}, False, True),  # production: HTTPS in front, even without a proxy setting
    ({"GATEWAY_TRUSTED_PROXIES": "1"}, False, True),
    ({"GATEWAY_TRUSTED_PROXIES": "1"}, True, True),  # dev behind a TLS terminator
    ({}, True, False),  # only the dev stack on plain-HTTP loopback goes without
])
def test_cookies_are_secure_outside_dev_mode_and_behind_tls(env: dict[str, str], dev: bool,
                                                           secure: bool) -> None:
    settings = Settings.from_env({**GOOD, **env}, require=() if dev else REQUIRED, dev=dev)
    assert settings.secure_cookies is secure
