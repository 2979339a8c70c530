//! The API's OpenAPI document (`GET /openapi.json`) against a real `serve --api`: every endpoint the
//! server answers is in it and nothing else is, the answers of a real session (driven by a real SMTP
//! client library) validate against its schemas, and a real OpenAPI validator takes it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde_json::Value;

mod common;

const WAIT: Duration = Duration::from_secs(10);

/// The methods every path is asked with (HEAD is left out: HTTP answers it wherever GET is).
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// A running `etrn-harness serve --api`, killed when dropped.
struct Serve {
    child: Child,
    smtp: String,
    api: String,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .args(["serve", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let lines = lines_of(child.stdout.take().expect("stdout"));
        let next = || {
            lines
                .recv_timeout(WAIT)
                .expect("serve says where it listens")
        };
        let smtp = next()
            .strip_prefix("listening on ")
            .expect("the SMTP address first")
            .to_owned();
        let api = next()
            .strip_prefix("api on http://")
            .expect("the API's address second")
            .to_owned();
        // The rest of its output is read and dropped, so that serve never blocks on it.
        std::thread::spawn(move || lines.iter().for_each(drop));
        Serve { child, smtp, api }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(from: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// An HTTP answer: its status, its head in lower case, and its body (de-chunked).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n == name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.head
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The request line and headers of `method path`, with a body of `content_type` if given.
fn request_head(api: &str, method: &str, path: &str, body: Option<(&str, &str)>) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n");
    match body {
        Some((content_type, body)) => head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => head.push_str("Content-Length: 0\r\n\r\n"),
    }
    head
}

/// One request, its whole answer read (bounded by [`WAIT`]).
fn request(api: &str, method: &str, path: &str, body: Option<(&str, &str)>) -> Answer {
    raw_request(api, &request_head(api, method, path, body))
}

/// `head` sent as it is, its whole answer read (bounded by [`WAIT`]).
fn raw_request(api: &str, head: &str) -> Answer {
    let mut s = TcpStream::connect(api).expect("the API accepts");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(head.as_bytes()).expect("request sent");
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).expect("the answer, to its end");
    let text = String::from_utf8(bytes).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let head = head.to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let body = if head.contains("transfer-encoding: chunked") {
        dechunked(body)
    } else {
        body.to_owned()
    };
    Answer { status, head, body }
}

fn dechunked(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// The status of `method path` only: its answer is not read further (a live feed never ends).
fn status_of(api: &str, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(api).expect("the API accepts");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request_head(api, method, path, None).as_bytes())
        .expect("request sent");
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .expect("a status line");
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

fn document(api: &str) -> Value {
    let answer = request(api, "GET", "/openapi.json", None);
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

/// Every `(METHOD, path)` the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item");
            item.keys()
                .map(|m| (m.to_ascii_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `pointer` (a JSON pointer into `doc`) resolved through `$ref`s.
fn resolved<'d>(doc: &'d Value, pointer: &str) -> &'d Value {
    let found = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the document"));
    match found.get("$ref").and_then(Value::as_str) {
        Some(target) => resolved(doc, target.trim_start_matches('#')),
        None => found,
    }
}

/// A value the schema of a path parameter allows: its first `enum` or `oneOf` constant.
fn example(doc: &Value, schema: &str) -> String {
    let schema = resolved(doc, schema);
    let first = schema["enum"]
        .get(0)
        .or_else(|| schema["oneOf"].get(0).and_then(|s| s.get("const")));
    first
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no example value in {schema}"))
        .to_owned()
}

/// `path` with each `{parameter}` replaced by a value its schema allows.
fn concrete(doc: &Value, method: &str, path: &str) -> String {
    let key = path.replace('~', "~0").replace('/', "~1");
    let params = format!("/paths/{key}/{}/parameters", method.to_ascii_lowercase());
    let mut out = path.to_owned();
    for (i, p) in doc
        .pointer(&params)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if p["in"] == "path" {
            let name = p["name"].as_str().expect("a name");
            let value = example(doc, &format!("{params}/{i}/schema"));
            out = out.replace(&format!("{{{name}}}"), &value);
        }
    }
    assert!(!out.contains('{'), "a path parameter has no schema: {out}");
    out
}

#[test]
fn every_endpoint_the_server_answers_is_in_the_document_and_nothing_else_is() {
    let serve = Serve::start(&[]);
    let api = &serve.api;
    let doc = document(api);
    // The document is OpenAPI 3.1 in shape.
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let documented = operations(&doc);
    assert!(documented.len() >= 9, "{documented:?}");
    for (method, path) in &documented {
        let key = path.replace('/', "~1");
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(op["responses"]["200"].is_object(), "{method} {path}: {op}");
        assert!(op["summary"].is_string(), "{method} {key}");
    }
    // Each path asked with every method: answered (neither 404 nor 405) exactly when documented.
    let mut paths = std::collections::BTreeMap::new();
    for (method, path) in &documented {
        paths.entry(path).or_insert(method);
    }
    for (path, method) in paths {
        // The path with its parameters filled in, as an operation on it describes them.
        let asked = concrete(&doc, method, path);
        for method in METHODS {
            let described = documented.contains(&(method.to_owned(), path.clone()));
            let status = status_of(api, method, &asked);
            if described {
                assert!(
                    status != 404 && status != 405,
                    "{method} {asked} is documented but answered {status}"
                );
            } else {
                assert_eq!(status, 405, "{method} {asked} is not documented");
            }
        }
    }
    // Paths beside the documented ones have no endpoint.
    for path in [
        "/openapi",
        "/openapi.yaml",
        "/recording/1",
        "/etrn/",
        "/profile",
        "/profile/postfix/x",
        "/docs",
        "/swagger.json",
    ] {
        for method in METHODS {
            assert_eq!(status_of(api, method, path), 404, "{method} {path}");
        }
    }
    // What `GET /` lists is what the document describes.
    let index = request(api, "GET", "/", None).json();
    let listed: BTreeSet<(String, String)> = index["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| {
            let (method, rest) = e.as_str()?.split_once(' ')?;
            let path = rest.split(':').next()?;
            Some((method.to_owned(), path.to_owned()))
        })
        .collect();
    assert_eq!(listed, documented);
    // And so does the README's table of endpoints.
    assert_eq!(readme_endpoints(), documented);
}

/// The `METHOD /path` of each row of the README's table of API endpoints.
fn readme_endpoints() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("### From any language: the HTTP API")
        .nth(1)
        .expect("the API section");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| method and path |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| {
            let cell = row.split('|').nth(1)?.trim().trim_matches('`');
            let (method, path) = cell.split_once(' ')?;
            Some((method.to_owned(), path.to_owned()))
        })
        .collect()
}

