"""`samroto keys`: the CURVE keys of a worker on a network address.

A worker bound to a non-loopback address accepts only clients whose public key is in its
authorised-keys file (`<config>/curve/authorized_keys`), the way SSH does:

    client machine:  samroto keys show                 prints this machine's client public key
    worker machine:  samroto keys add KEY [--comment]  authorises it (a running worker picks it up)
                     samroto keys list                 the authorised keys

KEY is the 40-character key, or a file holding it (the client's `curve/client.key`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samroto.bridge import auth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_action", metavar="ACTION")
    sub.add_parser("show", help="print this machine's CURVE client public key (created on first use)")
    add = sub.add_parser("add", help="authorise a client's public key on this (worker) machine")
    add.add_argument("key", metavar="KEY", help="the client's public key (40 characters) or a file holding it")
    add.add_argument("--comment", default="", help="a note kept beside the key (who, which machine)")
    sub.add_parser("list", help="the client keys this machine's worker accepts")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "keys_action", None)
    try:
        if action == "show":
            public, _ = auth.load_or_create_client_keys()
            print(public.decode("ascii"))
            print("authorise it on the worker's machine with: samroto keys add %s" % public.decode("ascii"),
                  file=sys.stderr)
            return 0
        if action == "add":
            text = args.key
            candidate = Path(text).expanduser()
            if len(text) != 40 and candidate.is_file():
                text = candidate.read_text(encoding="utf-8")
            key = auth.parse_public_key(text)
            path, added = auth.add_authorized_key(key, args.comment)
            print(("authorised %s in %s" if added else "%s was already authorised in %s") % (key.decode(), path))
            return 0
        if action == "list":
            path = auth.authorized_keys_path()
            keys = auth.read_authorized_keys(path) if path.exists() else []
            for key in keys:
                print(key.decode("ascii"))
            if not keys:
                print("no client keys authorised in %s" % path, file=sys.stderr)
            return 0
    except (auth.AuthError, OSError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    print("usage: samroto keys {show,add,list}", file=sys.stderr)
    return 2
