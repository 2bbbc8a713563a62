"""``auto-repair``: the operator's command line. Subcommands live in their own modules, imported lazily."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; each module exposes register(subparsers) which adds its parser and sets func=run(args)->int
COMMANDS: dict[str, str] = {
    "local": "auto_repair_cli.local",
    "diagnose": "auto_repair_cli.diagnose",
    "approve": "auto_repair_cli.approval",
    "reject": "auto_repair_cli.approval",
    "incidents": "auto_repair_cli.incidents",
    "demo": "auto_repair_cli.demo",
    "targets": "auto_repair_cli.targets",
    "package": "auto_repair_cli.package",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="auto-repair", description="Lambda Auto-Repair operator commands")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    seen: set[str] = set()
    for name, module_name in COMMANDS.items():
        if module_name in seen:
            continue
        if wanted is not None and COMMANDS[wanted] != module_name:
            # Only the chosen command's module is imported; the others just appear in --help.
            sub.add_parser(name)
            continue
        seen.add(module_name)
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
