//! Local files of a backup: `.tar.gz` archives of a directory and sha256
//! checksums.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::error::OpsError;

/// Archives the directory `source` into the gzip-compressed tar file `dest`,
/// its entries under `top/`. Symbolic links are kept as links; a file that
/// disappears while it is archived (a rotated log) is left out, and one that
/// grows or shrinks goes in with the size it had when it was opened.
pub fn tar_gz(source: &Path, top: &str, dest: &Path) -> Result<(), OpsError> {
    write_tar_gz(source, top, dest).map_err(|e| {
        OpsError::io(
            format!("archiving {} to {}", source.display(), dest.display()),
            e,
        )
    })
}

fn write_tar_gz(source: &Path, top: &str, dest: &Path) -> io::Result<()> {
    let file = File::create(dest)?;
    let gzip = GzEncoder::new(BufWriter::new(file), Compression::default());
    let mut builder = tar::Builder::new(gzip);
    builder.follow_symlinks(false);
    append_tree(&mut builder, source, Path::new(top))?;
    let mut out = builder.into_inner()?.finish()?;
    out.flush()?;
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

fn append_tree<W: Write>(builder: &mut tar::Builder<W>, dir: &Path, name: &Path) -> io::Result<()> {
    builder.append_dir(name, dir)?;
    let mut entries = std::fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let (path, name) = (entry.path(), name.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            append_tree(builder, &path, &name)?;
        } else if kind.is_file() {
            append_file(builder, &path, &name)?;
        } else if kind.is_symlink() {
            builder.append_path_with_name(&path, &name)?;
        }
    }
    Ok(())
}

fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
) -> io::Result<()> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata(&meta);
    // Exactly the size in the header, however the file changes meanwhile.
    let size = meta.len();
    let data = (&mut file).take(size).chain(io::repeat(0)).take(size);
    builder.append_data(&mut header, name, data)
}

/// The size and hex sha256 of the file at `path`.
pub fn sha256(path: &Path) -> Result<(u64, String), OpsError> {
    hash_file(path).map_err(|e| OpsError::io(format!("reading {}", path.display()), e))
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 16];
    let mut size = 0_u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_round_trips_through_its_archive() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(src.join("a.toml"), "a = 1\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(src.join("sub/b.log"), "line\n").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("a.toml", src.join("link")).unwrap_or_else(|e| panic!("{e}"));
        let dest = tmp.path().join("x.tar.gz");
        tar_gz(&src, "config", &dest).unwrap_or_else(|e| panic!("{e}"));

        let file = File::open(&dest).unwrap_or_else(|e| panic!("{e}"));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let out = tmp.path().join("out");
        archive.unpack(&out).unwrap_or_else(|e| panic!("{e}"));
        let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap_or_default();
        assert_eq!(read("config/a.toml"), "a = 1\n");
        assert_eq!(read("config/sub/b.log"), "line\n");
        let link = std::fs::read_link(out.join("config/link")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(link, Path::new("a.toml"));
    }

    #[test]
    fn sha256_of_a_known_text() {
        let tmp = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(tmp.path(), "abc").unwrap_or_else(|e| panic!("{e}"));
        let (size, hex) = sha256(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(size, 3);
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
