"""Settings: the one reader of the environment, its parser, and its defaults against the templates' defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from auto_repair.settings import ENV_VARS, Settings, SettingsError, get_settings, parse_bool

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(REPO.glob("lambda-auto-repair-*.yaml"))
# Read by the libraries themselves (Powertools, boto3), never by our code.
LIBRARY_VARS = {"POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_LOG_LEVEL", "AWS_DEFAULT_REGION"}


def _function_variables() -> list[tuple[str, str, str, Any, dict[str, Any]]]:
    """(template, function, variable, value, parameters) for every Lambda function's environment variable."""
    found = []
    for path in TEMPLATES:
        template, matches = decode(str(path))
        assert template is not None, matches
        parameters = template.get("Parameters") or {}
        for name, resource in (template.get("Resources") or {}).items():
            if resource.get("Type") != "AWS::Lambda::Function":
                continue
            variables = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
            for variable, value in variables.items():
                found.append((path.name, name, variable, value, parameters))
    return found


def _exported_parameters() -> dict[str, tuple[str, dict[str, Any]]]:
    """Export key (``${AWS::StackName}-<Key>``) -> (parameter, its definition) for outputs that export a parameter."""
    exported = {}
    for path in TEMPLATES:
        template, matches = decode(str(path))
        assert template is not None, matches
        parameters = template.get("Parameters") or {}
        for output in (template.get("Outputs") or {}).values():
            ref = (output.get("Value") or {}).get("Ref") if isinstance(output.get("Value"), dict) else None
            name = ((output.get("Export") or {}).get("Name") or {}).get("Fn::Sub")
            if isinstance(ref, str) and ref in parameters and isinstance(name, str):
                exported[name.replace("${AWS::StackName}-", "")] = (ref, parameters[ref])
    return exported


def _defaulted_parameters() -> list[tuple[str, str, str, str]]:
    """(where, variable, parameter, template default) where a parameter with a Default feeds a variable, directly
    (``Ref``) or through another stack's export of it (``Fn::ImportValue`` of ``${MainStackName}-<Key>``)."""
    exported = _exported_parameters()
    pairs = []
    for template, function, variable, value, parameters in _function_variables():
        if not isinstance(value, dict):
            continue
        imported = value.get("Fn::ImportValue")
        if isinstance(value.get("Ref"), str):
            name, parameter = value["Ref"], parameters.get(value["Ref"])
        elif isinstance(imported, dict) and isinstance(imported.get("Fn::Sub"), str):
            key = imported["Fn::Sub"].replace("${MainStackName}-", "")
            name, parameter = exported.get(key, (key, None))
        else:
            continue
        if parameter is not None and "Default" in parameter:
            pairs.append((f"{template} {function}", variable, name, str(parameter["Default"])))
    return pairs


def test_code_defaults_equal_template_defaults() -> None:
    # GIVEN every template parameter with a Default that feeds a function's environment variable
    pairs = _defaulted_parameters()
    assert {"MAX_MEMORY_MB", "MIN_CONFIDENCE", "SCOPE_MODE", "ROLLBACK_ON_FAILURE"} <= {p[1] for p in pairs}
    code = Settings()
    problems = []
    for where, variable, parameter, default in pairs:
        field = ENV_VARS[variable]
        # WHEN the template default is read the way the function reads it
        templated = getattr(Settings.from_env({variable: default}), field)
        # THEN the code's own default is the same value
        if templated != getattr(code, field):
            problems.append(f"{where}: {variable} defaults to {getattr(code, field)!r} in code, "
                            f"{parameter} to {default!r} in the template")
    assert not problems, "\n".join(problems)


def test_every_variable_the_templates_set_is_a_setting() -> None:
    # GIVEN the functions' environments / THEN each variable is read by Settings or by a library, nothing else
    unknown = sorted({f"{template} {function}: {variable}" for template, function, variable, _, _ in
                      _function_variables() if variable not in ENV_VARS and variable not in LIBRARY_VARS})
    assert not unknown


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), (" yes ", True), ("1", True), ("on", True),
     ("false", False), ("0", False), ("no", False), ("off", False), (None, None), ("", None), ("  ", None)],
)
def test_parse_bool(raw: str | None, expected: bool | None) -> None:
    # GIVEN a variable's raw value / WHEN parsed with each default / THEN unset keeps the default
    for default in (True, False):
        assert parse_bool("X", raw, default) is (default if expected is None else expected)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DRY_RUN": "maybe"}, "DRY_RUN must be true or false"),
        ({"MAX_MEMORY_MB": "lots"}, "MAX_MEMORY_MB must be an integer"),
        ({"MIN_CONFIDENCE": "high"}, "MIN_CONFIDENCE must be a number"),
        ({"USE_BEDROCK": "sometimes"}, "USE_BEDROCK must be true or false"),
    ],
)
def test_malformed_variables_raise_settings_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_values_and_derived_kill_switch_parameter() -> None:
    # GIVEN an environment / WHEN read / THEN typed values, and the kill switch named after the environment
    s = Settings.from_env({"ENVIRONMENT": "prod", "MAX_MEMORY_MB": "1024", "ALLOW_ALIAS_UPDATE": "true",
                           "KNOWLEDGE_BUCKET": "kb", "DEAD_LETTER_QUEUE_URL": "q"})
    assert (s.environment, s.max_memory_mb, s.allow_alias_update, s.knowledge_bucket, s.dead_letter_queue_url) == (
        "prod", 1024, True, "kb", "q")
    assert s.paused_parameter == "/lambda-auto-repair/prod/paused"
    assert Settings.from_env({"PAUSED_PARAMETER": "/x"}).paused_parameter == "/x"


def test_get_settings_reads_once_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN settings already resolved
    get_settings.cache_clear()
    monkeypatch.setenv("ENVIRONMENT", "staging")
    first = get_settings()
    # WHEN the environment changes / THEN the warm value stays until the cache is cleared
    monkeypatch.setenv("ENVIRONMENT", "prod")
    assert get_settings() is first and first.environment == "staging"
    get_settings.cache_clear()
    assert get_settings().environment == "prod"
    get_settings.cache_clear()
