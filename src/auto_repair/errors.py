"""The one root of the product's exceptions.

Every exception auto_repair raises on purpose derives from :class:`AutoRepairError`, so a caller (the command
line, a test, a future integration) can catch "anything the product refused or failed to do" in one clause
while boto3's and Python's own errors stay distinct. The specific classes live beside the code that raises them
(``targets.TargetsError``, ``repair.RepairFailedError`` ...) and keep their built-in base too, because callers
catch some of them as ``ValueError`` or ``RuntimeError``; the class name stays the Lambda ``errorType`` the
state machine's Catch clauses match on.
"""

from __future__ import annotations


class AutoRepairError(Exception):
    """Base of every exception the product raises on purpose."""


def error_code(exc: BaseException, default: str = "") -> str:
    """The code of an AWS error: botocore's ``ClientError`` or anything else carrying its ``response``.

    ``default`` when there is none (not an AWS error, or a response without a code); duck-typed so that pure
    modules need not import botocore.
    """
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return str(code) if code else default
