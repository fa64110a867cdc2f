//! The config file on disk: created with every default on first start, read and validated after.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::{from_value, Config, ConfigError};
use crate::fsutil;

/// Why the config file could not be used.
#[derive(Debug)]
pub enum LoadError {
    Io(PathBuf, io::Error),
    Syntax(PathBuf, serde_json::Error),
    Invalid(PathBuf, ConfigError),
    /// Valid, but unsafe for the running server (an open bind without keys).
    Unsafe(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(path, err) => {
                write!(f, "cannot use config file {}: {err}", path.display())
            }
            LoadError::Syntax(path, err) => {
                write!(
                    f,
                    "config file {} is not valid JSON: {err}; fix it or move it away to get the defaults",
                    path.display()
                )
            }
            LoadError::Invalid(path, err) => write!(f, "{err} in {}", path.display()),
            LoadError::Unsafe(problem) => f.write_str(problem),
        }
    }
}

impl std::error::Error for LoadError {}

/// The config file as JSON, as written (keys it leaves out are not filled in).
pub fn read_json(path: &Path) -> Result<serde_json::Value, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::Io(path.to_path_buf(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| LoadError::Syntax(path.to_path_buf(), e))
}

/// Deep merge: objects merge key by key; anything else replaces.
pub fn merge(base: &mut serde_json::Value, change: serde_json::Value) {
    match (base, change) {
        (serde_json::Value::Object(base), serde_json::Value::Object(change)) => {
            for (k, v) in change {
                merge(base.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (base, change) => *base = change,
    }
}

/// Reads and validates the config at `path` over `defaults`.
pub fn read_file(path: &Path, defaults: Config) -> Result<(Config, Vec<String>), LoadError> {
    let value = read_json(path)?;
    from_value(&value, defaults).map_err(|e| LoadError::Invalid(path.to_path_buf(), e))
}

/// Reads the config at `path`, first writing the full default config there if there is none.
pub fn load_or_create(path: &Path, defaults: Config) -> Result<(Config, Vec<String>), LoadError> {
    if !path.exists() {
        let mut text = serde_json::to_string_pretty(&defaults.to_json()).unwrap_or_default();
        text.push('\n');
        fsutil::write_private(path, text.as_bytes()).map_err(|e| LoadError::Io(path.to_path_buf(), e))?;
        return Ok((defaults, Vec::new()));
    }
    read_file(path, defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TempDir;

    #[test]
    fn first_load_writes_every_default_key() {
        let dir = TempDir::new("cfg");
        let path = dir.join("config.json");
        let defaults = Config::defaults(dir.path(), Path::new("/home/u"));
        let (config, _) = load_or_create(&path, defaults.clone()).unwrap();
        assert_eq!(config, defaults);
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for key in
            ["port", "taskQueue", "webhook", "rateLimit", "statistics", "mcp", "auth", "claudeEnv", "httpThreads"]
        {
            assert!(written.get(key).is_some(), "{key} missing from the written config");
        }
        let (again, warnings) = load_or_create(&path, defaults.clone()).unwrap();
        assert_eq!(again, defaults);
        assert!(warnings.is_empty());
    }

    #[test]
    fn syntax_errors_name_the_file_and_position() {
        let dir = TempDir::new("cfg");
        let path = dir.join("config.json");
        std::fs::write(&path, "{\"port\": 1,\n}").unwrap();
        let err = load_or_create(&path, Config::defaults(dir.path(), dir.path())).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("line 2"), "{err}");
    }
}
