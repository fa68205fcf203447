//! What every HTTP protocol reads from its profile the same way: the
//! protocol's check, the API root, the model, its price and its limits.

use super::SetupError;
use crate::config::{ModelProfile, Price, Protocol, ProviderProfile};

/// The settings every HTTP backend needs, checked.
#[derive(Debug, Clone)]
pub struct Basics {
    /// `base_url` without a trailing slash.
    pub root: String,
    pub model: String,
    pub price: Price,
    /// The model's limits and token rules; the defaults when the profile has none.
    pub model_profile: ModelProfile,
}

impl Basics {
    /// Read them from the profile of provider `name`, which must speak `protocol`.
    ///
    /// # Errors
    /// Another protocol, or no base URL, model or price, named with the config key.
    pub fn from_profile(name: &str, profile: &ProviderProfile, protocol: Protocol) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        if profile.protocol != Some(protocol) {
            return Err(fail(format!("providers.{name}.protocol is not \"{}\"", protocol.as_str())));
        }
        let root = profile.base_url.as_deref().ok_or_else(|| fail(format!("providers.{name}.base_url is not set")))?;
        let model = profile.model.clone().ok_or_else(|| fail(format!("providers.{name}.model is not set")))?;
        let price = profile.price_for(&model).ok_or_else(|| {
            fail(format!(
                "no price for model `{model}`: set [providers.{name}.price] or [providers.{name}.models.\"{model}\".price]"
            ))
        })?;
        let model_profile = profile.model_profile(&model).cloned().unwrap_or_default();
        Ok(Self { root: root.trim_end_matches('/').to_string(), model, price, model_profile })
    }
}
