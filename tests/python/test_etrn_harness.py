"""harness/python/etrn_harness.py against a real ``etrn-harness serve``, with smtplib as the
client. Run by tests/python_helper.rs (``ETRN_HARNESS_BIN`` names the binary just built)."""

import smtplib
import time

import pytest

import etrn_harness


def etrn(host, domain):
    """One session: EHLO, ETRN ``domain``, QUIT; the ETRN's reply code."""
    with smtplib.SMTP(host.smtp_host, host.smtp_port, timeout=10) as smtp:
        smtp.ehlo("client.example")
        code, _ = smtp.docmd("ETRN", domain)
    return code


def test_the_ready_line_names_both_addresses(smart_host):
    assert smart_host.ready["command"] == "serve"
    assert smart_host.smtp_host == "127.0.0.1" and smart_host.smtp_port > 0
    assert smart_host.api_url.startswith("http://127.0.0.1:")
    assert smart_host.api_url != f"http://127.0.0.1:{smart_host.smtp_port}"


def test_wait_for_etrn_returns_the_etrn_the_client_sent(smart_host):
    assert etrn(smart_host, "a.example") == 250
    etrns = smart_host.wait_for_etrn("A.EXAMPLE.", timeout=5)
    assert [(e["domain"], e["reply"]) for e in etrns] == [("a.example", 250)]


def test_wait_for_etrn_times_out_when_none_comes(smart_host):
    etrn(smart_host, "a.example")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="b.example"):
        smart_host.wait_for_etrn("b.example", timeout=1)
    assert time.monotonic() - started < 5


def test_a_script_as_dict_or_toml_answers_the_next_connection(smart_host):
    smart_host.script({"etrn_default": ["458 4.7.0 busy, try later"]})
    assert etrn(smart_host, "a.example") == 458
    smart_host.script('etrn = [{ arg = "b.example", reply = "251 OK, no messages waiting" }]\n')
    assert etrn(smart_host, "b.example") == 251
    with pytest.raises(etrn_harness.HarnessError) as refused:
        smart_host.script("etrn_default = 458\n")
    assert refused.value.status == 422 and "line 1" in str(refused.value)


def test_reset_forgets_and_recording_shows_what_came(smart_host):
    etrn(smart_host, "a.example")
    smart_host.wait_for_etrn("a.example")
    assert len(smart_host.recording()["sessions"]) == 1
    smart_host.reset()
    assert smart_host.recording()["sessions"] == []
    etrn(smart_host, "c.example")
    etrns = smart_host.wait_for_etrn("c.example")
    assert [e["domain"] for e in etrns] == ["c.example"]


def test_stop_returns_the_whole_recording_and_the_stop_line():
    host = etrn_harness.SmartHost(["--profile", "postfix"]).start()
    etrn(host, "a.example")
    etrn(host, "b.example")
    host.wait_for_etrn("b.example")
    recording = host.stop()
    domains = [line["domain"] for line in recording if line.get("event") == "etrn"]
    assert domains == ["a.example", "b.example"]
    assert sum(1 for line in recording if "closed" in line) == 2
    assert host.stopped["why"] == "terminated"
    assert (host.stopped["sessions"], host.stopped["etrn"]) == (2, 2)


def test_every_session_is_kept_unless_the_args_say_retain():
    host = etrn_harness.SmartHost().start()
    try:
        assert host.process.args[-2:] == ["--retain", "all"]
    finally:
        host.stop()
    host = etrn_harness.SmartHost(["--retain", "1"]).start()
    try:
        etrn(host, "a.example")
        etrn(host, "b.example")
        # Both closed (a wait on the count, which forgets nothing), the first forgotten.
        recording = host._request("GET", "/recording?sessions=2&timeout=5")
        assert [s["etrn"][0]["domain"] for s in recording["sessions"]] == ["b.example"]
        assert recording["forgotten"] == 1
    finally:
        host.stop()


def test_to_toml_writes_what_the_server_reads():
    text = etrn_harness.to_toml({
        "hostname": "mx.example",
        "served": ["a.example"],
        "etrn": [{"arg": "q\"uote.example", "reply": "250 ok\nsecond line"}],
        "helo_only": False,
    })
    assert text == (
        'hostname = "mx.example"\n'
        'served = ["a.example"]\n'
        'etrn = [{ arg = "q\\"uote.example", reply = "250 ok\\nsecond line" }]\n'
        "helo_only = false\n"
    )


def test_a_missing_binary_is_named_with_the_setting(monkeypatch):
    # No file there, and a folder: each said with the path tried and the setting to change.
    for named in ["no-such-dir/etrn-harness", "."]:
        monkeypatch.setenv("ETRN_HARNESS_BIN", named)
        with pytest.raises(etrn_harness.HarnessError) as raised:
            etrn_harness.SmartHost().start()
        message = str(raised.value)
        assert repr(named) in message and "ETRN_HARNESS_BIN" in message, message
