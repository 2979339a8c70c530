//! The API's table of endpoints: each with its method, path, handler and what the OpenAPI document
//! says of it. The router ([`super::router`]) and the document ([`super::openapi`]) are both built
//! from [`endpoints`], so neither can have an endpoint the other lacks.

use std::sync::OnceLock;

use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use super::openapi;
use super::{
    ApiState, EtrnOfSession, FeedData, Index, ProfilePath, ResetDone, ScriptInstalled, WaitQuery,
    etrn, events, get_script, index, put_profile, put_script, recording, reset,
};
use crate::proto::{Recording, SmartHostScript};

/// One endpoint: its method and path, its handler, and what the OpenAPI document says of it.
pub(super) struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub handler: MethodRouter<ApiState>,
    pub doc: openapi::Operation,
}

impl Endpoint {
    fn new<H, T>(
        method: EndpointMethod,
        path: &'static str,
        handler: H,
        doc: openapi::Operation,
    ) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        let (method, filter) = match method {
            EndpointMethod::Get => (Method::GET, MethodFilter::GET),
            EndpointMethod::Post => (Method::POST, MethodFilter::POST),
            EndpointMethod::Put => (Method::PUT, MethodFilter::PUT),
        };
        Endpoint {
            method,
            path,
            handler: on(filter, handler),
            doc,
        }
    }
}

/// The methods the API's endpoints take: each is both the router's filter and the document's.
#[derive(Debug, Clone, Copy)]
enum EndpointMethod {
    Get,
    Post,
    Put,
}

