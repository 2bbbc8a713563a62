"""Cold-start and warm invoke latency of Lambda functions in the local cloud.

    .venv/bin/python bench/bench_local_lambda.py [--warm 100] [--cold 10]

Starts its own local cloud on a free port, creates a bare handler and one that imports boto3 at init, and prints
client-side latency percentiles plus the Init Duration the REPORT lines give. A cold start is forced by changing an
environment variable, which retires the function's warm workers.
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from auto_repair_local.process import start_local_cloud, stop_local_cloud

REPO = Path(__file__).resolve().parents[1]
ROLE_ARN = "arn:aws:iam::123456789012:role/bench-local-lambda"
FUNCTIONS = {
    "bare": "def handler(event, context):\n    return event\n",
    "boto3": "import boto3\n\nS3 = boto3.client('s3')\n\ndef handler(event, context):\n    return event\n",
}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def timed_invoke(lam, name: str) -> tuple[float, float | None]:
    started = time.perf_counter()
    response = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    response["Payload"].read()
    elapsed = (time.perf_counter() - started) * 1000
    if "FunctionError" in response:
        raise SystemExit(f"{name} failed: {base64.b64decode(response['LogResult']).decode()}")
    init = re.search(r"Init Duration: ([\d.]+) ms", base64.b64decode(response["LogResult"]).decode())
    return elapsed, float(init.group(1)) if init else None


def summary(label: str, values: list[float]) -> str:
    return (
        f"{label:<28} n={len(values):<4} p50={percentile(values, 50):8.2f} ms  "
        f"p95={percentile(values, 95):8.2f} ms  mean={statistics.fmean(values):8.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm", type=int, default=100, help="warm invocations per function")
    parser.add_argument("--cold", type=int, default=10, help="cold starts per function")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state:
        cloud = start_local_cloud(Path(state))
        try:
            client = cloud.client
            client("iam").create_role(RoleName=ROLE_ARN.rsplit("/", 1)[1], AssumeRolePolicyDocument="{}")
            lam = client("lambda")
            for label, source in FUNCTIONS.items():
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w") as archive:
                    archive.writestr("app.py", source)
                name = f"bench-{label}"
                lam.create_function(
                    FunctionName=name,
                    Runtime="python3.11",
                    Role=ROLE_ARN,
                    Handler="app.handler",
                    Code={"ZipFile": buffer.getvalue()},
                    MemorySize=256,
                )
                cold, init = [], []
                for i in range(args.cold):
                    lam.update_function_configuration(
                        FunctionName=name, Environment={"Variables": {"RUN": str(i)}}
                    )
                    elapsed, init_ms = timed_invoke(lam, name)
                    cold.append(elapsed)
                    init.append(init_ms or 0.0)
                warm = [timed_invoke(lam, name)[0] for _ in range(args.warm)]
                print(summary(f"{label}: cold invoke", cold))
                print(summary(f"{label}: Init Duration", init))
                print(summary(f"{label}: warm invoke", warm))
        finally:
            stop_local_cloud(cloud)
    return 0


if __name__ == "__main__":
    sys.exit(main())
