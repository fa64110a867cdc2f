//! Project folders: a run's working directory must be an existing folder, given as an absolute
//! path, and (when `allowedProjectRoots` is set) inside one of those roots.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::Error;

/// The canonical form of `path`, or why it cannot be used.
pub fn resolve(path: &str, config: &Config) -> Result<String, Error> {
    let field = "project_path";
    let given = Path::new(path);
    if !given.is_absolute() {
        return Err(Error::invalid(field, format!("\"project_path\" must be an absolute path (got \"{path}\")")));
    }
    let canonical = match given.canonicalize() {
        Ok(p) => p,
        Err(_) => {
            return Err(Error::invalid(
                field,
                format!(
                    "project folder \"{path}\" does not exist; create it or pass an existing folder as project_path"
                ),
            ))
        }
    };
    if !canonical.is_dir() {
        return Err(Error::invalid(field, format!("project path \"{path}\" is not a folder")));
    }
    if !config.allowed_project_roots.is_empty() && !inside_any(&canonical, &config.allowed_project_roots) {
        return Err(Error::forbidden(
            field,
            format!(
                "project folder \"{}\" is outside allowedProjectRoots ({}); use a folder inside one of them",
                canonical.display(),
                config.allowed_project_roots.join(", ")
            ),
        ));
    }
    Ok(canonical.to_string_lossy().into_owned())
}

/// Like `resolve`, for a request's `project_path` that falls back to `defaultProjectPath`.
pub fn resolve_or_default(given: Option<&str>, config: &Config) -> Result<String, Error> {
    match given {
        Some(path) => resolve(path, config),
        None => resolve(&config.default_project_path, config).map_err(|err| match err {
            Error::Invalid { field, .. } => Error::invalid(
                &field,
                format!(
                    "no project_path was given and defaultProjectPath \"{}\" is not an existing folder; \
                     pass project_path, or create that folder or change defaultProjectPath in the config",
                    config.default_project_path
                ),
            ),
            other => other,
        }),
    }
}

fn inside_any(path: &Path, roots: &[String]) -> bool {
    roots.iter().any(|root| {
        let root = PathBuf::from(root);
        let root = root.canonicalize().unwrap_or(root);
        path.starts_with(root)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_missing_and_outside_paths_are_refused() {
        let mut config = Config::defaults(Path::new("/tmp/h"), Path::new("/tmp"));
        let tmp = std::env::temp_dir();
        assert!(matches!(resolve("relative/dir", &config), Err(Error::Invalid { .. })));
        assert!(matches!(resolve("/no/such/folder/ccs", &config), Err(Error::Invalid { .. })));
        assert!(resolve(tmp.to_str().unwrap(), &config).is_ok());
        config.allowed_project_roots = vec!["/usr".into()];
        assert!(matches!(resolve(tmp.to_str().unwrap(), &config), Err(Error::Forbidden { .. })));
        assert!(resolve("/usr/bin", &config).is_ok());
        // `..` cannot climb out of a root.
        assert!(matches!(resolve("/usr/../tmp", &config), Err(Error::Forbidden { .. })));
    }
}
