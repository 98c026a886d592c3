//! Files this tool creates: always new, never through a link someone
//! planted, and replaced only by a rename (which replaces a link itself,
//! never its target).

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// A new file at `path` with `mode` (before the umask): `O_EXCL` fails on
/// any existing name, a dangling symlink included, and `O_NOFOLLOW` says so
/// again for the last component.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A new file beside `path` under a temporary name no one can guess, in
/// the same directory (so that a rename over `path` stays in one file
/// system): its name and the open file.
pub fn create_beside(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(
        ".{}.{}.{nanos:09}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = create_new(&temp, mode)?;
    Ok((temp, file))
}

/// Renames `temp` over `path`, removing `temp` if that fails.
pub fn rename_over(temp: &Path, path: &Path) -> io::Result<()> {
    std::fs::rename(temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(temp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "reaper-trace-new-file-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_existing_name_or_link_is_never_opened() {
        let dir = scratch("existing");
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.join("dangling");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        for path in [&target, &link, &dangling] {
            assert!(create_new(path, 0o600).is_err(), "{}", path.display());
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(!dir.join("nowhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rename_replaces_the_link_not_its_target() {
        let dir = scratch("rename");
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let (temp, _file) = create_beside(&link, 0o600).unwrap();
        assert_eq!(temp.parent(), Some(dir.as_path()));
        rename_over(&temp, &link).unwrap();
        assert!(!temp.exists());
        assert!(link.symlink_metadata().unwrap().file_type().is_file());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
