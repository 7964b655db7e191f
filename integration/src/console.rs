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
    done: mpsc::Receiver<()>,
}

impl Console {
    /// Listen on `sock`; what the container writes goes to `out`.
    pub fn listen(sock: &Path, out: PathBuf) -> std::io::Result<Console> {
        let l = UnixListener::bind(sock)?;
        let (tx, done) = mpsc::channel();
        thread::spawn(move || {
            let _ = copy_from_master(&l, &out);
            let _ = tx.send(());
        });
        Ok(Console {
            sock: sock.to_path_buf(),
            done,
        })
    }

    /// Wait (at most `limit`) for the pty to close. A runtime that never connected is
    /// stood in for by an empty connection, so the thread always ends.
    pub fn finish(self, limit: Duration) {
        if self.done.recv_timeout(Duration::from_millis(1)).is_ok() {
            return;
        }
        let _ = UnixStream::connect(&self.sock);
        let _ = self.done.recv_timeout(limit);
    }
}

fn copy_from_master(l: &UnixListener, out: &Path) -> std::io::Result<()> {
    let (conn, _) = l.accept()?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = [0u8; 4096];
    let (_, master) = crate::fdpass::recv_with_fd(&conn, &mut buf)?;
    let master = master
        .ok_or_else(|| std::io::Error::other("no pty master came over the console socket"))?;
    let mut master = File::from(master);
    let mut file = File::create(out)?;
    let mut chunk = [0u8; 8192];
    loop {
        match master.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => file.write_all(&chunk[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: the last slave is closed, the container is gone.
            Err(_) => return Ok(()),
        }
    }
}
