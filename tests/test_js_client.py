"""Compatibility with the JavaScript client that web apps use: socket.io-client from npm, run by node."""

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import auth
from tests.helpers import ROOT, web_process

SCRIPT = os.path.join(ROOT, "tests", "js", "compat.mjs")


@pytest.fixture
def node():
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not installed (the README says how to get it)")
    if not os.path.isdir(os.path.join(ROOT, "node_modules", "socket.io-client")):
        pytest.fail("socket.io-client is missing: run `npm ci` (scripts/test does when npm is present)")
    return binary


def test_socket_io_client_connects_sends_receives_types_and_syncs(app, client, make_user, node):
    ann_id, ann = make_user("ann")
    ben_id, ben = make_user("ben")
    chat = client.post("/api/conversations/", json={"user_ids": [ben_id]}, headers=auth(ann)).get_json()["id"]
    with web_process(app) as web:
        env = dict(os.environ, BSN_URL=web.url, TOKEN_A=ann, TOKEN_B=ben, CONVERSATION_ID=str(chat))
        result = subprocess.run([node, SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(lines[-1])
    assert outcome == {"ok": True, "seq": 1, "typing": ann_id, "synced": 5}
