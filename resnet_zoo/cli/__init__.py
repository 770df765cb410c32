"""The ``resnet-zoo`` command: parse, call the library, print.

One module per command group, each adding its commands to the parser: :mod:`.models` (list,
info, cpu, convert, weights), :mod:`.run` (predict, features, export), :mod:`.bench`,
:mod:`.train`; :mod:`.flags` holds the flag groups they share and the one way to print a
result. Choices come from the library's constants and defaults from its signatures.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn, Sequence

from .._version import __version__
from ..errors import ResNetZooError
from ..util.integrity import printable
from . import bench, models, run, train

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 1, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resnet-zoo", description="ResNets of He et al. 2016: list, inspect, run.")
    parser.add_argument("--version", action="version", version=f"resnet_zoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    models.add_commands(sub, _Parser)
    run.add_commands(sub)
    bench.add_commands(sub)
    train.add_commands(sub)
    for command in sub.choices.values():  # also after the command; SUPPRESS keeps a value given before
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more")
    return parser


class _OneLineFormatter(logging.Formatter):
    """Log records as one terminal-safe line each: text from a server or a file (a label, an
    ETag) cannot add lines or send escape sequences."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return printable(line) if record.exc_info is None else line


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLineFormatter("resnet-zoo: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose or args.debug else logging.WARNING, handlers=[handler])
    try:
        return args.func(args)
    except ResNetZooError as e:
        if args.debug:
            raise
        print(f"resnet-zoo: error: {printable(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("resnet-zoo: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # anything else: still one line, the traceback behind --debug
        if args.debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(
            f"resnet-zoo: error: {type(e).__name__}: {printable(first)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