/// Validates JSON against the schemas of one document: each at a JSON pointer into it, so that
/// its `$ref`s resolve within the document.
struct Schemas {
    doc: Value,
}

impl Schemas {
    fn validator(&self, pointer: &str) -> jsonschema::Validator {
        let mut root = self.doc.clone();
        root["$schema"] = "https://json-schema.org/draft/2020-12/schema".into();
        // A fragment is a URI's: the braces of a path template are escaped.
        let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
        root["$ref"] = format!("#{fragment}").into();
        jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{pointer}: {e}"))
    }

    /// The errors of `instance` against the schema at `pointer`.
    fn errors(&self, pointer: &str, instance: &Value) -> Vec<String> {
        assert!(self.doc.pointer(pointer).is_some(), "no {pointer}");
        self.validator(pointer)
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }

    /// Where the document describes the answer `status` to `method path`: its own entry, or
    /// `default` (errors).
    /// Whether the document lists `status` among the answers of `method path` (not `default`).
    fn lists(&self, method: &str, path: &str, status: u16) -> bool {
        let pointer = format!(
            "/paths/{}/{}/responses/{status}",
            path.replace('/', "~1"),
            method.to_ascii_lowercase()
        );
        self.doc.pointer(&pointer).is_some()
    }

    fn answer_pointer(&self, method: &str, path: &str, status: u16, media: &str) -> String {
        let responses = format!(
            "/paths/{}/{}/responses",
            path.replace('/', "~1"),
            method.to_ascii_lowercase()
        );
        let listed = self.doc.pointer(&format!("{responses}/{status}")).is_some();
        let which = if listed {
            status.to_string()
        } else {
            "default".into()
        };
        format!(
            "{responses}/{which}/content/{}/schema",
            media.replace('/', "~1")
        )
    }

