//! `failoverctl keygen`: makes this node's key and certificate, locally (no daemon needed).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use failoverd_link::Identity;
use serde::Serialize;

/// What `keygen --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct KeyInfo {
    /// The file written.
    pub path: String,
    /// The fingerprint the peer pins (`link.peer_key` in the peer's configuration).
    pub fingerprint: String,
    /// The node id derived from the fingerprint, 8 hex digits.
    pub node_id: String,
}

/// Generates a key, writes it to `out` and says what the peer needs.
pub(crate) fn keygen(out: &Path, force: bool) -> anyhow::Result<KeyInfo> {
    let identity = Identity::generate();
    write_secret(out, identity.to_pem().as_bytes(), force)?;
    let fingerprint = identity.fingerprint();
    Ok(KeyInfo {
        path: out.display().to_string(),
        fingerprint: fingerprint.to_string(),
        node_id: format!("{:08x}", fingerprint.node_id()),
    })
}

/// Human output of `keygen`: the facts, then the line to paste into the peer's configuration.
pub(crate) fn human(info: &KeyInfo) -> String {
    format!(
        "wrote {} (mode 0600)\n\
         node id      {}\n\
         fingerprint  {}\n\
         \n\
         In the peer's failoverd.toml, under [link]:\n\
         peer_key = \"{}\"\n",
        info.path, info.node_id, info.fingerprint, info.fingerprint
    )
}

/// Writes a secret file with mode 0600, atomically: readers see the old file or the whole new
/// one, never a partial key; a crash leaves at most a temporary file beside it.
///
/// Without `force` an existing file is never replaced, even one created while the key was
/// being written: the new file is put in place with `link(2)`, which fails if the name exists,
/// where `rename(2)` would replace it.
fn write_secret(out: &Path, contents: &[u8], force: bool) -> anyhow::Result<()> {
    let Some(name) = out.file_name() else {
        bail!("{}: not a file name", out.display());
    };
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let refuse = || {
        anyhow::anyhow!(
            "{} exists; pass --force to replace it (the peer's link.peer_key must then be updated)",
            out.display()
        )
    };
    if !force && fs::symlink_metadata(out).is_ok() {
        return Err(refuse());
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(err).with_context(|| format!("cannot write {}", temp.display()));
    }
    let placed = if force {
        fs::rename(&temp, out)
    } else {
        fs::hard_link(&temp, out).and_then(|()| fs::remove_file(&temp))
    };
    if let Err(err) = placed {
        let _ = fs::remove_file(&temp);
        if err.kind() == io::ErrorKind::AlreadyExists {
            return Err(refuse());
        }
        return Err(err).with_context(|| format!("cannot write {}", out.display()));
    }
    // The new name is durable only once the directory is synced.
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys/node.pem");
        write_secret(&out, b"first", false).unwrap();
        let mode = fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_secret(&out, b"second", false).unwrap_err();
        assert!(err.to_string().contains("exists; pass --force"), "{err}");
        assert_eq!(fs::read(&out).unwrap(), b"first");
        write_secret(&out, b"second", true).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"second");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("keys")).unwrap().count(), 1);
    }

    #[test]
    fn the_key_loads_and_the_snippet_pins_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("node.pem");
        let info = keygen(&out, false).unwrap();
        let identity = Identity::load(&out).unwrap();
        assert_eq!(info.fingerprint, identity.fingerprint().to_string());
        assert_eq!(info.node_id.len(), 8);
        let text = human(&info);
        let line = format!("peer_key = \"{}\"\n", info.fingerprint);
        assert!(text.ends_with(&line), "{text}");
        // The snippet is valid configuration.
        let pinned: failoverd_link::Fingerprint = info.fingerprint.parse().unwrap();
        assert_eq!(pinned, identity.fingerprint());
    }
}
