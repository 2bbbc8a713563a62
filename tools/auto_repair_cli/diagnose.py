"""``auto-repair diagnose --input request.json``: run the diagnosis engine on a request (or an array of them).

Offline by default (rules + the bundled runbooks, or ``--knowledge-dir``). ``--bedrock`` adds the model review
through the Converse API (model id from ``--model-id`` or ``BEDROCK_MODEL_ID``) and, with a knowledge-base id,
``Retrieve``.

Only ``functionName`` is needed: missing extras (currentMemorySize, timeoutSeconds, runtime) are read from the
REPORT lines, wrong ones are listed in the result's ``inputProblems``. An array is diagnosed item by item, past
any bad item; a request that cannot be diagnosed (not an object, no functionName) gets a result whose ``error``
says why, and one line on stderr.

Exit status: 0 every request diagnosed; 1 (array only) the results are printed but at least one item has an
``error``; 2 nothing diagnosed: unreadable or invalid JSON, an empty array, bad options, or a single request
that cannot be diagnosed (one error line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

EXIT_UNDIAGNOSABLE_ITEMS = 1
EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="diagnose a Lambda incident from a diagnosis request JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--input", "-i", required=True, help="request JSON file (object or array), '-' for stdin"
    )
    parser.add_argument(
        "--bedrock", action="store_true", help="review the rules' verdict with Amazon Bedrock"
    )
    parser.add_argument("--model-id", help="Bedrock model id (default: $BEDROCK_MODEL_ID)")
    parser.add_argument("--guardrail-id", help="Bedrock guardrail id (default: $BEDROCK_GUARDRAIL_ID)")
    parser.add_argument("--knowledge-base-id", help="Bedrock knowledge base id (default: $KNOWLEDGE_BASE_ID)")
    parser.add_argument(
        "--knowledge-dir", help="directory of knowledge entries (default: the bundled runbooks)"
    )
    parser.add_argument("--max-memory", type=int, help="MaxMemory in MB (default: $MAX_MEMORY_MB or 10240)")
    parser.add_argument("--compact", action="store_true", help="print one line of JSON")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"auto-repair diagnose: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run(args: argparse.Namespace) -> int:
    from auto_repair import knowledge as kb
    from auto_repair.diagnosis import DiagnosisConfig, DiagnosisError, diagnose
    from auto_repair.settings import Settings, SettingsError
    from auto_repair.sizing import LAMBDA_MAX_MB

    try:
        text = sys.stdin.read() if args.input == "-" else open(args.input, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        return _fail(f"cannot read {args.input}: {exc.strerror or exc}")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        return _fail(f"{args.input} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    try:
        env = dict(os.environ)
        if not args.bedrock:
            env["USE_BEDROCK"] = "false"
        # Offline the ceiling is Lambda's own unless MAX_MEMORY_MB says otherwise (the stack's MaxMemory).
        env.setdefault("MAX_MEMORY_MB", str(LAMBDA_MAX_MB))
        config = DiagnosisConfig.from_settings(Settings.from_env(env))
        if args.max_memory is not None:
            config = DiagnosisConfig(**{**config.__dict__, "max_memory": args.max_memory})
        if args.bedrock:
            config.use_bedrock = True
            config.bedrock_model_id = args.model_id or config.bedrock_model_id
            config.guardrail_id = args.guardrail_id or config.guardrail_id
            config.knowledge_base_id = args.knowledge_base_id or config.knowledge_base_id
            if not config.bedrock_model_id:
                return _fail("--bedrock needs --model-id or BEDROCK_MODEL_ID")
        else:
            config.knowledge_base_id = None
        entries = kb.load_entries_from_dir(args.knowledge_dir) if args.knowledge_dir else kb.bundled_entries()
    except (DiagnosisError, SettingsError, kb.KnowledgeError) as exc:
        return _fail(str(exc))

    bedrock_client = retrieve_client = None
    if args.bedrock:
        import boto3  # only on request: the offline path must not need AWS at all

        bedrock_client = boto3.client("bedrock-runtime")
        if config.knowledge_base_id:
            retrieve_client = boto3.client("bedrock-agent-runtime")

    requests = payload if isinstance(payload, list) else [payload]
    if not requests:
        return _fail("input array is empty")
    # diagnose() returns a result for every request (its ``error`` says when it could not diagnose one).
    results = [diagnose(request, config=config, bedrock_client=bedrock_client, retrieve_client=retrieve_client,
                        knowledge=entries) for request in requests]
    if not isinstance(payload, list) and results[0].get("error"):
        return _fail(results[0]["error"])
    for index, result in enumerate(results):
        if result.get("error"):
            print(f"auto-repair diagnose: request [{index}]: {result['error']}", file=sys.stderr)
    output = results if isinstance(payload, list) else results[0]
    print(json.dumps(output, separators=(",", ":")) if args.compact else json.dumps(output, indent=2))
    return EXIT_UNDIAGNOSABLE_ITEMS if any(result.get("error") for result in results) else 0
