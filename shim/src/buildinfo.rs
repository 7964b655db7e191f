//! Which containerd started us, from what it tells the shim: `-publish-binary` is containerd's
//! own executable, and a Go binary carries its build info (`.go.buildinfo`: Go version, then
//! "path\t<main package>" and "mod\t<main module>" lines). containerd 2.x's module is
//! `github.com/containerd/containerd/v2`; 1.6 and 1.7 are `github.com/containerd/containerd`.
//!
//! Nothing else in what containerd 2.0/2.1 sends tells it from 1.7: both set
//! `MAX_SHIM_VERSION=2` (the shim API, "v2" as in containerd-shim-*-v2, not the bootstrap
//! version) and pass the runtime options (a protobuf Any) or nothing on stdin. So the shim reads
//! the binary's section headers and at most 64 KiB of its data, instead of running
//! `containerd --version` (10-20 ms here: `/usr/bin/time -f %e containerd --version`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Go searches the first 64 KiB of the data segment for the header; so do we.
const SEARCH: usize = 64 << 10;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn read_at(f: &File, off: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(done);
    Some(buf)
}

/// The file offset of the build info: the `.go.buildinfo` section, else (section headers
/// stripped) the first writable PT_LOAD segment, as Go's debug/buildinfo does. ELF64 LE only.
fn data_start(f: &File) -> Option<u64> {
    let eh = read_at(f, 0, 64)?;
    if eh.get(..4)? != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(&eh, 0x28)?,
        u16_at(&eh, 0x3a)? as usize,
        u16_at(&eh, 0x3c)? as usize,
        u16_at(&eh, 0x3e)? as usize,
    );
    if shoff != 0 && shentsize >= 64 && shnum > 0 && shnum <= 4096 && shstrndx < shnum {
        if let Some(sh) = read_at(f, shoff, shentsize * shnum) {
            let hdr = |i: usize| sh.get(i * shentsize..i * shentsize + 64);
            let strtab = hdr(shstrndx).and_then(|h| {
                let (off, size) = (u64_at(h, 24)?, u64_at(h, 32)?);
                read_at(f, off, size.min(1 << 20) as usize)
            });
            if let Some(strtab) = strtab {
                for i in 0..shnum {
                    let Some(h) = hdr(i) else { break };
                    let name = u32_at(h, 0)? as usize;
                    let is_buildinfo = strtab
                        .get(name..)
                        .is_some_and(|s| s.starts_with(b".go.buildinfo\0"));
                    if is_buildinfo {
                        return u64_at(h, 24);
                    }
                }
            }
        }
    }
    let (phoff, phentsize, phnum) = (
        u64_at(&eh, 0x20)?,
        u16_at(&eh, 0x36)? as usize,
        u16_at(&eh, 0x38)? as usize,
    );
    if phentsize < 56 || phnum > 4096 {
        return None;
    }
    let ph = read_at(f, phoff, phentsize * phnum)?;
    (0..phnum).find_map(|i| {
        let h = ph.get(i * phentsize..i * phentsize + 56)?;
        const PT_LOAD: u32 = 1;
        const PF_W: u32 = 2;
        (u32_at(h, 0)? == PT_LOAD && u32_at(h, 4)? & PF_W != 0).then(|| u64_at(h, 8))?
    })
}

fn uvarint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v: u64 = 0;
    for (i, &c) in b.iter().enumerate().take(10) {
        v |= u64::from(c & 0x7f) << (7 * i);
        if c & 0x80 == 0 {
            return Some((usize::try_from(v).ok()?, i + 1));
        }
    }
    None
}

/// The module info text of a Go 1.18+ binary (the header's inline-strings format; older
/// binaries point into the data segment instead and give None; so does one whose module info
/// runs past the 64 KiB read, which a daemon's main module never does in practice).
pub fn modinfo(binary: &Path) -> Option<String> {
    let f = File::open(binary).ok()?;
    let start = data_start(&f)?;
    let data = read_at(&f, start, SEARCH)?;
    let at = (0..data.len().saturating_sub(32))
        .step_by(16)
        .find(|&i| data[i..].starts_with(MAGIC))?;
    let hdr = &data[at..];
    const INLINE_STRINGS: u8 = 2;
    if hdr.get(15)? & INLINE_STRINGS == 0 {
        return None;
    }
    let rest = hdr.get(32..)?;
    let (vlen, n) = uvarint(rest)?;
    let rest = rest.get(n + vlen..)?;
    let (mlen, n) = uvarint(rest)?;
    // Between 16-byte sentinels, as Go's runtime/debug.modinfo writes it.
    let m = rest.get(n..n + mlen)?;
    if m.len() < 33 || m[m.len() - 17] != b'\n' {
        return None;
    }
    Some(String::from_utf8_lossy(&m[16..m.len() - 16]).into_owned())
}

