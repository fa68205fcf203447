//! What a request would do, and what the gateway works with:
//! `POST /v1/plan` (spends nothing) and `GET /v1/providers`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::jobs::RunBody;
use crate::secret::redact_urls;
use crate::serve::keys::Caller;
use crate::serve::{ApiError, App};

/// `POST /v1/plan`: the body of `POST /v1/runs`; the plan the run would
/// follow for this caller (its key's budget left today counts), with the
/// first usable candidate's estimated cost, frames and calls on top. No
/// provider is called and nothing is spent; a URL source is fetched to be
/// probed.
pub(super) async fn plan(
    State(app): State<App>,
    caller: Caller,
    body: Result<Json<RunBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let request = body.request(&app)?;
    let plan = app.gateway().plan_for(&request, caller.account.as_ref()).await?;
    let first = plan.first().cloned();
    let chain: Vec<&str> = plan.candidates.iter().map(|c| c.provider.as_str()).collect();
    let mut answer = json!({
        "object": "plan",
        "provider": first.as_ref().map(|c| c.provider.clone()),
        "estimated_usd": first.as_ref().map_or(0.0, |c| c.estimated_usd),
        "frames": first.as_ref().and_then(|c| c.frames),
        "calls": first.as_ref().map_or(0, |c| c.observe_calls + c.merge_calls),
        "chain": chain,
    });
    let detail = serde_json::to_value(&plan).map_err(|e| ApiError::invalid(e.to_string()))?;
    if let (Some(answer), Value::Object(detail)) = (answer.as_object_mut(), detail) {
        for (k, v) in detail {
            answer.entry(k).or_insert(v);
        }
    }
    Ok(Json(answer))
}

/// `GET /v1/providers`: each configured provider, its protocol, models and
/// price, whether the router's chain uses it, and its breaker's state now.
/// No key, key variable or credential is shown; a base URL loses its
/// userinfo and query values.
pub(super) async fn providers(State(app): State<App>) -> Json<Value> {
    let gateway = app.gateway();
    let config = gateway.config();
    let data: Vec<Value> = config
        .providers
        .iter()
        .map(|(name, profile)| {
            let model = profile.model.clone().unwrap_or_default();
            let open_for = gateway.breaker(name).open_for();
            let breaker = match open_for {
                None => json!({ "state": "closed" }),
                Some(d) if d.is_zero() => json!({ "state": "half_open" }),
                Some(d) => json!({ "state": "open", "cooldown_s": d.as_secs_f64() }),
            };
            json!({
                "id": name,
                "object": "provider",
                "protocol": profile.protocol,
                "description": profile.description,
                "base_url": profile.base_url.as_deref().map(redact_urls),
                "model": profile.model,
                "models": profile.models.keys().collect::<Vec<_>>(),
                "price": profile.price_for(&model),
                "in_chain": config.router.chain.contains(name),
                "breaker": breaker,
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
