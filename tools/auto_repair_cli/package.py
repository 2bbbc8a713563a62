"""``auto-repair package``: what deploy.sh computes before it talks to CloudFormation.

* ``params``: a stack's parameters as CloudFormation's JSON list, from the keys its template declares, the
  environment's parameter file and the command line's overrides.
* ``hash``: the short content hash deploy.sh puts in S3 keys.
* ``build``: the Lambda code package, reproducibly (the same sources give the same bytes, so the content-addressed
  key ``code/auto-repair-<sha256>.zip`` only changes when the code does).

Standard library only: deploy.sh runs this module on an operator's machine that has python3, the AWS CLI and jq
but no .venv, as ``PYTHONPATH="$ROOT_DIR/tools" python3 -m auto_repair_cli.package ...``. The one outside
program is pip, for the vendored dependencies of requirements-lambda.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROG = "auto-repair package"
FUNCTIONS_TEMPLATE = "lambda-auto-repair-functions.yaml"
REQUIREMENTS = "requirements-lambda.txt"
# The only source package the Lambda runs; tools/ and tests/ never ship.
SOURCE_PACKAGE = "auto_repair"
# A fixed timestamp and mode for every zip entry: file times and umask differ between checkouts.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644


class PackageError(RuntimeError):
    """Bad input to a package command; printed as one line, exit code 1."""


# ---------------------------------------------------------------------------------------------- parameters
_PARAMETERS_SECTION = re.compile(r"^Parameters:\s*(#.*)?$")
_TOP_LEVEL_KEY = re.compile(r"^[^\s#]")
_PARAMETER_KEY = re.compile(r"^  ([A-Za-z0-9]+):\s*(#.*)?$")


def declared_parameters(template_text: str) -> list[str]:
    """The parameter keys a template declares, in template order.

    A line scan rather than a YAML parser: our templates use CloudFormation's short-form tags (``!Sub``), which
    a plain YAML loader rejects, and this must run without third-party packages.
    """
    try:
        document = json.loads(template_text)
    except ValueError:
        return _declared_in_yaml(template_text)
    if not isinstance(document, dict):
        raise PackageError("a JSON template must be an object")
    return list(document.get("Parameters") or {})


def _declared_in_yaml(text: str) -> list[str]:
    keys: list[str] = []
    inside = False
    for line in text.splitlines():
        if _PARAMETERS_SECTION.match(line):
            inside = True
            continue
        if not inside:
            continue
        if _TOP_LEVEL_KEY.match(line):
            break
        match = _PARAMETER_KEY.match(line)
        if match:
            keys.append(match.group(1))
    return keys


def load_parameter_file(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"parameter file not found: {path}") from None
    except ValueError as exc:
        raise PackageError(f"parameter file {path} is not valid JSON ({exc})") from None
    if not isinstance(values, dict):
        raise PackageError(f'parameter file {path} is not a JSON object of {{"Key": value}}')
    return values


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments; the value may itself contain ``=``, a later pair wins."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PackageError(f"override {pair!r} is not KEY=VALUE")
        overrides[key] = value
    return overrides


def parameter_value(value: Any) -> str:
    """CloudFormation takes strings: a string as is, anything else as compact JSON (45000, true, 0.7)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def stack_parameters(declared: Iterable[str], file_values: Mapping[str, Any],
                     overrides: Mapping[str, str]) -> list[dict[str, str]]:
    """For each declared key: the override, else the parameter file's value, else nothing (template default).

    Keys the template does not declare are dropped: CloudFormation rejects unknown parameters, and one
    parameter file serves all three stacks.
    """
    parameters = []
    for key in declared:
        if key in overrides:
            parameters.append({"ParameterKey": key, "ParameterValue": overrides[key]})
        elif key in file_values:
            parameters.append({"ParameterKey": key, "ParameterValue": parameter_value(file_values[key])})
    return parameters


# ---------------------------------------------------------------------------------------------- hash
def short_hash(data: bytes) -> str:
    """First 16 hex digits of the SHA-256: enough to tell versions apart in an S3 key or a cache directory."""
    return hashlib.sha256(data).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- build
@dataclass(frozen=True)
class LambdaTarget:
    """The interpreter and platform the functions run on, which pip must build the vendored wheels for."""

    python_version: str
    platform: str


