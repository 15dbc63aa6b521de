"""Fixtures: a fresh database, `turnstile serve` on a free loopback port, and
Neptune-format API tokens for an admin, a plain member, an outsider and a service
account. The server binary is $TURNSTILE_BIN, else target/debug/turnstile. The
database is a new SQLite file, or $TURNSTILE_TEST_DB when set (an empty database on
either backend, e.g. a postgres:// URL: the suite then runs on PostgreSQL, B1)."""

import json
import os
import pathlib
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("TURNSTILE_BIN", str(ROOT / "target" / "debug" / "turnstile"))

# The client refuses OAuth over plain HTTP without this, and would retry a dead
# server for 60 s.
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
os.environ.setdefault("NEPTUNE_RETRIES_TIMEOUT", "3")
os.environ.pop("NEPTUNE_API_TOKEN", None)


def cli(db, *args, token=None, stdin=None):
    env = dict(os.environ)
    env.pop("TURNSTILE_TOKEN", None)
    if token:
        env["TURNSTILE_TOKEN"] = token
    out = subprocess.run(
        [BIN, "--db", str(db), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


class Server:
    def __init__(self, db, log, extra=(), scheme="http"):
        self.db = db
        self.log = log
        self.proc = subprocess.Popen(
            [BIN, "--db", str(db), "serve", "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("turnstile: listening on "), f"server did not start: {line!r}"
        self.url = line.split()[-1]
        assert self.url.startswith(scheme + "://")

    def neptune_token(self, token):
        return cli(self.db, "token", "neptune", "--api-url", self.url, token=token).strip()

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(timeout=15) == 0


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """One database and server for the session. Tests make their own projects, named
    after the test, so they do not depend on each other's order."""
    tmp = tmp_path_factory.mktemp("turnstile")
    db = os.environ.get("TURNSTILE_TEST_DB") or tmp / "acl.db"
    admin = cli(db, "init", "--workspace", "ml-team", "--admin", "alice").strip()
    for user in ("bob", "carol", "dave", "erin", "frank", "gina"):
        cli(db, "user", "create", user)
    cli(db, "workspace", "invite", "ml-team", "bob", token=admin)
    cli(db, "workspace", "invite", "ml-team", "dave", token=admin)
    bob = json.loads(cli(db, "--json", "user", "token", "issue", "bob", "--label", "py"))["token"]["secret"]
    carol = json.loads(cli(db, "--json", "user", "token", "issue", "carol", "--label", "py"))["token"]["secret"]
    sa = json.loads(cli(db, "--json", "sa", "create", "ml-team", "cicd", token=admin))["token"]["secret"]
    cli(db, "sa", "create", "ml-team", "nightly", token=admin)
    server = Server(db, tmp / "server.log")
    w = {
        "db": db,
        "server": server,
        "url": server.url,
        "raw": {"admin": admin, "bob": bob, "carol": carol, "sa": sa},
        "admin": server.neptune_token(admin),
        "bob": server.neptune_token(bob),
        "carol": server.neptune_token(carol),
        "sa": server.neptune_token(sa),
        "log": tmp / "server.log",
    }
    yield w
    server.stop()


def http_json(url, method="GET", headers=None, body=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
