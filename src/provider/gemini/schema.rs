//! JSON Schema in Gemini's dialect. `responseSchema` takes the OpenAPI 3.0
//! subset of the `Schema` proto, which rejects keys it does not know
//! (`additionalProperties` among them) and names types in upper case.

use serde_json::{Map, Value};

/// A JSON Schema as Gemini's OpenAPI-subset `Schema`: upper-case types, only
/// the keys that `Schema` has (no `additionalProperties`), `["x", "null"]` as
/// `nullable`, and `propertyOrdering` so that the answer keeps `required`'s order.
pub(super) fn gemini_schema(schema: &Value) -> Value {
    const KEPT: &[&str] = &[
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "required",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "propertyOrdering",
        "default",
    ];
    let Value::Object(object) = schema else { return schema.clone() };
    let mut out = Map::new();
    match object.get("type") {
        Some(Value::String(t)) => {
            out.insert("type".into(), Value::String(t.to_ascii_uppercase()));
        }
        Some(Value::Array(types)) => {
            let named: Vec<&str> = types.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
            if let [one] = named[..] {
                out.insert("type".into(), Value::String(one.to_ascii_uppercase()));
            }
            if named.len() < types.len() {
                out.insert("nullable".into(), Value::Bool(true));
            }
        }
        _ => {}
    }
    for key in KEPT {
        if let Some(v) = object.get(*key) {
            out.insert((*key).into(), v.clone());
        }
    }
    if let Some(Value::Object(props)) = object.get("properties") {
        let converted: Map<String, Value> = props.iter().map(|(k, v)| (k.clone(), gemini_schema(v))).collect();
        if !out.contains_key("propertyOrdering") {
            let required: Vec<&str> = object
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).filter(|k| props.contains_key(*k)).collect())
                .unwrap_or_default();
            let rest = props.keys().map(String::as_str).filter(|k| !required.contains(k));
            let order: Vec<Value> = required.iter().copied().chain(rest).map(Value::from).collect();
            out.insert("propertyOrdering".into(), Value::Array(order));
        }
        out.insert("properties".into(), Value::Object(converted));
    }
    if let Some(items) = object.get("items") {
        out.insert("items".into(), gemini_schema(items));
    }
    if let Some(Value::Array(any)) = object.get("anyOf") {
        out.insert("anyOf".into(), Value::Array(any.iter().map(gemini_schema).collect()));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_schema_types_and_nullables_convert() {
        let schema = json!({"type": "object", "additionalProperties": false, "$schema": "x",
            "properties": {"n": {"type": ["integer", "null"], "minimum": 0}, "tags": {"type": "array", "items": {"type": "string", "enum": ["a"]}}}});
        let g = gemini_schema(&schema);
        assert_eq!(g["properties"]["n"], json!({"type": "INTEGER", "nullable": true, "minimum": 0}));
        assert_eq!(g["properties"]["tags"]["items"], json!({"type": "STRING", "enum": ["a"]}));
        assert_eq!(g["propertyOrdering"], json!(["n", "tags"]));
        assert!(g.get("additionalProperties").is_none() && g.get("$schema").is_none());
    }

    #[test]
    fn the_timeline_schema_keeps_its_order() {
        let g = gemini_schema(&crate::timeline::json_schema());
        assert_eq!(g["propertyOrdering"], json!(["events"]));
        assert_eq!(g["properties"]["events"]["items"]["required"], json!(["start", "end", "text"]));
        assert!(!g.to_string().contains("additionalProperties"), "{g}");
    }
}
