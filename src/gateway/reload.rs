//! A gateway on a new config that keeps what the old one learned.
//!
//! A long-lived service re-reads its config (`vidgate serve` on SIGHUP). The
//! journal (spend, reservations, finished units, runs) is the same file and
//! the same handle; a provider whose profile did not change keeps its rate
//! limiter and circuit breaker, and its client (a loaded local model stays
//! loaded); a provider whose profile changed is built anew at its next use.
//! Runs under way keep the gateway they started on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use super::{Gateway, GatewayError};
use crate::config::{Config, ConfigError};

/// What a reload changed, for the log and the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reload {
    /// Providers in use whose profile is unchanged: their rate limiter and
    /// breaker are kept (and their client, unless a section clients are
    /// built from changed).
    pub kept: Vec<String>,
    /// Providers whose profile changed: built anew at their next use.
    pub rebuilt: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Settings read only at start (`[server]`): they take effect at the next start.
    pub needs_restart: Vec<String>,
}

impl std::fmt::Display for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |names: &[String]| if names.is_empty() { "none".to_string() } else { names.join(", ") };
        write!(
            f,
            "providers kept with their limits and breakers: {}; changed (built anew): {}; added: {}; removed: {}",
            list(&self.kept),
            list(&self.rebuilt),
            list(&self.added),
            list(&self.removed)
        )?;
        if !self.needs_restart.is_empty() {
            write!(f, "; changed but read only at start (restart to apply): {}", self.needs_restart.join(", "))?;
        }
        Ok(())
    }
}

impl Gateway {
    /// A gateway on `config` sharing this one's journal, and the rate
    /// limiters, breakers and clients of every provider whose profile is
    /// unchanged.
    ///
    /// # Errors
    /// The new config is invalid, or names another journal (a journal is
    /// chosen at start); this gateway is untouched either way.
    pub fn reloaded(&self, config: Config) -> Result<(Gateway, Reload), GatewayError> {
        config.validate().map_err(|e| e.into_error("(reloaded)"))?;
        let (old, new) = (&self.config.journal, &config.journal);
        let place = |j: &crate::config::JournalConfig| {
            (j.enabled, j.path.clone(), j.url.clone(), j.password_env.clone(), j.pool_size, j.videos_dir.clone())
        };
        if place(old) != place(new) {
            return Err(ConfigError::Key {
                origin: "(reloaded)".into(),
                key: "journal".into(),
                message: "the journal (journal.enabled, journal.path, journal.url, password_env, pool_size, videos_dir) is chosen at start; restart to change it".into(),
            }
            .into());
        }
        // A client is built from its profile and from these sections; when
        // one of them changed, every client is built anew, on the limits'
        // state and the breaker it had (they depend on the profile alone).
        let clients_same = self.config.sampling == config.sampling
            && self.config.retry == config.retry
            && self.config.speech == config.speech
            && self.config.models == config.models
            && self.config.limits == config.limits
            && self.config.fetch == config.fetch
            && self.config.prompts_dir == config.prompts_dir;
        let same = |name: &str| self.config.providers.get(name).is_some_and(|p| config.providers.get(name) == Some(p));
        let provider_of = |key: &str| key.split_once('@').map_or(key, |(name, _)| name).to_string();
        let mut kept = BTreeSet::new();
        let shared: BTreeMap<_, _> = {
            let old = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            kept.extend(old.keys().map(|k| provider_of(k)).filter(|n| same(n)));
            old.iter()
                .filter(|(key, _)| clients_same && same(&provider_of(key)))
                .map(|(key, provider)| (key.clone(), provider.clone()))
                .collect()
        };
        let breakers: BTreeMap<_, _> = {
            let old = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
            kept.extend(old.keys().filter(|n| same(n)).cloned());
            old.iter().filter(|(name, _)| same(name)).map(|(n, b)| (n.clone(), b.clone())).collect()
        };
        let limits: BTreeMap<_, _> = {
            let old = self.limits.lock().unwrap_or_else(|e| e.into_inner());
            kept.extend(old.keys().map(|k| provider_of(k)).filter(|n| same(n)));
            old.iter().filter(|(key, _)| same(&provider_of(key))).map(|(k, l)| (k.clone(), l.clone())).collect()
        };
        // Those in use: the others have nothing to keep.
        let mut reload = Reload { kept: kept.into_iter().collect(), ..Reload::default() };
        for (name, profile) in &config.providers {
            match self.config.providers.get(name) {
                Some(before) if before != profile => reload.rebuilt.push(name.clone()),
                Some(_) => {}
                None => reload.added.push(name.clone()),
            }
        }
        reload.removed = self.config.providers.keys().filter(|n| !config.providers.contains_key(*n)).cloned().collect();
        if self.config.server != config.server {
            reload.needs_restart.push("server".into());
        }
        let gateway = Gateway {
            config,
            journal: self.journal.clone(),
            injected: self.injected.clone(),
            shared: Mutex::new(shared),
            limits: Mutex::new(limits),
            breakers: Mutex::new(breakers),
        };
        Ok((gateway, reload))
    }
}

