#!/usr/bin/env python3
"""An IMS dequeue client on Python's smtplib, for `etrn-harness run --exec`.

It reads the scenario's IMS configuration from ETRN_HARNESS_CONFIG (the JSON rendering of the
`[ims]` table), derives what Exchange 5.5 IMS sends by the rules of the reference model
(scenarios/README.md, rows B and O), and speaks SMTP to ETRN_HARNESS_HOST:ETRN_HARNESS_PORT: EHLO (HELO if
refused), the queued outbound messages, the ETRNs reacting to each reply, QUIT.

It is a second, independent implementation of the model, so the corpus checks it the way it checks
any client. The class `Client` has one method per decision, so a test fixture can subclass it and
get one thing wrong (tests/fixtures/wrong/).

    etrn-harness run --exec 'python3 harness/adapters/smtplib_ims.py'
"""

import base64
import json
import os
import smtplib
import sys


def normalise(domain):
    """The comparison form: lower case, no trailing dot, A-labels."""
    d = domain.rstrip(".").lower()
    try:
        return d.encode("idna").decode("ascii")
    except UnicodeError:
        return d


def enabled(config, key):
    return config.get("registry", {}).get(key) == 1


class Client:
    """The IMS as an ETRN client. Each method is one rule of the model."""

    newline = "\r\n"

    def __init__(self, config, host, port):
        self.config = config
        self.host = host
        self.port = port
        self.local_commands = []

    # ----- the plan -----

    def can_send_etrn(self):
        """KB184185: Exchange 5.0 SP1 or later."""
        return self.config.get("version", "5.5") in ("5.0-sp1", "5.5")

    def dialup(self):
        return self.config.get("dialup")

    def connections(self):
        """KB241157: no outbound mail, no connection (unless dial-up ETRN retrieval)."""
        dialup = self.dialup() or {}
        dialup_etrn = dialup.get("retrieval") == "etrn" and self.can_send_etrn()
        if self.config.get("outbound_messages", 0) == 0 and not dialup_etrn:
            return 0
        delivery = self.config.get("delivery", {"mode": "dns"})
        hosts = len(delivery.get("mx_hosts", [])) if delivery.get("mode") == "dns" else 1
        return max(hosts, 1) * self.config.get("connections_per_host", 1)

    def site_domain(self):
        """KB269771 and the O-16 baseline: the text after the last '@'."""
        return self.config["site_address"].rsplit("@", 1)[1]

    def always_use_etrn_domains(self):
        """T2/T3: the site domain, or every routing-table row ('#' stripped)."""
        if self.config.get("routing", "reroute") == "do-not-reroute":
            return [self.site_domain()]
        return [row["sent_to"].lstrip("#") for row in self.config.get("routing_table", [])]

    def domains(self):
        """The ETRN domain set of one connection, in order, without duplicates."""
        dialup = self.dialup() or {}
        always = enabled(self.config, "AlwaysUseETRN")
        listed = dialup.get("domains", []) if dialup.get("retrieval") == "etrn" else None
        out = []
        if listed is not None:
            # The O-13 baseline: a dial-up list replaces the AlwaysUseETRN set.
            out += listed if listed else self.always_use_etrn_domains()
        elif always:
            out += self.always_use_etrn_domains()
        seen, unique = set(), []
        for d in out:
            if normalise(d) not in seen:
                seen.add(normalise(d))
                unique.append(d)
        return unique

    def dequeue(self, peer_keywords):
        """What follows the outbound mail: ('etrn', domains), ('turn',) or ('nothing',)."""
        if not self.can_send_etrn():
            return ("nothing",)
        if enabled(self.config, "AlwaysUseTURN"):
            if self.config.get("turn_credentials") and self.advertised(peer_keywords, "auth"):
                return ("turn",)
            return ("nothing",)
        dialup = self.dialup() or {}
        if not enabled(self.config, "AlwaysUseETRN") and dialup.get("retrieval") != "etrn":
            return ("nothing",)
        if peer_keywords is None or not self.may_send_etrn(peer_keywords):
            return ("nothing",)
        return ("etrn", self.domains())

    def advertised(self, keywords, word):
        return keywords is not None and word in keywords

    def may_send_etrn(self, keywords):
        """KB175494: only to hosts that advertise ETRN."""
        return self.advertised(keywords, "etrn")

    def etrn_argument(self, domain):
        """RFC 1985 section 5: the node name alone, no option character."""
        return domain

    def react(self, code):
        """The O-11 baseline: stop after 500/501, hang up after 421, otherwise go on."""
        if code == 421:
            return "disconnect"
        if code in (500, 501):
            return "stop"
        return "continue"

    # ----- the wire -----

    def command(self, smtp, line):
        # Raw UTF-8, as fetchmail sends U-labels; smtplib's own encoding is ASCII only.
        smtp.send((line + self.newline).encode("utf-8"))
        return smtp.getreply()

    def deliver(self, smtp, n, plan):
        """Outbound message n (0-based). `plan` is what follows the mail (see `dequeue`).
        False when the server answered 421: the connection is closing, send nothing more."""
        # The sender's domain: the site address's, after its last '@' (not a rule under test).
        sender = "postmaster@" + self.config["site_address"].rsplit("@", 1)[-1].rstrip(".")
        code, _ = self.command(smtp, "MAIL FROM:<%s>" % sender)
        if code == 421:
            return False
        if code != 250:
            return True
        code, _ = self.command(smtp, "RCPT TO:<someone@remote.example>")
        if code == 421:
            return False
        if code not in (250, 251):
            code, _ = self.command(smtp, "RSET")
            return code != 421
        code, _ = self.command(smtp, "DATA")
        if code != 354:
            return code != 421
        # Message data is not a command line: always CRLF, ending at CRLF.CRLF.
        body = "Subject: outbound message %d\r\n\r\nqueued by the IMS\r\n.\r\n" % (n + 1)
        smtp.send(body.encode("utf-8"))
        code, _ = smtp.getreply()
        return code != 421

    def send_etrns(self, smtp, domains):
        """One ETRN per domain, reacting to each reply; False when the server hung up."""
        for domain in domains:
            code, _ = self.command(smtp, "ETRN " + self.etrn_argument(domain))
            reaction = self.react(code)
            if reaction == "disconnect":
                smtp.close()
                return False
            if reaction == "stop":
                break
        return True

    def session(self):
        name = self.config.get("fqdn") or self.site_domain()
        smtp = smtplib.SMTP(timeout=10)
        code, _ = smtp.connect(self.host, self.port)
        if code == 421:
            smtp.close()
            return
        if code // 100 != 2:
            smtp.quit()
            return
        code, _ = smtp.ehlo(name)
        if code == 421:
            # RFC 5321 section 3.8: the server is closing; nothing more, not even HELO.
            smtp.close()
            return
        if code // 100 == 2:
            keywords = self.ehlo_keywords(smtp)
        else:
            code, _ = smtp.helo(name)
            if code == 421:
                smtp.close()
                return
            if code // 100 != 2:
                smtp.quit()
                return
            keywords = None
        plan = self.dequeue(keywords)
        for n in range(self.config.get("outbound_messages", 0)):
            if self.deliver(smtp, n, plan) is False:
                smtp.close()
                return
        if plan[0] == "turn":
            cred = self.config["turn_credentials"]
            token = base64.b64encode(
                ("\0%s\0%s" % (cred["username"], cred["password"])).encode()).decode()
            code, _ = self.command(smtp, "AUTH PLAIN " + token)
            if code == 235:
                code, _ = self.command(smtp, "TURN")
                if code == 421:
                    smtp.close()
                    return
        elif plan[0] == "etrn":
            if not self.send_etrns(smtp, plan[1]):
                return
        self.finish(smtp)

    def ehlo_keywords(self, smtp):
        """RFC 5321 section 2.4: keywords compare case-insensitively (smtplib lower-cases them)."""
        return set(smtp.esmtp_features)

    def finish(self, smtp):
        """QUIT; a server that closes without answering it is fine."""
        try:
            smtp.quit()
        except smtplib.SMTPServerDisconnected:
            pass

    def run(self):
        dialup = self.dialup() or {}
        if dialup.get("retrieval") == "command":
            # Reported, never run: the harness only checks that it would be.
            self.local_commands.append(dialup["command"])
        for _ in range(self.connections()):
            self.session()


def main(client_class=Client):
    config_path = os.environ.get("ETRN_HARNESS_CONFIG")
    if not config_path:
        sys.exit("ETRN_HARNESS_CONFIG is not set: run me through `etrn-harness run --exec`")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    client = client_class(config, os.environ["ETRN_HARNESS_HOST"], int(os.environ["ETRN_HARNESS_PORT"]))
    client.run()
    local = os.environ.get("ETRN_HARNESS_LOCAL_COMMANDS")
    if local and client.local_commands:
        with open(local, "w", encoding="utf-8") as f:
            f.write("\n".join(client.local_commands) + "\n")


if __name__ == "__main__":
    main()
