//! A directory that names are made in with the `*at` system calls, resolved from it
//! instead of from the root each time: what writing thousands of small node trees
//! costs is their metadata operations, so each is one system call.

use std::ffi::CStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// An open directory.
pub(super) struct Dir(OwnedFd);

impl Dir {
    pub fn open(path: &Path) -> io::Result<Dir> {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(Dir(f.into()))
    }

    fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    pub fn mkdir(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::mkdirat(self.fd(), name.as_ptr(), 0o777) })
    }

    /// Makes the directory `name` and opens it.
    pub fn make_dir(&self, name: &CStr) -> io::Result<Dir> {
        self.mkdir(name)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as in `mkdir`.
        let fd = unsafe { libc::openat(self.fd(), name.as_ptr(), flags) };
        check(fd)?;
        // SAFETY: `fd` was just opened, and nothing else owns it.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Creates the file `name`, which must not exist, with `bytes`; `fix_mode` when
    /// the umask would take bits off `mode`.
    pub fn create(&self, name: &CStr, bytes: &[u8], mode: u32, fix_mode: bool) -> io::Result<()> {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as in `mkdir`; the mode is the variadic argument O_CREAT wants.
        let fd = unsafe { libc::openat(self.fd(), name.as_ptr(), flags, mode as libc::c_uint) };
        check(fd)?;
        // SAFETY: `fd` was just opened, and nothing else owns it.
        let mut f = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if fix_mode {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)
    }

    /// Links the file `name` of this directory as `to_name` in `to`.
    pub fn link(&self, name: &CStr, to: &Dir, to_name: &CStr) -> io::Result<()> {
        // SAFETY: as in `mkdir`, for both names.
        check(unsafe { libc::linkat(self.fd(), name.as_ptr(), to.fd(), to_name.as_ptr(), 0) })
    }
}

/// The error of a system call that returned `rc`.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `s` as a C string, in `buf`.
pub(super) fn c_str<'b>(buf: &'b mut Vec<u8>, s: &str) -> io::Result<&'b CStr> {
    buf.clear();
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    CStr::from_bytes_with_nul(buf).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{s}` contains a NUL byte"),
        )
    })
}
