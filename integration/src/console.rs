//! The far end of `--console-socket` (the fuzzer's terminal cases, the console test): it
//! takes the pty master a runtime sends and copies what the container writes to a file
//! until the pty closes (EIO once no slave is left open) or the deadline passes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub struct Console {
    sock: PathBuf,
    /// The copy's end: the bytes copied, or why it failed.
    done: mpsc::Receiver<Result<u64, String>>,
}

impl Console {
    /// Listen on `sock`; what the container writes goes to `out`.
    pub fn listen(sock: &Path, out: PathBuf) -> std::io::Result<Console> {
        let l = UnixListener::bind(sock)?;
        let (tx, done) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(copy_from_master(&l, &out).map_err(|e| e.to_string()));
        });
        Ok(Console {
            sock: sock.to_path_buf(),
            done,
        })
    }

    /// Wait (at most `limit`) for the pty to close. A runtime that never connected is
    /// stood in for by an empty connection, so the thread always ends. Returns what went
    /// wrong, if anything (for a harness's diagnosis): no master came, the copy failed, or
    /// it did not end in time.
    pub fn finish(self, limit: Duration) -> Option<String> {
        let r = match self.done.recv_timeout(Duration::from_millis(1)) {
            Ok(r) => r,
            Err(_) => {
                let _ = UnixStream::connect(&self.sock);
                self.done
                    .recv_timeout(limit)
                    .unwrap_or_else(|_| Err(format!("the pty was still open after {limit:?}")))
            }
        };
        r.err()
    }
}

fn copy_from_master(l: &UnixListener, out: &Path) -> std::io::Result<u64> {
    let (conn, _) = l.accept()?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = [0u8; 4096];
    let (_, master) = crate::fdpass::recv_with_fd(&conn, &mut buf)?;
    let master = master
        .ok_or_else(|| std::io::Error::other("no pty master came over the console socket"))?;
    let mut master = File::from(master);
    let mut file = File::create(out)?;
    let mut chunk = [0u8; 8192];
    let mut copied = 0u64;
    loop {
        match master.read(&mut chunk) {
            Ok(0) => return Ok(copied),
            Ok(n) => {
                file.write_all(&chunk[..n])?;
                copied += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: the last slave is closed, the container is gone.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(copied),
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "read the pty master after {copied} bytes: {e}"
                )))
            }
        }
    }
}
