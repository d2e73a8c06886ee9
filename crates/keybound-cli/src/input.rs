//! Bounded reads of files and standard input: a path like `/dev/zero` or an enormous file
//! gets a clear error instead of a hang or an exhausted memory.

use std::io::Read as _;
use std::path::Path;

use crate::Failure;

/// Largest proof, token, JWKS, key or certificate read from a file or standard input.
pub(crate) const MAX_INPUT: u64 = 256 * 1024;

/// The largest configuration file read (about 80 000 registered clients).
pub(crate) const MAX_CONFIG_FILE: u64 = 16 * 1024 * 1024;

/// Reads at most `max` bytes from `reader`, naming it `what` in errors.
pub(crate) fn read_limited(
    reader: impl std::io::Read,
    what: &str,
    max: u64,
) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    reader
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(Failure(format!("{what} is larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Reads a file of at most `max` bytes.
pub(crate) fn read_file(path: &Path, max: u64) -> Result<Vec<u8>, Failure> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
    read_limited(file, &path.display().to_string(), max)
}
