//! Choosing the provider chain for a request.
//!
//! The configured order (per task where configured), narrowed by the
//! request's constraints. Cost planning is in [`crate::gateway`].

use crate::config::{Config, Protocol};
use crate::schema::Constraints;

/// Why no provider can serve a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("no provider left: router.chain is {chain:?} and the request allows {allowed:?}{offline}")]
    NoProvider { chain: Vec<String>, allowed: Vec<String>, offline: &'static str },
    #[error("no provider called `{name}`; known: {known}")]
    Unknown { name: String, known: String },
}

/// The providers to try, in order.
///
/// # Errors
/// [`RouteError::NoProvider`] when the constraints leave none.
pub fn chain(config: &Config, task: &str, constraints: &Constraints) -> Result<Vec<String>, RouteError> {
    let configured = config.router.chain_for(task);
    let allowed = &constraints.allowed_providers;
    if let Some(unknown) = allowed.iter().find(|name| config.provider(name).is_none()) {
        return Err(RouteError::Unknown {
            name: unknown.clone(),
            known: config.providers.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    // The configured order first; allowed providers outside the chain after it.
    let outside = allowed.iter().filter(|name| !configured.contains(name));
    let picked: Vec<String> = configured
        .iter()
        .filter(|name| allowed.is_empty() || allowed.contains(name))
        .chain(outside)
        .filter(|name| {
            !constraints.offline_only || config.provider(name).and_then(|p| p.protocol) == Some(Protocol::LlamaLocal)
        })
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(RouteError::NoProvider {
            chain: configured.to_vec(),
            allowed: constraints.allowed_providers.clone(),
            offline: if constraints.offline_only { " (offline only)" } else { "" },
        });
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_narrow_the_configured_chain() {
        let mut config = Config::builtin().unwrap();
        config.router.chain = vec!["gemini".into(), "openai".into(), "local".into()];
        config.router.tasks.insert("ask".into(), vec!["openai".into()]);
        let all = chain(&config, "describe", &Constraints::default()).unwrap();
        assert_eq!(all, ["gemini", "openai", "local"]);
        assert_eq!(chain(&config, "ask", &Constraints::default()).unwrap(), ["openai"]);
        let offline = Constraints { offline_only: true, ..Default::default() };
        assert_eq!(chain(&config, "describe", &offline).unwrap(), ["local"]);
        let only = Constraints { allowed_providers: vec!["openai".into()], ..Default::default() };
        assert_eq!(chain(&config, "describe", &only).unwrap(), ["openai"]);
        let outside = Constraints { allowed_providers: vec!["groq".into(), "openai".into()], ..Default::default() };
        assert_eq!(chain(&config, "describe", &outside).unwrap(), ["openai", "groq"]);
        let unknown = Constraints { allowed_providers: vec!["nope".into()], ..Default::default() };
        assert!(chain(&config, "describe", &unknown).unwrap_err().to_string().starts_with("no provider called `nope`"));
        let none = Constraints { allowed_providers: vec!["openai".into()], offline_only: true, ..Default::default() };
        assert!(chain(&config, "describe", &none).unwrap_err().to_string().contains("offline only"));
    }
}
