#!/usr/bin/env python3
"""fetchmail as an IMS dequeue client, for `etrn-harness run --exec`.

fetchmail has no notion of an IMS configuration: this adapter reads ETRN_HARNESS_CONFIG, derives
the ETRN domain set by the rules of the reference model (the planner of smtplib_ims.py), and runs
fetchmail in ETRN mode with those domains as --fetchdomains, once per connection of the delivery
cycle. fetchmail itself speaks SMTP: its EHLO, its keyword check, its reaction to each reply.

What fetchmail cannot do is left undone, and the known-deviations file next to this script says
why: it delivers no outbound mail, never sends TURN, never falls back to HELO, and stops at the
first ETRN reply other than 250, 252 or 253 (etrn.c).

    etrn-harness run --exec 'python3 harness/adapters/fetchmail_ims.py' \\
        --known harness/adapters/fetchmail-ims.known.toml
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtplib_ims  # noqa: E402


def main():
    if shutil.which("fetchmail") is None:
        sys.exit("fetchmail is not installed (Debian: apt-get install fetchmail)")
    config_path = os.environ.get("ETRN_HARNESS_CONFIG")
    if not config_path:
        sys.exit("ETRN_HARNESS_CONFIG is not set: run me through `etrn-harness run --exec`")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    host = os.environ["ETRN_HARNESS_HOST"]
    port = os.environ["ETRN_HARNESS_PORT"]
    planner = smtplib_ims.Client(config, host, int(port))
    dialup = config.get("dialup") or {}
    local = os.environ.get("ETRN_HARNESS_LOCAL_COMMANDS")
    if dialup.get("retrieval") == "command" and local:
        with open(local, "w", encoding="utf-8") as f:
            f.write(dialup["command"] + "\n")
    # fetchmail checks the EHLO keywords itself; plan as if the peer advertised ETRN.
    plan = planner.dequeue({"etrn"})
    if plan[0] != "etrn" or not plan[1]:
        return 0
    status = 0
    with tempfile.TemporaryDirectory(prefix="fetchmail-ims-") as home:
        for _ in range(planner.connections()):
            run = subprocess.run(
                [
                    "fetchmail", "--nosyslog",
                    # As root fetchmail locks /var/run/fetchmail.pid; keep parallel runs apart.
                    "--pidfile", os.path.join(home, "fetchmail.pid"),
                    "-p", "ETRN", "-P", port, "-t", "10",
                    "--fetchdomains", ",".join(plan[1]), host,
                ],
                env=dict(os.environ, HOME=home),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            sys.stderr.write(
                "".join(l + "\n" for l in run.stderr.splitlines() if "Running as root" not in l)
            )
            status = run.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
