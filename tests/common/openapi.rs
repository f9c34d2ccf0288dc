//! Responses checked against docs/openapi.json.

use serde_json::{json, Value};

pub fn openapi() -> Value {
    serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap()
}

/// The response must be one the OpenAPI document describes: its status,
/// its content type, and (for JSON) its body against the schema.
pub fn conforms(doc: &Value, method: &str, template: &str, status: u16, content_type: &str, body: &str) {
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{method} {template} is not in the OpenAPI document");
    let mut response = &op["responses"][status.to_string()];
    if let Some(r) = response["$ref"].as_str() {
        response = &doc["components"]["responses"][r.rsplit('/').next().unwrap()];
    }
    assert!(response.is_object(), "{template}: status {status} is not documented: {body}");
    let media = content_type.split(';').next().unwrap().trim();
    let schema = &response["content"][media]["schema"];
    assert!(schema.is_object(), "{template} {status}: content type {media} is not documented");
    if media == "application/json" {
        let wrapped = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&wrapped).expect("the OpenAPI schemas compile");
        let instance: Value = serde_json::from_str(body).expect("JSON body");
        let errors: Vec<String> =
            validator.iter_errors(&instance).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{template} {status}: body does not match the OpenAPI schema: {errors:?}\n{body}");
    }
}
