//! The API token: made at the first start, kept in `STATE_DIR/api-token`
//! (readable by its owner only), and asked of every API call.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;

/// The token file's name in the state folder.
pub const TOKEN_FILE: &str = "api-token";

/// The token in `state_dir`, made (32 random bytes, in hex) if there is
/// none yet.
///
/// # Errors
///
/// When the file cannot be read or made, or holds no token.
pub fn load_or_create(state_dir: &Path) -> io::Result<String> {
    let path = state_dir.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds no usable token (at least 16 printable characters); remove it to have a new one made",
                        path.display()
                    ),
                ));
            }
            Ok(token)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let token = hex::encode(bytes);
            // Made with mode 0600 from the start: never readable by others,
            // not even for an instant. `create_new`: two daemons starting at
            // once do not overwrite each other's.
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(token.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let t = load_or_create(dir.path()).unwrap();
        assert_eq!(t.len(), 64);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(dir.path()).unwrap(), t);
        fs::write(dir.path().join(TOKEN_FILE), "short\n").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