    /// Asserts that `answer`, to `method` on the documented `path`, is as the document says.
    fn check(&self, method: &str, path: &str, answer: &Answer) {
        let pointer = self.answer_pointer(method, path, answer.status, "application/json");
        let errors = self.errors(&pointer, &answer.json());
        assert!(
            errors.is_empty(),
            "{method} {path} answered {} not as documented:\n{}\n{}",
            answer.status,
            errors.join("\n"),
            answer.body
        );
    }
}

/// The server-sent events on `stream` until one named `last` (bounded by the read timeout): each
/// event's name and data. The body is chunked, one chunk per event (hyper writes each frame of
/// the stream as a chunk), so a chunk-size line falls between events and is passed over.
fn events_until(stream: &mut BufReader<TcpStream>, last: &str) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let (mut name, mut data) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        let n = stream.read_line(&mut line).expect("the feed goes on");
        assert!(n > 0, "the feed ended before a {last} event");
        // A chunk-size line of the chunked body is no field of an event.
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data = v.trim().to_owned();
        } else if line.is_empty() && !name.is_empty() {
            let done = name == last;
            events.push((std::mem::take(&mut name), std::mem::take(&mut data)));
            if done {
                return events;
            }
        }
    }
}

/// A real SMTP client library: one session with ETRNs and a message.
fn smtp_session(smtp: &str) {
    let port: u16 = smtp
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut client = mail_send::SmtpClientBuilder::new("127.0.0.1", port)
            .expect("builder")
            .implicit_tls(false)
            .helo_host("client.example")
            .timeout(WAIT)
            .connect_plain()
            .await
            .expect("an SMTP session");
        let replies = client
            .cmds([
                &b"ETRN a.example\r\n"[..],
                b"ETRN @b.example\r\n",
                b"ETRN #q1\r\n",
            ])
            .await
            .expect("ETRNs answered");
        assert_eq!(replies.len(), 3);
        client
            .send(mail_send::smtp::message::Message::new(
                "from@client.example",
                ["to@a.example"],
                &b"Subject: hi\r\n\r\nhello\r\n"[..],
            ))
            .await
            .expect("a message sent");
        client.quit().await.expect("quit");
    });
}