/// Every endpoint of the API, in the order `GET /` lists them.
///
/// Long because it is one table: an entry per route with its documentation, so adding a route
/// touches one place.
pub(super) fn endpoints() -> Vec<Endpoint> {
    use openapi::{Answer, Content, Operation, fields, schema};
    let ok = StatusCode::OK;
    let waits = || {
        vec![
            Answer::error(
                StatusCode::BAD_REQUEST,
                "a query that does not parse, or a bad `after` or `limit`",
            ),
            Answer::error(StatusCode::REQUEST_TIMEOUT, "the wait ran out"),
            Answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server stopped while the request waited",
            ),
        ]
    };
    let installed = || {
        vec![
            Answer::json(
                ok,
                "the script answers from the next connection on",
                schema::<ScriptInstalled>,
            ),
            Answer::error(
                StatusCode::FORBIDDEN,
                "a cassette outside the cassette folder",
            ),
            Answer::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the script does not parse or cannot be used, placed by line and column",
            ),
        ]
    };
    // The middleware answers it for every request with a body it does not take.
    let unsupported = || {
        Answer::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a body whose Content-Type is not application/toml, text/toml or application/json",
        )
    };
    vec![
        Endpoint::new(
            EndpointMethod::Get,
            "/",
            index,
            Operation {
                summary: "where the SMTP server listens, the profile, and the endpoints",
                query: None,
                path: None,
                body: Vec::new(),
                answers: vec![Answer::json(ok, "the index", schema::<Index>)],
            },
        ),
        Endpoint::new(
            EndpointMethod::Get,
            "/recording",
            recording,
            Operation {
                summary: "the recording of the sessions held, or a page of them; waits when asked",
                query: Some(fields::<WaitQuery>),
                path: None,
                body: Vec::new(),
                answers: [Answer::json(ok, "the recording", schema::<Recording>).paged()]
                    .into_iter()
                    .chain(waits())
                    .collect(),
            },
        ),
        Endpoint::new(
            EndpointMethod::Get,
            "/etrn",
            etrn,
            Operation {
                summary: "every ETRN of the sessions held in the order recorded, each with its \
                          session, or a page of them; waits when asked",
                query: Some(fields::<WaitQuery>),
                path: None,
                body: Vec::new(),
                answers: [
                    Answer::json(ok, "the ETRNs", schema::<Vec<EtrnOfSession<'static>>>).paged(),
                ]
                .into_iter()
                .chain(waits())
                .collect(),
            },
        ),
        Endpoint::new(
            EndpointMethod::Get,
            "/events",
            events,
            Operation {
                summary: "the live feed: a server-sent event `opened`, `event` or `closed` per \
                          session event (its data: the line `serve --events jsonl` prints), \
                          `missed` when the feed fell behind",
                query: None,
                path: None,
                body: Vec::new(),
                answers: vec![Answer {
                    status: ok,
                    description: "server-sent events until the server stops; each event's data \
                                  is the JSON of `x-event-data`",
                    content: Content::EventStream(schema::<FeedData<'static>>),
                    paged: false,
                }],
            },
        ),
        Endpoint::new(
            EndpointMethod::Post,
            "/reset",
            reset,
            Operation {
                summary: "forget what was recorded",
                query: None,
                path: None,
                body: Vec::new(),
                answers: vec![Answer::json(
                    ok,
                    "the recording is empty",
                    schema::<ResetDone>,
                )],
            },
        ),
        Endpoint::new(
            EndpointMethod::Get,
            "/script",
            get_script,
            Operation {
                summary: "the script new connections get, as JSON: what `PUT /script` takes",
                query: None,
                path: None,
                body: Vec::new(),
                answers: vec![Answer::json(ok, "the script", schema::<SmartHostScript>)],
            },
        ),
        Endpoint::new(
            EndpointMethod::Put,
            "/script",
            put_script,
            Operation {
                summary: "a new script (a scenario's `[smarthost]` table) from the next \
                          connection on, as JSON or TOML",
                query: None,
                path: None,
                body: vec![
                    ("application/json", schema::<SmartHostScript>),
                    ("application/toml", schema::<String>),
                    ("text/toml", schema::<String>),
                ],
                answers: installed()
                    .into_iter()
                    .chain([
                        Answer::error(StatusCode::PAYLOAD_TOO_LARGE, "a body beyond 64 KiB"),
                        unsupported(),
                    ])
                    .collect(),
            },
        ),
        Endpoint::new(
            EndpointMethod::Put,
            "/profile/{name}",
            put_profile,
            Operation {
                summary: "a shipped server profile from the next connection on",
                query: None,
                path: Some(fields::<ProfilePath>),
                body: Vec::new(),
                answers: installed()
                    .into_iter()
                    .chain([
                        Answer::error(StatusCode::NOT_FOUND, "no such profile"),
                        unsupported(),
                    ])
                    .collect(),
            },
        ),
        Endpoint::new(
            EndpointMethod::Get,
            OPENAPI_PATH,
            openapi_json,
            Operation {
                summary: "this document: the API in OpenAPI 3.1",
                query: None,
                path: None,
                body: Vec::new(),
                answers: vec![Answer::json(
                    ok,
                    "an OpenAPI 3.1 document",
                    schema::<serde_json::Map<String, serde_json::Value>>,
                )],
            },
        ),
    ]
}

/// Every endpoint as `GET /` lists it: `METHOD /path: what it does`.
pub(super) fn listed() -> &'static [String] {
    static LISTED: OnceLock<Vec<String>> = OnceLock::new();
    LISTED.get_or_init(|| {
        endpoints()
            .iter()
            .map(|e| format!("{} {}: {}", e.method, e.path, e.doc.summary))
            .collect()
    })
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The API's OpenAPI document, as JSON: built once, from the table the router is built from.
pub fn openapi_document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let table = endpoints();
        let document = openapi::document(table.iter().map(|e| (&e.method, e.path, &e.doc)));
        serde_json::to_string(&document).unwrap_or_default()
    })
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_s_references_resolve_and_its_components_are_well_named() {
        let doc: serde_json::Value = serde_json::from_str(openapi_document()).unwrap_or_default();
        let schemas = doc["components"]["schemas"].as_object().cloned();
        let schemas = schemas.unwrap_or_default();
        assert!(schemas.contains_key("Recording") && schemas.contains_key("ErrorBody"));
        // OpenAPI's rule for component names.
        for name in schemas.keys() {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
                "{name}"
            );
        }
        // Every `$ref` names a component that is there.
        fn refs<'v>(v: &'v serde_json::Value, out: &mut Vec<&'v str>) {
            match v {
                serde_json::Value::Object(o) => {
                    if let Some(r) = o.get("$ref").and_then(|r| r.as_str()) {
                        out.push(r);
                    }
                    o.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "{}", found.len());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/");
            assert!(name.is_some_and(|n| schemas.contains_key(n)), "{r}");
        }
        // One operation per endpoint of the table.
        let operations: usize = doc["paths"]
            .as_object()
            .map(|p| {
                p.values()
                    .filter_map(|i| i.as_object())
                    .map(|i| i.len())
                    .sum()
            })
            .unwrap_or_default();
        assert_eq!(operations, endpoints().len());
    }
}
