"""The `flexo` command line (DESIGN §4): one module per command group, named after it.

Each command parses its options, calls one function (a component or a flow) and prints a
summary; `app` holds the Typer app, the error mapping and `main`, `options` the shared options,
`console` the live display and the log file, `render` the shared tables.
"""

from flows.cli import (  # noqa: F401  (each module registers its commands, in help order)
    accept,
    anchor,
    audit,
    contribute,
    credits,
    data,
    demo,
    deploy,
    evaluate,
    expert,
    generate,
    infra,
    ledger,
    lineage,
    merge,
    policy,
    release,
    review,
    serve,
    validate,
    withdraw,
)
from flows.cli.app import app, main

__all__ = ["app", "main"]
