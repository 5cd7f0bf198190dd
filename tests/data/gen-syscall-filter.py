#!/usr/bin/env python3
"""Regenerates tests/data/systemd-syscall-filter.txt, the syscall groups that the
shipped unit's SystemCallFilter= lines name, for tests/systemd_filter.rs.

Needs systemd-analyze (Debian: the systemd package) and the kernel's x86_64
syscall table (linux-libc-dev). CI never runs this: the output is committed.
Run from the repository root:
    python3 tests/data/gen-syscall-filter.py > tests/data/systemd-syscall-filter.txt
"""
import datetime
import re
import subprocess

GROUPS = ["@system-service", "@privileged", "@resources"]
UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"


def expand(group):
    out = subprocess.run(["systemd-analyze", "syscall-filter", group],
                         capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        names |= expand(name) if name.startswith("@") else {name}
    return names


numbers = {}
for line in open(UNISTD):
    m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
    if m:
        numbers[m.group(1)] = int(m.group(2))
version = subprocess.run(["systemd-analyze", "--version"], capture_output=True,
                         text=True, check=True).stdout.splitlines()[0]
print("# The syscall groups the shipped unit's SystemCallFilter= lines name, expanded")
print("# recursively, with the x86_64 number of each syscall. Names that do not exist on")
print("# x86_64 (setuid32, ...) are left out: systemd skips them on this architecture.")
print(f"# Generated {datetime.date.today()} by tests/data/gen-syscall-filter.py from")
print(f"# `systemd-analyze syscall-filter GROUP` of {version}, Debian 12,")
print(f"# and {UNISTD}.")
for group in GROUPS:
    print()
    print(f"[{group}]")
    for name in sorted(n for n in expand(group) if n in numbers):
        print(f"{name} {numbers[name]}")