_RUNTIME = re.compile(r"python(3\.[0-9]+)")
_ARM64 = re.compile(r"^\s*-\s*arm64\s*$", re.MULTILINE)


def lambda_target(functions_template_text: str) -> LambdaTarget:
    """The first ``python3.N`` runtime in the functions template, and arm64 if it lists that architecture."""
    runtime = _RUNTIME.search(functions_template_text)
    platform = "manylinux2014_aarch64" if _ARM64.search(functions_template_text) else "manylinux2014_x86_64"
    return LambdaTarget(runtime.group(1) if runtime else "3.12", platform)


def _has_requirements(requirements: bytes) -> bool:
    return any(line.strip() and not line.strip().startswith(b"#") for line in requirements.splitlines())


def vendor_dependencies(requirements_file: Path, target: LambdaTarget, build_dir: Path,
                        python: str = sys.executable) -> Path:
    """requirements-lambda.txt installed for the Lambda's platform, cached in ``build_dir`` by content.

    The cache key covers the requirements and the target, so an unchanged deploy never runs pip.
    """
    requirements = requirements_file.read_bytes() if requirements_file.is_file() else b""
    key = short_hash(requirements + f"{target.python_version} {target.platform}\n".encode())
    vendor_dir = build_dir / f"vendor-{key}"
    if vendor_dir.is_dir():
        return vendor_dir
    build_dir.mkdir(parents=True, exist_ok=True)
    if not _has_requirements(requirements):
        vendor_dir.mkdir(exist_ok=True)
        return vendor_dir
    print(f"    Installing {requirements_file.name} for python{target.python_version} ({target.platform}) "
          f"into {vendor_dir}", file=sys.stderr)
    staging = Path(tempfile.mkdtemp(prefix="vendor-tmp.", dir=build_dir))
    # --no-deps: requirements-lambda.txt is the complete pinned list (boto3 comes from the Lambda runtime)
    command = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--no-deps", "--target", str(staging), "--platform", target.platform, "--implementation", "cp",
               "--python-version", target.python_version, "--only-binary=:all:", "-r", str(requirements_file)]
    try:
        pip = subprocess.run(command, capture_output=True, text=True, check=False)
        failed, output = pip.returncode != 0, pip.stdout + pip.stderr
    except OSError as exc:
        failed, output = True, f"{python}: {exc.strerror}\n"
    if failed:
        sys.stderr.write(output)
        shutil.rmtree(staging, ignore_errors=True)
        raise PackageError(f"pip could not install {requirements_file.name}")
    try:
        staging.rename(vendor_dir)
    except OSError:
        # another deploy finished the same cache entry meanwhile; both are identical
        shutil.rmtree(staging, ignore_errors=True)
    return vendor_dir


def _collect(base: Path, entries: dict[str, Path], only: str | None = None) -> None:
    # followlinks: src/auto_repair/knowledge_data is a link to knowledge/, and the zip must hold the files.
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        relative = Path(dirpath).relative_to(base)
        if only is not None and (not relative.parts or relative.parts[0] != only):
            dirnames[:] = [d for d in dirnames if not relative.parts and d == only]
            continue
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            arcname = (relative / name).as_posix()
            if arcname.startswith("bin/"):
                continue  # console scripts carry the build machine's interpreter path
            entries[arcname] = Path(dirpath) / name


def package_entries(src_root: Path, vendor_dir: Path) -> dict[str, Path]:
    """Archive name -> file: the vendored dependencies, then ``auto_repair`` (which wins a name clash)."""
    entries: dict[str, Path] = {}
    _collect(vendor_dir, entries)
    _collect(src_root, entries, only=SOURCE_PACKAGE)
    return entries


