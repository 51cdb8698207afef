#!/usr/bin/env python3
"""Prints the curl commands quoted in the given Markdown files, one per line, as written.

Only fenced code blocks are read; a shell prompt ("$ ") is dropped, continuation lines
(ending in a backslash) are joined, and whatever else a block holds (other commands, the
output shown after a request) is left out.
"""
import sys


def requests(text):
    out = []
    in_block = False
    pending = None
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            pending = None
            continue
        if not in_block:
            continue
        if pending is not None:
            pending += " " + line.strip()
        else:
            stripped = line.strip()
            if stripped.startswith("$ "):
                stripped = stripped[2:]
            if not stripped.startswith("curl "):
                continue
            pending = stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        out.append(pending)
        pending = None
    return out


def main():
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            for command in requests(f.read()):
                print(command)


if __name__ == "__main__":
    main()
