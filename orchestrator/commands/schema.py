"""`orchestrator schema export`: write the published contract's JSON Schemas, examples and AsyncAPI
document (generated from the models: `orchestrator.schemas`)."""

from __future__ import annotations

import argparse

from orchestrator.commands.output import OK, print_json
from orchestrator.config import Settings
from orchestrator.schemas import export


def main(args: argparse.Namespace, settings: Settings) -> int:
    written = export.export(args.dir)
    if args.output == "json":
        print_json([str(path) for path in written])
    else:
        for path in written:
            print(path)
    return OK
