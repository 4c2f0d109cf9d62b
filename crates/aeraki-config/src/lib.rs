//! Reads the YAML users already write (Istio ServiceEntry/DestinationRule/VirtualService/
//! WorkloadEntry, Aeraki MetaRouter/ApplicationProtocol, Redis CRDs, Kubernetes Service and
//! EndpointSlice), validates it as strictly as Aeraki's webhook, resolves it into the
//! [`aeraki_model::MeshView`], and watches config sources for changes.
//!
//! Pipeline: files → [`Store`] (typed objects keyed by kind/namespace/name, each with its file
//! and document; unmanaged kinds counted and skipped) → validation (every error collected in
//! one pass, each naming file, document, object and field path) → resolution into the view.
//! [`load_dir`] runs it once; [`watch_dir`] runs it again after every change.
//!
//! Decisions (what is refused, what is ignored by design) are in
//! `docs/control-plane-config.md`.

pub mod error;
pub mod lenient;
pub mod policy;
pub mod protocol;
mod resolve;
mod sources;
pub mod store;
pub mod types;
pub mod validate;
mod watch;

use std::path::Path;

use aeraki_model::MeshView;

pub use error::{ConfigError, ConfigErrors, Origin};
pub use store::{Object, Stats, Store};
pub use watch::{DirWatcher, watch_dir};

/// A validated, resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub view: MeshView,
    /// Things we accept but want the user to know (unused routers, unreachable routes,
    /// settings without effect…), one line each, formatted like errors.
    pub warnings: Vec<String>,
    /// Files read, objects per kind, skipped kinds.
    pub stats: Stats,
}

/// Loads, validates and resolves every `*.yaml`, `*.yml` and `*.json` file under `dir`
/// (recursively; hidden entries skipped).
pub fn load_dir(dir: impl AsRef<Path>) -> Result<LoadedConfig, ConfigErrors> {
    let (store, parse_errors) = store::load_store(dir.as_ref())?;
    finish(store, parse_errors)
}

/// Like [`load_dir`] for one YAML text (tests, stdin); `name` is used in messages.
pub fn load_str(name: &str, yaml: &str) -> Result<LoadedConfig, ConfigErrors> {
    let mut store = Store::default();
    let mut errors = Vec::new();
    store.add_text(Path::new(name), yaml, &mut errors);
    finish(store, errors)
}

fn finish(store: Store, parse_errors: Vec<ConfigError>) -> Result<LoadedConfig, ConfigErrors> {
    match build_view(&store) {
        Ok((view, warnings)) if parse_errors.is_empty() => Ok(LoadedConfig {
            view,
            warnings,
            stats: store.stats,
        }),
        Ok(_) => Err(ConfigErrors {
            errors: parse_errors,
        }),
        Err(mut e) => {
            let mut errors = parse_errors;
            errors.append(&mut e.errors);
            Err(ConfigErrors { errors })
        }
    }
}

/// Validates every object of `store` and resolves the view. All validation errors are
/// returned together; cross-object conflicts (a host/port or an address/port declared
/// twice…) are checked once the objects themselves are valid.
pub fn build_view(store: &Store) -> Result<(MeshView, Vec<String>), ConfigErrors> {
    let mut v = validate::validate(store);
    if !v.errors.is_empty() {
        return Err(ConfigErrors { errors: v.errors });
    }
    let (view, errors, mut warnings) = resolve::resolve(store, &v);
    if !errors.is_empty() {
        return Err(ConfigErrors { errors });
    }
    v.warnings.append(&mut warnings);
    Ok((view, v.warnings))
}
