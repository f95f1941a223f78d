//! Config drives: one small ISO 9660 volume per node, labelled `cidata`, made with
//! xorriso from a staging tree with fixed times (and `SOURCE_DATE_EPOCH`, which makes
//! xorriso fix every date and the volume UUID), so the same files give the same bytes.
//!
//! ```text
//! /meta-data, /user-data, /network-config   cloud-init NoCloud (OUT/nodes/<n>/cidata/)
//! /vocc/node.env                             what the vocc hook reads first
//! /vocc/files/<guest path>                   the node's files (OUT/nodes/<n>/files/)
//! ```
//!
//! Rock Ridge keeps modes (a secret such as the munge key is 0600 on the drive; the
//! hook makes it 0400 and its user's), Joliet keeps names readable elsewhere.

use super::tools::{Run, XORRISO};
use super::ImageError;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The volume label cloud-init's NoCloud source looks for.
pub const LABEL: &str = "cidata";

/// One file of a drive: its path on the drive, mode and bytes.
pub struct DriveFile<'a> {
    pub path: String,
    pub mode: u32,
    pub bytes: &'a [u8],
}

/// Writes the files into `tree`, then the ISO image to `image`.
pub fn make(
    tree: &Path,
    image: &Path,
    files: &[DriveFile],
    source: &str,
) -> Result<(), ImageError> {
    for f in files {
        if f.path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(ImageError::io(
                format!("`{}` is not a path a config drive can hold", f.path),
                std::io::ErrorKind::InvalidInput.into(),
            ));
        }
        let p = tree.join(&f.path);
        let io = |e: std::io::Error| ImageError::io(format!("cannot write `{}`", p.display()), e);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        fs::write(&p, f.bytes).map_err(io)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(f.mode)).map_err(io)?;
    }
    super::ext4::normalise_times(tree)
        .map_err(|e| ImageError::io(format!("cannot set times in `{}`", tree.display()), e))?;
    Run::new(XORRISO, source)
        .args([
            "-no_rc",
            "-report_about",
            "FAILURE",
            "-as",
            "mkisofs",
            "-quiet",
            "-no-pad",
        ])
        .args(["-V", LABEL, "-J", "-R", "-input-charset", "utf-8", "-o"])
        .arg(image)
        // xorriso's mkisofs mode takes no `--`: an absolute path never reads as an
        // option.
        .arg(
            std::path::absolute(tree)
                .map_err(|e| ImageError::io(format!("cannot resolve `{}`", tree.display()), e))?,
        )
        .run()
}
