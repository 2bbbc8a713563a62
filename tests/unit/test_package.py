"""auto-repair package: stack parameters, content hashes and the reproducible code package deploy.sh uploads."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cfnlint.decode import decode

from auto_repair import knowledge as kb
from auto_repair_cli import main as cli
from auto_repair_cli import package as pkg

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(REPO.glob("lambda-auto-repair-*.yaml"))


# ---------------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_declared_parameters_match_a_real_yaml_parser(template: Path) -> None:
    # GIVEN one of our templates (short-form tags, comments) WHEN its parameters are read line by line
    keys = pkg.declared_parameters(template.read_text())
    # THEN they are exactly the keys, in order, that CloudFormation's own decoder finds
    document, errors = decode(str(template))
    assert not errors
    assert keys == list(document["Parameters"])
    assert "Environment" in keys


def test_declared_parameters_stop_at_the_next_section_and_skip_nested_keys() -> None:
    # GIVEN a YAML template with comments, a nested property named like a parameter and a later section
    text = "\n".join([
        "AWSTemplateFormatVersion: '2010-09-09'",
        "Parameters:  # inputs",
        "  # a comment line",
        "  Environment:",
        "    Type: String",
        "    AllowedValues: [dev, prod]",
        "  MaxMemory:   # MB",
        "    Type: Number",
        "Conditions:",
        "  IsProd: !Equals [!Ref Environment, prod]",
        "Resources:",
        "  Topic:",
        "    Type: AWS::SNS::Topic",
    ])
    # WHEN its parameters are read THEN only the two declared keys come back
    assert pkg.declared_parameters(text) == ["Environment", "MaxMemory"]


def test_declared_parameters_of_a_json_template() -> None:
    text = json.dumps({"Parameters": {"A": {"Type": "String"}, "B": {"Type": "Number"}}, "Resources": {}})
    assert pkg.declared_parameters(text) == ["A", "B"]
    assert pkg.declared_parameters(json.dumps({"Resources": {}})) == []


def test_stack_parameters_prefer_overrides_then_the_file_then_the_template_default() -> None:
    # GIVEN a template's keys, a parameter file and command-line overrides
    declared = ["Environment", "MaxMemory", "DryRun", "MinConfidence", "Tags", "LogRetentionDays"]
    file_values = {"Environment": "dev", "MaxMemory": 3008, "DryRun": False, "MinConfidence": 0.7,
                   "Tags": ["a", "b"], "Undeclared": "x"}
    overrides = pkg.parse_overrides(["Environment=prod", "Unknown=1"])
    # WHEN the stack's parameters are built
    parameters = pkg.stack_parameters(declared, file_values, overrides)
    # THEN each declared key gets the override, else the file's value as CloudFormation text, in template order;
    # undeclared keys and keys without a value (template default) are left out
    assert parameters == [
        {"ParameterKey": "Environment", "ParameterValue": "prod"},
        {"ParameterKey": "MaxMemory", "ParameterValue": "3008"},
        {"ParameterKey": "DryRun", "ParameterValue": "false"},
        {"ParameterKey": "MinConfidence", "ParameterValue": "0.7"},
        {"ParameterKey": "Tags", "ParameterValue": '["a","b"]'},
    ]


def test_override_values_keep_their_equals_signs_and_the_last_pair_wins() -> None:
    assert pkg.parse_overrides(["A=x=y", "B=", "A=z"]) == {"A": "z", "B": ""}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["NoEquals"], "'NoEquals' is not KEY=VALUE"),
        (["=value"], "'=value' is not KEY=VALUE"),
        ([""], "'' is not KEY=VALUE"),
    ],
)
def test_bad_overrides_are_rejected(pairs: list[str], message: str) -> None:
    with pytest.raises(pkg.PackageError, match=message):
        pkg.parse_overrides(pairs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "parameter file not found"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", 'is not a JSON object of {"Key": value}'),
        ('"dev"', 'is not a JSON object of {"Key": value}'),
        ("", "is not valid JSON"),
    ],
    ids=["missing", "broken", "list", "string", "empty"],
)
def test_bad_parameter_files_are_rejected(tmp_path: Path, content: str | None, message: str) -> None:
    # GIVEN a parameter file that is missing or not a JSON object
    path = tmp_path / "dev.json"
    if content is not None:
        path.write_text(content)
    # WHEN it is loaded THEN the error names the file and the problem
    with pytest.raises(pkg.PackageError, match=message) as caught:
        pkg.load_parameter_file(path)
    assert str(path) in str(caught.value)


def test_a_json_template_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(pkg.PackageError, match="must be an object"):
        pkg.declared_parameters("[]")


# ---------------------------------------------------------------------------------------------- hash
def test_short_hash_is_the_sha256_prefix_and_stable() -> None:
    assert pkg.short_hash(b"") == "e3b0c44298fc1c14"
    data = (REPO / "lambda-auto-repair-main.yaml").read_bytes()
    assert pkg.short_hash(data) == hashlib.sha256(data).hexdigest()[:16] == pkg.short_hash(bytes(data))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Runtime: python3.12\n", pkg.LambdaTarget("3.12", "manylinux2014_x86_64")),
        ("Runtime: python3.13\nArchitectures:\n  - arm64\n", pkg.LambdaTarget("3.13", "manylinux2014_aarch64")),
        ("Runtime: nodejs20.x\n", pkg.LambdaTarget("3.12", "manylinux2014_x86_64")),
        ("# arm64 only in a comment\nRuntime: python3.11\n", pkg.LambdaTarget("3.11", "manylinux2014_x86_64")),
    ],
)
def test_lambda_target_comes_from_the_functions_template(template: str, expected: pkg.LambdaTarget) -> None:
    assert pkg.lambda_target(template) == expected


# ---------------------------------------------------------------------------------------------- build
def make_project(root: Path, *, stamp: int, mode: int) -> tuple[Path, Path]:
    """A small source tree and vendor directory holding everything that must not reach the zip."""
    files = {
        "src/auto_repair/__init__.py": "",
        "src/auto_repair/handlers/notify.py": "X = 1\n",
        "src/auto_repair/knowledge_data/rb-one.json": '{"entryId": "rb-one"}\n',
        "src/auto_repair/__pycache__/notify.cpython-311.pyc": "junk",
        "src/auto_repair/stale.pyc": "junk",
        "src/setup_helper.py": "top-level file of src/",
        "src/lambda_auto_repair.egg-info/PKG-INFO": "metadata",
        "src/auto_repair_cli/main.py": "a tool, not Lambda code",
        "vendor/jmespath/__init__.py": "V = 1\n",
        "vendor/jmespath-1.1.0.dist-info/RECORD": "record\n",
        "vendor/bin/jp.py": "#!/build/machine/python\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        os.utime(path, (stamp, stamp))
    return root / "src", root / "vendor"


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_the_zip_is_byte_identical_for_the_same_sources(tmp_path: Path) -> None:
    # GIVEN the same sources in two copies with different file times and permissions
    digests = []
    for copy, (stamp, mode) in enumerate([(1_000_000_000, 0o644), (1_700_000_000, 0o755)]):
        src, vendor = make_project(tmp_path / f"copy{copy}", stamp=stamp, mode=mode)
        # WHEN each is packaged
        digest, path = pkg.write_zip(pkg.package_entries(src, vendor), tmp_path / f"build{copy}")
        # THEN the zip is named by its content hash
        assert path.name == f"auto-repair-{digest}.zip"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
        digests.append(digest)
    # AND both copies give the same bytes
    assert digests[0] == digests[1]


def test_a_changed_source_file_changes_the_zip(tmp_path: Path) -> None:
    src, vendor = make_project(tmp_path, stamp=1_000_000_000, mode=0o644)
    before, _ = pkg.write_zip(pkg.package_entries(src, vendor), tmp_path / "build")
    (src / "auto_repair" / "handlers" / "notify.py").write_text("X = 2\n")
    after, _ = pkg.write_zip(pkg.package_entries(src, vendor), tmp_path / "build")
    assert before != after


def test_the_zip_holds_only_auto_repair_and_the_vendored_dependencies(tmp_path: Path) -> None:
    # GIVEN sources with caches, tools, metadata and a vendored console script
    src, vendor = make_project(tmp_path, stamp=1_000_000_000, mode=0o644)
    # WHEN packaged
    _, path = pkg.write_zip(pkg.package_entries(src, vendor), tmp_path / "build")
    # THEN only the Lambda's code, its runbooks and the vendored libraries are in it, sorted
    assert zip_names(path) == [
        "auto_repair/__init__.py",
        "auto_repair/handlers/notify.py",
        "auto_repair/knowledge_data/rb-one.json",
        "jmespath-1.1.0.dist-info/RECORD",
        "jmespath/__init__.py",
    ]
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    assert {(i.date_time, i.external_attr >> 16, i.create_system) for i in infos} == {
        ((1980, 1, 1, 0, 0, 0), 0o100644, 3)
    }


def test_the_repository_package_bundles_every_runbook_of_knowledge(tmp_path: Path) -> None:
    # GIVEN the repository's sources (auto_repair/knowledge_data is a link to knowledge/) and no dependencies
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    # WHEN the code package is built
    _, path = pkg.write_zip(pkg.package_entries(REPO / "src", vendor), tmp_path / "build")
    # THEN every runbook under knowledge/ is in it, byte for byte, where knowledge.py looks for it
    runbooks = sorted((REPO / "knowledge").glob("*.json"))
    assert len(runbooks) >= 10
    with zipfile.ZipFile(path) as archive:
        bundled = {n for n in archive.namelist() if n.startswith("auto_repair/knowledge_data/")}
        assert bundled == {f"auto_repair/knowledge_data/{p.name}" for p in runbooks}
        for runbook in runbooks:
            assert archive.read(f"auto_repair/knowledge_data/{runbook.name}") == runbook.read_bytes()
        archive.extractall(tmp_path / "lambda")
    # AND the Lambda's loader reads them from the unpacked package
    unpacked = tmp_path / "lambda" / "auto_repair" / "knowledge_data"
    assert kb.load_entries_from_dir(unpacked) == kb.load_entries_from_dir(REPO / "knowledge")
    # AND nothing but the Lambda's own package comes from src/
    assert {n.split("/")[0] for n in zip_names(path)} == {"auto_repair"}


def test_no_requirements_means_an_empty_vendor_directory_without_pip(tmp_path: Path) -> None:
    # GIVEN a requirements file with only comments WHEN vendored with an interpreter that does not exist
    requirements = tmp_path / "requirements-lambda.txt"
    requirements.write_text("# boto3 comes from the runtime\n\n")
    target = pkg.LambdaTarget("3.12", "manylinux2014_x86_64")
    vendor = pkg.vendor_dependencies(requirements, target, tmp_path / "build", python="/nonexistent/python")
    # THEN pip was never run and the directory is empty
    assert vendor.is_dir() and not any(vendor.iterdir())


def test_a_cached_vendor_directory_is_reused_and_the_key_covers_the_target(tmp_path: Path) -> None:
    # GIVEN requirements whose vendor directory is already in the cache
    requirements = tmp_path / "requirements-lambda.txt"
    requirements.write_text("jmespath==1.1.0\n")
    x86 = pkg.LambdaTarget("3.12", "manylinux2014_x86_64")
    key = pkg.short_hash(b"jmespath==1.1.0\n" + b"3.12 manylinux2014_x86_64\n")
    cached = tmp_path / "build" / f"vendor-{key}"
    cached.mkdir(parents=True)
    # WHEN vendored (an interpreter that does not exist proves pip is not run) THEN the cache entry is used
    assert pkg.vendor_dependencies(requirements, x86, tmp_path / "build", python="/nonexistent") == cached
    # AND another platform needs its own entry (so pip runs, and here fails without leaving a staging directory)
    arm = pkg.LambdaTarget("3.12", "manylinux2014_aarch64")
    with pytest.raises(pkg.PackageError, match="pip could not install"):
        pkg.vendor_dependencies(requirements, arm, tmp_path / "build", python="/nonexistent")
    assert list((tmp_path / "build").iterdir()) == [cached]


def test_a_failing_pip_is_one_error_and_leaves_no_cache_entry(tmp_path: Path, capsys) -> None:
    # GIVEN requirements pip cannot install (here: an interpreter that always fails)
    requirements = tmp_path / "requirements-lambda.txt"
    requirements.write_text("jmespath==1.1.0\n")
    target = pkg.LambdaTarget("3.12", "manylinux2014_x86_64")
    # WHEN vendored THEN the error names the file, and neither a cache entry nor a staging directory remains
    with pytest.raises(pkg.PackageError, match="pip could not install requirements-lambda.txt"):
        pkg.vendor_dependencies(requirements, target, tmp_path / "build", python="false")
    assert list((tmp_path / "build").iterdir()) == []
    assert "Installing requirements-lambda.txt for python3.12 (manylinux2014_x86_64)" in capsys.readouterr().err


def test_build_package_without_sources_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(pkg.PackageError, match="source package not found"):
        pkg.build_package(tmp_path, tmp_path / ".build")


# ---------------------------------------------------------------------------------------------- commands
def run_module(args: list[str], cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """As deploy.sh runs it: the tools directory on PYTHONPATH and, with -S, no site-packages at all."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tools")}
    return subprocess.run([sys.executable, "-S", "-m", "auto_repair_cli.package", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, timeout=120)


def test_the_module_builds_a_project_with_the_standard_library_only(tmp_path: Path) -> None:
    # GIVEN a project without dependencies to vendor
    src, _ = make_project(tmp_path, stamp=1_000_000_000, mode=0o644)
    (tmp_path / "requirements-lambda.txt").write_text("# nothing\n")
    # WHEN built by the module on an interpreter without site-packages
    proc = run_module(["build", "--root", str(tmp_path)], tmp_path)
    # THEN it prints "<sha256> <zip>" and the zip is in ROOT/.build
    assert proc.returncode == 0, proc.stderr
    digest, path = proc.stdout.decode().split()
    assert Path(path) == tmp_path / ".build" / f"auto-repair-{digest}.zip"
    assert "auto_repair/handlers/notify.py" in zip_names(Path(path))


def test_the_module_renders_the_runbooks_as_bedrock_documents_with_the_standard_library_only(tmp_path: Path) -> None:
    """deploy.sh uploads what this writes: a Bedrock knowledge base ingests Markdown, not JSON
    (https://docs.aws.amazon.com/bedrock/latest/userguide/knowledge-base-ds.html)."""
    # WHEN the repository's knowledge/*.json are rendered on an interpreter without site-packages
    proc = run_module(["knowledge", "--root", str(REPO), "--out", str(tmp_path / "kb")], tmp_path)
    # THEN each runbook is a document and a sidecar, and nothing else is written
    assert proc.returncode == 0, proc.stderr
    runbooks = kb.load_entries_from_dir(REPO / "knowledge")
    assert int(proc.stdout) == len(runbooks)
    assert sorted(p.name for p in (tmp_path / "kb").iterdir()) == sorted(
        f"{e['entryId']}{suffix}" for e in runbooks for suffix in (".md", ".md.metadata.json"))
    for entry in runbooks:
        document = (tmp_path / "kb" / f"{entry['entryId']}.md").read_text(encoding="utf-8")
        sidecar = json.loads((tmp_path / "kb" / f"{entry['entryId']}.md.metadata.json").read_text(encoding="utf-8"))
        assert kb.entry_from_markdown(document, sidecar) == entry


def test_the_module_prints_parameters_and_hashes(tmp_path: Path) -> None:
    parameter_file = tmp_path / "dev.json"
    parameter_file.write_text(json.dumps({"Environment": "dev", "LogRetentionDays": 7}))
    template = REPO / "lambda-auto-repair-monitoring.yaml"
    proc = run_module(["params", "--template", str(template), "--parameter-file", str(parameter_file),
                       "Environment=prod"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        {"ParameterKey": "Environment", "ParameterValue": "prod"},
        {"ParameterKey": "LogRetentionDays", "ParameterValue": "7"},
    ]
    assert run_module(["hash", "-"], tmp_path, stdin=b"").stdout.decode().strip() == "e3b0c44298fc1c14"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["params", "--template", "missing.yaml", "--parameter-file", "dev.json"], "template not readable"),
        (["params", "--template", "t.yaml", "--parameter-file", "missing.json"], "parameter file not found"),
        (["params", "--template", "t.yaml", "--parameter-file", "dev.json", "Broken"], "is not KEY=VALUE"),
        (["hash", "missing.yaml"], "cannot read missing.yaml"),
        (["build", "--root", "."], "source package not found"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(tmp_path: Path, capsys, monkeypatch, args: list[str],
                                                    message: str) -> None:
    # GIVEN a working directory with a template and a parameter file, but not what the arguments name
    (tmp_path / "t.yaml").write_text("Parameters:\n  A:\n    Type: String\n")
    (tmp_path / "dev.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    # WHEN the command runs (through the operator CLI this time) THEN one line explains and the exit is 1
    assert cli.main(["package", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("auto-repair package: ") and message in err[0]


def test_the_zip_module_reads_what_write_zip_wrote(tmp_path: Path) -> None:
    # GIVEN a package WHEN read back as the Lambda service does (from bytes) THEN every file is intact
    src, vendor = make_project(tmp_path, stamp=1_000_000_000, mode=0o644)
    _, path = pkg.write_zip(pkg.package_entries(src, vendor), tmp_path / "build")
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        assert archive.testzip() is None
        assert archive.read("auto_repair/handlers/notify.py") == b"X = 1\n"
