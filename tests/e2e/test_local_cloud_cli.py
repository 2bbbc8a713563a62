"""`auto-repair local up|status|down`: lifecycle on a temporary state dir and free port, nothing left behind."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import boto3

from auto_repair_local.lambda_role_trust import LAMBDA_TRUST_POLICY

REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "auto-repair")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "local", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().split(") ", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _stat_table() -> dict[int, tuple[int, str]]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def _descendants(pid: int) -> set[int]:
    table, found, frontier = _stat_table(), set(), [pid]
    while frontier:
        parent = frontier.pop()
        children = {p for p, (ppid, _state) in table.items() if ppid == parent} - found
        found |= children
        frontier += children
    return found


def _alive(pids: set[int]) -> set[int]:
    table = _stat_table()
    return {p for p in pids if p in table and table[p][1] != "Z"}


def _invoke_a_function(endpoint: str) -> None:
    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    role = client("iam").create_role(RoleName="cli-test",
                                     AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {'ok': True}\n")
    lam = client("lambda")
    lam.create_function(
        FunctionName="cli-test",
        Runtime="python3.11",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": buffer.getvalue()},
    )
    response = lam.invoke(FunctionName="cli-test", Payload=b"{}")
    assert json.loads(response["Payload"].read()) == {"ok": True}


def test_up_status_down_lifecycle(tmp_path: Path) -> None:
    state, port = tmp_path / "state", free_port()
    env = {**os.environ, "AUTO_REPAIR_LOCAL_STATE": str(state), "AUTO_REPAIR_LOCAL_PORT": str(port)}
    env.pop("AWS_ENDPOINT_URL", None)
    pid = None
    try:
        # WHEN the local cloud is brought up
        started = _run("up", env=env)
        # THEN it reports the loopback endpoint and readiness
        assert started.returncode == 0, started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout and "ready" in started.stdout
        info: dict[str, Any] = json.loads((state / "server.json").read_text())
        pid = info["pid"]
        assert info["host"] == "127.0.0.1"
        assert (state / "server.log").exists()

        # WHEN up is run again on the same state dir THEN it says so and succeeds
        again = _run("up", env=env)
        assert again.returncode == 0 and "already running" in again.stdout

        # WHEN status is asked THEN pid, endpoint, uptime, ready time and counts are shown
        shown = _run("status", env=env)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        for needle in (
            "running",
            f"pid:        {pid}",
            f"http://127.0.0.1:{port}",
            "uptime:",
            "ready in:",
            "stacks:",
            "functions:",
            "stateMachines:",
        ):
            assert needle in shown.stdout, shown.stdout
        pgid = os.getpgid(pid)
        assert pgid == pid  # its own process group, so `down` can account for every child

        # GIVEN a warm Lambda worker (a child process of the server, in its own session)
        _invoke_a_function(f"http://127.0.0.1:{port}")
        workers = _descendants(pid)
        assert workers, "invoking a function should leave a warm worker process"

        # WHEN it is brought down
        stopped = _run("down", env=env)
        # THEN no process of its group is left and status says not running
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert _group_members(pgid) == []
        assert _alive(workers | {pid}) == set()
        assert not (state / "server.json").exists()
        after = _run("status", env=env)
        assert after.returncode == 3 and "not running" in after.stdout
        pid = None
    finally:
        if pid is not None:  # keep a failing test from leaking a server
            _run("down", env=env)
