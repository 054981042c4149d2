//! Small JSON helpers shared by the parsers (profiles, token responses) and the bindings.

use serde_json::Value;

/// "a string", "an object", …: how an error message names a JSON value's type.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
