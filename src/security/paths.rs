//! Server-side files (`COPY t FROM '/path'`, `COPY t TO '/path'`): only inside the directories
//! the operator listed (`file_directories`), judged after resolving `..` and symbolic links, so
//! no spelling of a path reaches outside them.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The directories server-side files may be in, canonicalised once at startup.
#[derive(Debug, Clone, Default)]
pub struct FileDirectories(Vec<PathBuf>);

impl FileDirectories {
    pub fn new(dirs: &[PathBuf]) -> Result<Self> {
        let mut out = Vec::with_capacity(dirs.len());
        for d in dirs {
            let c = d
                .canonicalize()
                .map_err(|e| Error::Config(format!("file_directories: {}: {e}", d.display())))?;
            if !c.is_dir() {
                return Err(Error::Config(format!("file_directories: {} is not a directory", d.display())));
            }
            out.push(c);
        }
        Ok(Self(out))
    }

    /// The real path of `text` if it lies inside one of the directories. `must_exist`: reading
    /// needs the file; writing needs only its directory (the file is created).
    pub fn confine(&self, text: &str, must_exist: bool) -> Result<PathBuf> {
        if self.0.is_empty() {
            return Err(Error::InsufficientPrivilege(
                "server-side files are off: list directories in file_directories to allow COPY to and from files there".into(),
            ));
        }
        let path = Path::new(text);
        if !path.is_absolute() {
            return Err(Error::InvalidParameter(format!("relative path \"{text}\" not allowed for COPY to or from a file")));
        }
        let resolved = if must_exist {
            path.canonicalize().map_err(|e| Error::UndefinedObject(format!("could not open file \"{text}\": {e}")))?
        } else {
            let name = match path.components().next_back() {
                Some(Component::Normal(n)) => n.to_owned(),
                _ => return Err(Error::InvalidParameter(format!("\"{text}\" does not name a file"))),
            };
            let parent = path.parent().unwrap_or(Path::new("/"));
            let dir = parent
                .canonicalize()
                .map_err(|e| Error::UndefinedObject(format!("could not open directory of \"{text}\": {e}")))?;
            let full = dir.join(name);
            // An existing symbolic link at the target is followed by the write: judge its target.
            match full.canonicalize() {
                Ok(real) => real,
                Err(_) => full,
            }
        };
        if self.0.iter().any(|d| resolved.starts_with(d)) {
            Ok(resolved)
        } else {
            Err(Error::InsufficientPrivilege(format!(
                "\"{text}\" is outside the directories this server may read and write (file_directories)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_judged_after_resolving_dots_and_links() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("exports");
        let secret = root.path().join("secret");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("key"), "x").unwrap();
        std::fs::write(allowed.join("in.csv"), "1\n").unwrap();
        let dirs = FileDirectories::new(std::slice::from_ref(&allowed)).unwrap();
        let p = |s: &Path| s.to_str().unwrap().to_string();

        assert!(dirs.confine(&p(&allowed.join("in.csv")), true).is_ok());
        assert!(dirs.confine(&p(&allowed.join("new.csv")), false).is_ok());
        let escape = format!("{}/../secret/key", p(&allowed));
        assert_eq!(dirs.confine(&escape, true).unwrap_err().sqlstate(), "42501");
        assert_eq!(dirs.confine(&p(&secret.join("out.csv")), false).unwrap_err().sqlstate(), "42501");
        assert_eq!(dirs.confine("in.csv", true).unwrap_err().sqlstate(), "22023");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(secret.join("key"), allowed.join("link")).unwrap();
            assert_eq!(dirs.confine(&p(&allowed.join("link")), true).unwrap_err().sqlstate(), "42501");
            assert_eq!(dirs.confine(&p(&allowed.join("link")), false).unwrap_err().sqlstate(), "42501");
        }
        let none = FileDirectories::default();
        assert_eq!(none.confine(&p(&allowed.join("in.csv")), true).unwrap_err().sqlstate(), "42501");
    }
}