def write_zip(entries: Mapping[str, Path], build_dir: Path) -> tuple[str, Path]:
    """A zip whose bytes depend only on the entries' names and contents; returns (sha256, path).

    Named by its own hash, written beside its final name and renamed, so a concurrent build never sees half.
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix="package-", suffix=".zip.tmp", dir=build_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w") as archive:
            for arcname in sorted(entries):
                info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE_TIME)
                info.external_attr = ZIP_FILE_MODE << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, whichever system builds it
                archive.writestr(info, entries[arcname].read_bytes(), compresslevel=9)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        final = build_dir / f"auto-repair-{digest}.zip"
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return digest, final


def build_package(root: Path, build_dir: Path, python: str = sys.executable) -> tuple[str, Path]:
    """The code package of the project at ``root``: vendored dependencies + ``src/auto_repair``."""
    src_root = root / "src"
    if not (src_root / SOURCE_PACKAGE).is_dir():
        raise PackageError(f"source package not found: {src_root / SOURCE_PACKAGE}")
    functions_template = root / FUNCTIONS_TEMPLATE
    template_text = functions_template.read_text(encoding="utf-8") if functions_template.is_file() else ""
    vendor_dir = vendor_dependencies(root / REQUIREMENTS, lambda_target(template_text), build_dir, python)
    return write_zip(package_entries(src_root, vendor_dir), build_dir)


# ---------------------------------------------------------------------------------------------- commands
def _run_params(args: argparse.Namespace) -> int:
    try:
        template_text = Path(args.template).read_text(encoding="utf-8")
    except OSError as exc:
        raise PackageError(f"template not readable: {args.template} ({exc.strerror})") from None
    parameters = stack_parameters(declared_parameters(template_text), load_parameter_file(Path(args.parameter_file)),
                                  parse_overrides(args.overrides))
    print(json.dumps(parameters, separators=(",", ":"), ensure_ascii=False))
    return 0


def _run_hash(args: argparse.Namespace) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise PackageError(f"cannot read {args.file} ({exc.strerror})") from None
    print(short_hash(data))
    return 0


def _run_build(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    build_dir = Path(args.build_dir).resolve() if args.build_dir else root / ".build"
    digest, path = build_package(root, build_dir)
    print(digest, path)
    return 0


def _run_knowledge(args: argparse.Namespace) -> int:
    """Render knowledge/*.json (the entry model, the source) as the Markdown documents and metadata sidecars a
    Bedrock knowledge base ingests; deploy.sh uploads the output directory."""
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root / "src"))  # deploy.sh runs this module with tools/ only; the renderer is the product's
    from auto_repair.knowledge import KnowledgeError, load_entries_from_dir, render_entries

    try:
        written = render_entries(load_entries_from_dir(root / "knowledge"), Path(args.out))
    except KnowledgeError as exc:
        raise PackageError(str(exc)) from None
    print(len(written) // 2)
    return 0


def _reporting_errors(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except PackageError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1

    return run


def register(sub: Any) -> None:
    parser = sub.add_parser("package", help="stack parameters, content hashes and the code package (deploy.sh)",
                            description="What deploy.sh computes: stack parameters, content hashes, the code package.")
    commands = parser.add_subparsers(dest="package_command", metavar="COMMAND", required=True)

    params = commands.add_parser("params", help="a stack's parameters as CloudFormation's JSON list")
    params.add_argument("--template", required=True, help="the stack's template (YAML or JSON)")
    params.add_argument("--parameter-file", required=True, help='parameters/<env>.json: {"Key": value}')
    params.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="values that win over the file")
    params.set_defaults(func=_reporting_errors(_run_params))

    digest = commands.add_parser("hash", help="first 16 hex digits of a file's SHA-256")
    digest.add_argument("file", help="the file, or - for standard input")
    digest.set_defaults(func=_reporting_errors(_run_hash))

    build = commands.add_parser("build", help="build the Lambda code package; prints '<sha256> <zip path>'")
    build.add_argument("--root", default=".", help="the project directory (default: the current directory)")
    build.add_argument("--build-dir", default=None, help="where zips and the pip cache go (default: ROOT/.build)")
    build.set_defaults(func=_reporting_errors(_run_build))

    render = commands.add_parser("knowledge", help="render knowledge/*.json as Markdown + .md.metadata.json for "
                                                   "Bedrock; prints the number of documents")
    render.add_argument("--root", default=".", help="the project directory (default: the current directory)")
    render.add_argument("--out", required=True, help="directory to write <entryId>.md and its sidecar into")
    render.set_defaults(func=_reporting_errors(_run_knowledge))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="auto-repair")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["package", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
