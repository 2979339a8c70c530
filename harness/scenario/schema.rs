//! The JSON Schema of the scenario format, generated from the types that parse it.

use super::file::Scenario;

/// The schema as pretty JSON.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Scenario);
    serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
