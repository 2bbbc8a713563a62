"""Start, stop and deploy into a local cloud process on a free loopback port.

Shared by the end-to-end tests and the benchmarks: each gets a private local cloud with its state in its own
directory, so they never touch the developer's `auto-repair local up` instance on 4566.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parents[2]


class LocalCloudError(RuntimeError):
    """The local cloud did not start, or a deployment into it failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalCloud:
    endpoint: str
    port: int
    state_dir: Path
    process: subprocess.Popen | None  # None: started elsewhere (`auto-repair local up`), which stops it
    region: str = "us-east-1"

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (aws CLI, deploy.sh) pointed at this local cloud."""
        env = dict(os.environ)
        env.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION=self.region,
            AWS_REGION=self.region,
            AUTO_REPAIR_LOCAL_STATE=str(self.state_dir),
            AUTO_REPAIR_LOCAL_PORT=str(self.port),
            PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        env.pop("AWS_PROFILE", None)
        return env


def start_local_cloud(state_dir: Path, port: int | None = None, timeout: float = 30.0) -> LocalCloud:
    port = port or free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "server.log", "ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "auto_repair_local.server",
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    deadline = time.monotonic() + timeout
    info_file = state_dir / "server.json"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalCloudError(f"local cloud exited early:\n{(state_dir / 'server.log').read_text()[-4000:]}")
        if info_file.exists():
            info = json.loads(info_file.read_text())
            return LocalCloud(endpoint=info["endpoint"], port=port, state_dir=state_dir, process=process)
        time.sleep(0.05)
    process.kill()
    raise LocalCloudError("local cloud did not become ready")


def attach_local_cloud(state_dir: Path) -> LocalCloud:
    """The local cloud running with state in ``state_dir`` (started by ``auto-repair local up``)."""
    try:
        info = json.loads((state_dir / "server.json").read_text())
    except (OSError, ValueError) as exc:
        raise LocalCloudError(f"no local cloud running with state in {state_dir}: {exc}") from exc
    port = int(info["endpoint"].rsplit(":", 1)[1])
    return LocalCloud(endpoint=info["endpoint"], port=port, state_dir=state_dir, process=None)


def stop_local_cloud(cloud: LocalCloud) -> None:
    if cloud.process is None:
        raise LocalCloudError("this local cloud was not started here; stop it with `auto-repair local down`")
    cloud.process.terminate()
    try:
        cloud.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        cloud.process.kill()
        cloud.process.wait()


@dataclass
class Deployment:
    cloud: LocalCloud
    environment: str
    topic_arn: str
    state_machine_arn: str

    @property
    def outbox(self) -> Path:
        return self.cloud.state_dir / "outbox"

    def notifications(self, function_name: str) -> list[dict]:
        """The SNS messages about one function in the local outbox, oldest first: {"subject", "body"}."""
        messages = []
        for path in sorted(self.outbox.glob("*.json")):
            item = json.loads(path.read_text())
            attributes = item.get("messageAttributes") or item.get("MessageAttributes") or {}
            fn = attributes.get("functionName", {})
            fn = fn.get("Value", fn.get("StringValue")) if isinstance(fn, dict) else fn
            if fn == function_name:
                body = item.get("message") or item.get("Message")
                messages.append({"subject": item.get("subject") or item.get("Subject"),
                                 "body": json.loads(body) if isinstance(body, str) else body})
        return messages

    def faults(self, rules: list[dict]) -> None:
        """Replace the local cloud's injected faults (see auto_repair_local.faults)."""
        (self.cloud.state_dir / "faults.json").write_text(json.dumps(rules))


def deploy(cloud: LocalCloud, environment: str = "local", root: Path = REPO, extra: Sequence[str] = ()) -> Deployment:
    """deploy.sh of the project at ``root`` (a checkout of another commit, for before/after benchmarks); ``extra``
    are further deploy.sh flags (``--organization-id o-...`` for the organisation mode)."""
    proc = subprocess.run(
        ["./deploy.sh", "--local", "--environment", environment, "--email", "ops@example.com", *extra],
        cwd=root,
        env=cloud.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise LocalCloudError(f"deploy.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    sfn = cloud.client("stepfunctions")
    machine = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"] == f"lambda-auto-repair-workflow-{environment}"
    )
    topic = next(
        t["TopicArn"]
        for t in cloud.client("sns").list_topics()["Topics"]
        if t["TopicArn"].endswith(f":lambda-auto-repair-notifications-{environment}")
    )
    return Deployment(cloud=cloud, environment=environment, topic_arn=topic, state_machine_arn=machine)
