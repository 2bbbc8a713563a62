"""``auto-repair local up|down|status``: run the local cloud (moto server + extensions) in the background."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # loopback only, always
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def _default_port() -> int:
    return int(os.environ.get("AUTO_REPAIR_LOCAL_PORT", "4566"))


def _default_state() -> Path:
    return Path(os.environ.get("AUTO_REPAIR_LOCAL_STATE") or REPO / ".local-cloud")


def _info(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state / "server.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, state) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``; Lambda workers run in their own sessions, so the process group of the
    server does not contain them, but they are still its children."""
    table = _proc_table()
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _pgid, _state) in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _living(pids: set[int], pgid: int | None = None) -> set[int]:
    table = _proc_table()
    alive = {p for p in pids if p in table and table[p][2] != "Z"}
    if pgid is not None:
        alive |= {p for p, (_ppid, group, state) in table.items() if group == pgid and state != "Z"}
    return alive


def _answers(endpoint: str) -> bool:
    # Any HTTP answer (even an error status) means the server is serving.
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _pid_file(state: Path) -> Path:
    return state / "server.pid"


def _running_pid(state: Path) -> int | None:
    try:
        pid = int(_pid_file(state).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def up(args: argparse.Namespace) -> int:
    state: Path = args.state_dir.resolve()
    pid = _running_pid(state)
    if pid is not None:
        info = _info(state) or {}
        print(f"local cloud already running (pid {pid}) on {info.get('endpoint', '?')}, state {state}")
        return 0
    state.mkdir(parents=True, exist_ok=True)
    (state / "server.json").unlink(missing_ok=True)
    started = time.monotonic()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tools"), env.get("PYTHONPATH")]))
    with open(state / "server.log", "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "auto_repair_local.server",
                "--host",
                HOST,
                "--port",
                str(args.port),
                "--state-dir",
                str(state),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
            start_new_session=True,  # own process group: `down` can wait for every worker it spawns
        )
    _pid_file(state).write_text(str(process.pid))
    deadline = started + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(
                f"local cloud exited during start-up (code {process.returncode}); see {state / 'server.log'}",
                file=sys.stderr,
            )
            _pid_file(state).unlink(missing_ok=True)
            return 1
        info = _info(state)
        if info and info.get("pid") == process.pid and _answers(info["endpoint"]):
            elapsed = time.monotonic() - started
            print(f"local cloud ready on {info['endpoint']} (pid {process.pid}) in {elapsed:.2f}s")
            print(
                f"  export AWS_ENDPOINT_URL={info['endpoint']} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
                "AWS_DEFAULT_REGION=us-east-1"
            )
            return 0
        time.sleep(0.05)
    print(f"local cloud not ready after {READY_TIMEOUT:.0f}s; see {state / 'server.log'}", file=sys.stderr)
    _stop(process.pid)
    return 1


def _stop(pid: int) -> bool:
    """SIGTERM the server and wait until it, its process group and every process it started are gone;
    SIGKILL whatever is left after STOP_TIMEOUT. True if everything went away without SIGKILL."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return True
    tracked = _descendants(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if _alive(pid):
            tracked |= _descendants(pid)  # workers started while shutting down are waited for too
        elif not _living(tracked, pgid):
            return True
        time.sleep(0.1)
    leftovers = _living(tracked | {pid}, pgid)
    for victim in leftovers:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 5
    while time.monotonic() < end and _living(leftovers):
        time.sleep(0.1)
    return False


def down(args: argparse.Namespace) -> int:
    state: Path = args.state_dir.resolve()
    pid = _running_pid(state)
    if pid is None:
        print(f"local cloud not running (state {state})")
        _pid_file(state).unlink(missing_ok=True)
        return 0
    clean = _stop(pid)
    _pid_file(state).unlink(missing_ok=True)
    (state / "server.json").unlink(missing_ok=True)
    print(f"local cloud stopped (pid {pid})" + ("" if clean else "; some processes had to be killed"))
    return 0 if clean else 1


def _counts(endpoint: str) -> dict[str, int]:
    import boto3

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    stacks = client("cloudformation").list_stacks()["StackSummaries"]
    return {
        "stacks": sum(1 for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"),
        "functions": len(client("lambda").list_functions()["Functions"]),
        "stateMachines": len(client("stepfunctions").list_state_machines()["stateMachines"]),
    }


def status(args: argparse.Namespace) -> int:
    state: Path = args.state_dir.resolve()
    pid = _running_pid(state)
    info = _info(state)
    if pid is None or info is None:
        print(f"local cloud: not running (state {state})")
        return 3  # like `systemctl status`: not running is not an error of the command, but scripts can tell
    uptime = time.time() - float(info["startedAt"])
    print("local cloud: running")
    print(f"  pid:        {pid}")
    print(f"  endpoint:   {info['endpoint']}")
    print(f"  state dir:  {state}")
    print(f"  uptime:     {uptime:.0f}s")
    print(f"  ready in:   {info.get('readySeconds')}s")
    print(f"  extensions: {', '.join(info.get('extensions', []))}")
    try:
        for key, value in _counts(info["endpoint"]).items():
            print(f"  {key + ':':<12}{value}")
    except Exception as exc:  # the process is there but not answering: say so rather than crash
        print(f"  (endpoint not answering: {exc})")
        return 1
    return 0


def organization(args: argparse.Namespace) -> int:
    from auto_repair_local.local_org import CENTRAL_ACCOUNT, OUTSIDE_ACCOUNT, REGIONS, create_organization

    info = _info(args.state_dir.resolve())
    if info is None or not _answers(info["endpoint"]):
        print("local cloud: not running (auto-repair local up)", file=sys.stderr)
        return 3
    org = create_organization(info["endpoint"])
    print(json.dumps({
        "organizationId": org.organization_id, "rootId": org.root_id, "ouId": org.ou_id,
        "centralAccount": CENTRAL_ACCOUNT, "memberAccounts": list(org.members), "outsideAccount": OUTSIDE_ACCOUNT,
        "regions": list(REGIONS), "organizationPaths": {a: org.path(a) for a in (CENTRAL_ACCOUNT, *org.members)},
    }, indent=2))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("local", help="run the local cloud (moto + extensions) on 127.0.0.1")
    sub = parser.add_subparsers(dest="local_command", metavar="up|down|status|organization", required=True)
    for name, func, text in (
        ("up", up, "start it in the background and wait until ready"),
        ("down", down, "stop it and every process it started"),
        ("status", status, "show whether it runs, where, and what is deployed"),
        ("organization", organization, "make it an AWS Organization (central + 2 member accounts); print the ids"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--state-dir",
            type=Path,
            default=_default_state(),
            help="state directory (default $AUTO_REPAIR_LOCAL_STATE or <repo>/.local-cloud)",
        )
        if name == "up":
            p.add_argument(
                "--port",
                type=int,
                default=_default_port(),
                help="port on 127.0.0.1 (default $AUTO_REPAIR_LOCAL_PORT or 4566)",
            )
        p.set_defaults(func=func)
