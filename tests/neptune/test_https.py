"""The real client over HTTPS with a self-signed certificate, verified against that
certificate (no insecure-transport switch), served by a second server process on the
same database (SPEC H1)."""

import subprocess

import pytest
from neptune import management as m
from neptune.management.exceptions import ProjectNotFound

from conftest import Server


@pytest.fixture(scope="module")
def tls_server(world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = Server(world["db"], tmp / "tls.log",
                    extra=("--tls-cert", str(cert), "--tls-key", str(key)), scheme="https")
    yield server, cert
    server.stop()


def test_management_over_https_with_a_self_signed_certificate(world, tls_server, monkeypatch):
    server, cert = tls_server
    token = server.neptune_token(world["raw"]["admin"])
    p = "ml-team/over-tls"
    with monkeypatch.context() as tls:
        tls.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
        tls.setenv("REQUESTS_CA_BUNDLE", str(cert))
        assert m.create_project(p, api_token=token) == p
        m.add_project_member(p, "bob", "viewer", api_token=token)
        assert m.get_project_member_list(p, api_token=token) == {"alice": "owner", "bob": "viewer"}
    # The plain-HTTP server on the same database sees the change at once.
    assert p in m.get_project_list(api_token=world["bob"])
    with monkeypatch.context() as tls:
        tls.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
        tls.setenv("REQUESTS_CA_BUNDLE", str(cert))
        m.delete_project(p, api_token=token)
    with pytest.raises(ProjectNotFound):
        m.get_project_member_list(p, api_token=world["admin"])