/// The major version of containerd named by the main package or module of a Go build info
/// (`github.com/containerd/containerd[/vN]/...`), None for anything else (k3s, a wrapper).
pub fn containerd_major(modinfo: &str) -> Option<u32> {
    modinfo.lines().find_map(|line| {
        let rest = line
            .strip_prefix("path\t")
            .or_else(|| line.strip_prefix("mod\t"))?;
        let path = rest.split('\t').next()?;
        let tail = path.strip_prefix("github.com/containerd/containerd")?;
        if tail.is_empty() {
            return Some(1);
        }
        let seg = tail.strip_prefix('/')?.split('/').next()?;
        match seg.strip_prefix('v').map(str::parse::<u32>) {
            Some(Ok(n)) if n >= 2 => Some(n),
            _ => Some(1),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_major_from_paths() {
        let v2 =
            "path\tgithub.com/containerd/containerd/v2/cmd/containerd\nbuild\t-trimpath=true\n";
        assert_eq!(containerd_major(v2), Some(2));
        let v1 = "path\tgithub.com/containerd/containerd/cmd/containerd\nbuild\tCGO_ENABLED=1\n";
        assert_eq!(containerd_major(v1), Some(1));
        let m =
            "path\tcommand-line-arguments\nmod\tgithub.com/containerd/containerd/v3\t(devel)\t\n";
        assert_eq!(containerd_major(m), Some(3));
        assert_eq!(
            containerd_major("mod\tgithub.com/containerd/containerd\tv1.7.24\n"),
            Some(1)
        );
        // Not containerd's own (k3s embeds it; a dependency is not the daemon).
        assert_eq!(containerd_major("path\tgithub.com/k3s-io/k3s/cmd/server\ndep\tgithub.com/containerd/containerd/v2\tv2.1.0\n"), None);
        assert_eq!(
            containerd_major("path\tgithub.com/containerd/containerdx/cmd\n"),
            None
        );
        assert_eq!(containerd_major(""), None);
    }

    /// A minimal ELF64 with the build info in a `.go.buildinfo` section (`sections`) or only
    /// in a writable PT_LOAD segment.
    fn fake_elf(modinfo: &str, sections: bool) -> Vec<u8> {
        let mut bi = MAGIC.to_vec();
        bi.extend([8u8, 2]);
        bi.resize(32, 0);
        let sentinel = "0123456789abcdef";
        let modinfo = format!("{sentinel}{modinfo}{sentinel}");
        for s in ["go1.22.1", &modinfo] {
            let mut n = s.len();
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    bi.push(b);
                    break;
                }
                bi.push(b | 0x80);
            }
            bi.extend(s.as_bytes());
        }
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        let put16 =
            |f: &mut Vec<u8>, o: usize, v: u16| f[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |f: &mut Vec<u8>, o: usize, v: u32| f[o..o + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |f: &mut Vec<u8>, o: usize, v: u64| f[o..o + 8].copy_from_slice(&v.to_le_bytes());
        // Some read-only bytes first, 16-aligned data after them.
        f.resize(256, 0x11);
        let data_off = f.len() as u64;
        f.extend(&bi);
        f.resize(f.len().next_multiple_of(16), 0);
        if sections {
            let strtab_off = f.len() as u64;
            let strtab = b"\0.shstrtab\0.go.buildinfo\0";
            f.extend(strtab);
            f.resize(f.len().next_multiple_of(8), 0);
            let shoff = f.len();
            f.resize(shoff + 3 * 64, 0);
            // [1] .shstrtab, [2] .go.buildinfo
            put32(&mut f, shoff + 64, 1);
            put64(&mut f, shoff + 64 + 24, strtab_off);
            put64(&mut f, shoff + 64 + 32, strtab.len() as u64);
            put32(&mut f, shoff + 128, 11);
            put64(&mut f, shoff + 128 + 24, data_off);
            put64(&mut f, shoff + 128 + 32, bi.len() as u64);
            put64(&mut f, 0x28, shoff as u64);
            put16(&mut f, 0x3a, 64);
            put16(&mut f, 0x3c, 3);
            put16(&mut f, 0x3e, 1);
        } else {
            let phoff = f.len();
            f.resize(phoff + 2 * 56, 0);
            // [0] read-only text, [1] writable data
            put32(&mut f, phoff, 1);
            put32(&mut f, phoff + 4, 5);
            put32(&mut f, phoff + 56, 1);
            put32(&mut f, phoff + 56 + 4, 6);
            put64(&mut f, phoff + 56 + 8, data_off);
            put64(&mut f, 0x20, phoff as u64);
            put16(&mut f, 0x36, 56);
            put16(&mut f, 0x38, 2);
        }
        f
    }

    #[test]
    fn modinfo_from_sections_and_segments() {
        let dir = std::env::temp_dir().join(format!("berth-shim-buildinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "path\tgithub.com/containerd/containerd/v2/cmd/containerd\nbuild\tGOOS=linux\n";
        for sections in [true, false] {
            let p = dir.join(format!("elf-{sections}"));
            std::fs::write(&p, fake_elf(text, sections)).unwrap();
            assert_eq!(modinfo(&p).as_deref(), Some(text), "sections={sections}");
        }
        // Not ELF, missing, empty.
        std::fs::write(dir.join("script"), "#!/bin/sh\nexit 0\n").unwrap();
        assert_eq!(modinfo(&dir.join("script")), None);
        assert_eq!(modinfo(&dir.join("missing")), None);
        std::fs::write(dir.join("empty"), "").unwrap();
        assert_eq!(modinfo(&dir.join("empty")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn real_containerd_if_installed() {
        // Debian 12's containerd 1.6 (and sid's 2.1.9 where hack/install-peers.sh unpacked it).
        let peers = std::env::var_os("BERTH_PEERS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| "/var/tmp/berth-peers".into());
        let cases = [
            (std::path::PathBuf::from("/usr/bin/containerd"), 1),
            (peers.join("containerd-2.1.9/root/usr/bin/containerd"), 2),
        ];
        for (bin, want) in cases {
            if bin.is_file() {
                let m = modinfo(&bin).expect("build info");
                assert_eq!(containerd_major(&m), Some(want), "{}", bin.display());
            }
        }
    }
}