/// The gateway a service works on now; a reload puts a new one in its place
/// while runs under way keep the one they started on.
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<Gateway>>,
}

impl Live {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { current: RwLock::new(gateway) }
    }

    /// The gateway new work starts on.
    pub fn current(&self) -> Arc<Gateway> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Work from now on on `config`, keeping the journal and every unchanged
    /// provider's state.
    ///
    /// # Errors
    /// As [`Gateway::reloaded`]; the gateway in place stays.
    pub fn reload(&self, config: Config) -> Result<Reload, GatewayError> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let (next, reload) = current.reloaded(config)?;
        *current = Arc::new(next);
        Ok(reload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Protocol, ProviderProfile};
    use crate::journal::Journal;
    use crate::provider::scripted::ScriptedProvider;

    fn config() -> Config {
        let mut c = Config::builtin().unwrap();
        for name in ["steady", "changing"] {
            c.providers.insert(
                name.into(),
                ProviderProfile { protocol: Some(Protocol::Openai), ..ProviderProfile::default() },
            );
        }
        c.router.chain = vec!["steady".into(), "changing".into()];
        c
    }

    fn gateway() -> Gateway {
        Gateway::with_journal(config(), Journal::in_memory().unwrap())
            .with_provider("steady", Arc::new(ScriptedProvider::new("steady")))
            .with_provider("changing", Arc::new(ScriptedProvider::new("changing")))
    }

    #[test]
    fn an_unchanged_provider_keeps_its_limiter_and_breaker_and_a_changed_one_gets_new_ones() {
        let old = gateway();
        let (steady, changing) = (old.member("steady", None).unwrap(), old.member("changing", None).unwrap());
        let (steady_breaker, changing_breaker) = (old.breaker("steady"), old.breaker("changing"));
        let mut next = config();
        next.providers.get_mut("changing").unwrap().timeout_s = Some(5.0);
        next.providers.insert("added".into(), ProviderProfile::default());
        next.router.chain.push("added".into());
        let (new, reload) = old.reloaded(next).unwrap();
        assert_eq!(reload.kept, ["steady"]);
        assert_eq!(
            (reload.rebuilt.as_slice(), reload.added.as_slice()),
            (&["changing".to_string()][..], &["added".to_string()][..])
        );
        assert!(Arc::ptr_eq(&new.member("steady", None).unwrap().shared, &steady.shared), "the limiter is new");
        assert!(Arc::ptr_eq(&new.breaker("steady"), &steady_breaker), "the breaker is new");
        assert!(!Arc::ptr_eq(&new.member("changing", None).unwrap().shared, &changing.shared));
        assert!(!Arc::ptr_eq(&new.breaker("changing"), &changing_breaker));
        let changed_limits = old.limits.lock().unwrap()["changing@"].clone();
        new.member("changing", None).unwrap();
        assert!(!Arc::ptr_eq(&new.limits.lock().unwrap()["changing@"], &changed_limits));
        assert!(Arc::ptr_eq(&new.journal, &old.journal), "the journal is another");
        assert_eq!(new.config().providers["changing"].timeout_s, Some(5.0));
    }

    #[test]
    fn a_section_clients_are_built_from_rebuilds_every_client_and_keeps_the_breakers() {
        let old = gateway();
        let steady = old.member("steady", None).unwrap();
        let breaker = old.breaker("steady");
        let limits = |g: &Gateway| g.limits.lock().unwrap()["steady@"].clone();
        let held = limits(&old);
        let mut next = config();
        next.retry.max_attempts += 1;
        let (new, reload) = old.reloaded(next).unwrap();
        assert_eq!(reload.kept, ["steady"], "only a provider in use has a limiter or breaker to keep");
        assert!(!Arc::ptr_eq(&new.member("steady", None).unwrap().shared, &steady.shared));
        assert!(Arc::ptr_eq(&limits(&new), &held), "the new layers count against new limits");
        assert!(Arc::ptr_eq(&new.breaker("steady"), &breaker));
    }

    #[test]
    fn a_bad_config_or_another_journal_is_refused_and_the_live_gateway_stays() {
        let live = Live::new(Arc::new(gateway()));
        let before = live.current();
        let mut bad = config();
        bad.sampling.fps = -1.0;
        let e = live.reload(bad).unwrap_err().to_string();
        assert!(e.contains("sampling.fps"), "{e}");
        let mut moved = config();
        moved.journal.path = Some("/elsewhere/journal.sqlite3".into());
        let e = live.reload(moved).unwrap_err().to_string();
        assert!(e.contains("journal.path") && e.contains("restart"), "{e}");
        assert!(Arc::ptr_eq(&live.current(), &before));

        let mut next = config();
        next.server.max_concurrent_runs += 1;
        let reload = live.reload(next).unwrap();
        assert_eq!(reload.needs_restart, ["server"]);
        assert!(reload.to_string().contains("(restart to apply): server"), "{reload}");
        assert!(!Arc::ptr_eq(&live.current(), &before));
    }
}
