//! Where the config comes from: the file named by `--config` (else `CCS_CONFIG`, else
//! `<home>/config.json`), written with the defaults on first use, and the `--host` / `--port`
//! given on the command line, which win over the file at start and on every reload.

use std::path::PathBuf;

use super::{load_or_create, Config, LoadError};

/// Where the config came from, so a reload reads it the same way.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub home: PathBuf,
    pub user_home: PathBuf,
    /// `--host` / `--port` given on the command line; they win over the file on every reload.
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl ConfigSource {
    /// The source of `ccs --home <home> --config <path> [--host] [--port]`.
    pub fn new(home: PathBuf, path: PathBuf, host: Option<String>, port: Option<u16>) -> ConfigSource {
        let user_home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| home.clone());
        ConfigSource { path, home, user_home, host, port }
    }

    /// Reads the config file (writing it with the defaults first if there is none) and applies
    /// the command-line overrides; also returns the warnings about ignored keys.
    pub fn load(&self) -> Result<(Config, Vec<String>), LoadError> {
        let (config, warnings) = load_or_create(&self.path, self.defaults())?;
        Ok((self.override_cli(config), warnings))
    }

    pub fn defaults(&self) -> Config {
        Config::defaults(&self.home, &self.user_home)
    }

    /// Applies the command-line overrides to a config read from the file.
    pub fn override_cli(&self, mut config: Config) -> Config {
        if let Some(host) = &self.host {
            config.host = host.clone();
        }
        if let Some(port) = self.port {
            config.port = port;
        }
        config
    }
}
