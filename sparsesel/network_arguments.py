"""``--net`` and ``--trust-code``: the options every command that reads a network file shares.

A network file records how to rebuild its network: a built-in name, or the factory
``package.module:function`` of a user's own network. Rebuilding the latter imports that module,
which runs its code, so a command does it only when the user opts in: by naming the factory
(``--net package.module:function``: the file must hold that network; it may then also be a plain
state dict of it) or with ``--trust-code`` (any factory the file names). Building the parser
imports neither torch nor any network.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_network_arguments", "check_network_argument", "load_network"]


def add_network_arguments(parser: argparse.ArgumentParser, *, what: str = "CHECKPOINT") -> None:
    """Add ``--net`` and ``--trust-code`` to ``parser``."""
    parser.add_argument("--net", default=None, metavar="NET",
                        help=f"the network {what} holds: a built-in name, or your own network's factory "
                             "package.module:function (a function returning the nn.Module; its module is imported, "
                             f"so its code runs: naming it is the opt-in). With a factory, {what} may also be a plain "
                             "state dict of the network it builds")
    parser.add_argument("--trust-code", action="store_true",
                        help=f"allow a {what} whose network was built by a factory (recorded in the file) to import and "
                             "run that factory's module; only for a file from a source you trust (not needed when "
                             "--net names the factory)")


def check_network_argument(net: Any) -> None:
    """Refuse a ``--net`` that is neither a built-in name nor ``package.module:function`` (before any work)."""
    from sparsesel.nets.adapter import is_factory_spec, net_names

    if net is not None and not is_factory_spec(net) and net not in net_names():
        raise ValueError(f"--net must be one of {', '.join(net_names())} or a factory package.module:function, got {net!r}")


def load_network(args: argparse.Namespace, path: Any = None) -> tuple[Any, dict]:
    """The network of ``path`` (default ``args.checkpoint``) with the user's ``--net`` / ``--trust-code``
    (:func:`sparsesel.compress.load_compressed`)."""
    from sparsesel.compress.apply import load_compressed

    check_network_argument(args.net)
    return load_compressed(args.checkpoint if path is None else path, trust_code=bool(args.trust_code), net=args.net)