#[test]
fn real_answers_validate_against_the_document() {
    let serve = Serve::start(&[]);
    let api = &serve.api;
    let schemas = Schemas { doc: document(api) };
    // The schemas are no formality: what the server never answers is refused.
    let recording = schemas.answer_pointer("GET", "/recording", 200, "application/json");
    assert!(
        !schemas
            .errors(&recording, &serde_json::json!({}))
            .is_empty()
    );
    let error = schemas.answer_pointer("GET", "/recording", 408, "application/json");
    assert!(
        !schemas
            .errors(&error, &serde_json::json!({ "error": 1 }))
            .is_empty()
    );

    // The live feed, followed from before the session.
    let mut feed = TcpStream::connect(api).expect("the API accepts");
    feed.set_read_timeout(Some(WAIT)).expect("timeout");
    feed.write_all(request_head(api, "GET", "/events", None).as_bytes())
        .expect("request sent");
    let mut feed = BufReader::new(feed);
    let mut status = String::new();
    feed.read_line(&mut status).expect("a status line");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    smtp_session(&serve.smtp);

    let events = events_until(&mut feed, "closed");
    let data = format!(
        "{}/x-event-data",
        schemas.answer_pointer("GET", "/events", 200, "text/event-stream")
    );
    let names: BTreeSet<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["opened", "event", "closed"]));
    for (name, text) in &events {
        let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let errors = schemas.errors(&data, &value);
        assert!(errors.is_empty(), "{name} {text}:\n{}", errors.join("\n"));
    }

    // The recording checked below holds the session's ETRNs, commands and message.
    let whole = request(api, "GET", "/recording?sessions=1", None).json();
    let session = &whole["sessions"][0];
    assert_eq!(session["etrn"].as_array().map(Vec::len), Some(3), "{whole}");
    assert_eq!(
        session["messages"].as_array().map(Vec::len),
        Some(1),
        "{whole}"
    );

    // Each endpoint's answers, successes and errors.
    let json = Some((
        "application/json",
        r#"{"profile": "exim", "served": ["a.example"]}"#,
    ));
    for (method, path, asked, body, expected) in [
        ("GET", "/", "/", None, 200),
        ("GET", "/etrn", "/etrn?wait=a.example&timeout=5", None, 200),
        ("GET", "/etrn", "/etrn?after=1&limit=1", None, 200),
        (
            "GET",
            "/etrn",
            "/etrn?wait=never.example&timeout=0.1",
            None,
            408,
        ),
        ("GET", "/etrn", "/etrn?limit=0", None, 400),
        ("GET", "/recording", "/recording?sessions=1", None, 200),
        ("GET", "/recording", "/recording?after=0&limit=1", None, 200),
        ("GET", "/recording", "/recording?timeout=soon", None, 400),
        ("GET", "/script", "/script", None, 200),
        ("PUT", "/script", "/script", json, 200),
        ("GET", "/script", "/script", None, 200),
        (
            "PUT",
            "/script",
            "/script",
            Some(("application/toml", "profile = ")),
            422,
        ),
        (
            "PUT",
            "/script",
            "/script",
            Some(("text/plain", "profile = \"exim\"")),
            415,
        ),
        ("PUT", "/profile/{name}", "/profile/postfix", None, 200),
        ("PUT", "/profile/{name}", "/profile/qmail", None, 404),
        (
            "PUT",
            "/profile/{name}",
            "/profile/postfix",
            Some(("text/plain", "x")),
            415,
        ),
        ("GET", "/openapi.json", "/openapi.json", None, 200),
        ("POST", "/reset", "/reset", None, 200),
        ("GET", "/recording", "/recording", None, 200),
        ("GET", "/etrn", "/etrn", None, 200),
    ] {
        let answer = request(api, method, asked, body);
        assert_eq!(answer.status, expected, "{method} {asked}: {}", answer.body);
        // Every answer an endpoint gives is listed as its own, not left to `default`.
        assert!(
            schemas.lists(method, path, expected),
            "{method} {path}: {expected} is not listed"
        );
        schemas.check(method, path, &answer);
        if asked.contains("after=") && expected == 200 {
            let next = answer.header("next-after").expect("Next-After on a page");
            assert!(next.parse::<u64>().is_ok(), "{next}");
        }
    }
    // A body declared beyond the cap: refused before it is read.
    let answer = raw_request(
        api,
        &format!(
            "PUT /script HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/toml\r\n\
             Content-Length: 1800000\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(schemas.lists("PUT", "/script", 413));
    schemas.check("PUT", "/script", &answer);
    // An answer from no endpoint is an error in the documented shape too.
    let errors = "/components/schemas/ErrorBody";
    for (method, path, expected) in [("GET", "/nowhere", 404), ("DELETE", "/script", 405)] {
        let answer = request(api, method, path, None);
        assert_eq!(answer.status, expected);
        let found = schemas.errors(errors, &answer.json());
        assert!(found.is_empty(), "{method} {path}: {}", found.join("\n"));
    }
}

#[test]
fn schema_openapi_prints_the_document_the_server_serves() {
    let serve = Serve::start(&[]);
    let served = request(&serve.api, "GET", "/openapi.json", None).body;
    let printed = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["schema", "--openapi"])
        .output()
        .expect("schema runs");
    assert!(printed.status.success());
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim_end(), served);
    // It is one of the three documents `schema` prints, never two at once.
    let both = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["schema", "--openapi", "--report"])
        .output()
        .expect("schema runs");
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn a_real_openapi_validator_takes_the_document() {
    let probe = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            !common::ci(),
            "Python's openapi-spec-validator is required under CI=true but is not installed"
        );
        eprintln!("SKIPPED: Python's openapi-spec-validator is not installed; .ci/run installs it");
        return;
    }
    let serve = Serve::start(&[]);
    let doc = request(&serve.api, "GET", "/openapi.json", None).body;
    let mut validator = Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import OpenAPIV31SpecValidator\n\
             OpenAPIV31SpecValidator(json.load(sys.stdin)).validate()\n\
             print('valid OpenAPI 3.1')",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    validator
        .stdin
        .take()
        .expect("stdin")
        .write_all(doc.as_bytes())
        .expect("the document sent");
    let pid = validator.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(validator.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("output"),
        Err(e) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("the validator did not finish within 60 s: {e}");
        }
    };
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("valid OpenAPI 3.1"), "{said}");
}
