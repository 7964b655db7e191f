//! A minimal rtnetlink client (NETLINK_ROUTE over a raw netlink socket): exactly the requests
//! `linux.netDevices` needs (find a link, list links and addresses, move and rename a link,
//! add an address, set a link up). Messages are built and read as bytes in native order; the
//! socket is nix's, so there is no `unsafe` here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
/// include/uapi/linux/if_addr.h
pub const IFA_F_PERMANENT: u32 = 0x80;
const IFA_F_NODAD: u32 = 0x02;
const IFA_F_NOPREFIXROUTE: u32 = 0x200;
/// RT_SCOPE_UNIVERSE: an address for communication beyond the host.
pub const SCOPE_UNIVERSE: u8 = 0;
const IFF_UP: u32 = 1;

/// One link as RTM_NEWLINK describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: i32,
    pub name: String,
}

/// One address as RTM_NEWADDR describes it (the attributes that make it again elsewhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub family: u8,
    pub prefix_len: u8,
    /// IFA_FLAGS when present (it holds all 32 bits), else the header's 8.
    pub flags: u32,
    pub scope: u8,
    pub index: u32,
    pub address: Option<Vec<u8>>,
    pub local: Option<Vec<u8>>,
    pub broadcast: Option<Vec<u8>>,
}

impl Addr {
    /// The address as `ip` prints it (`10.0.0.1/24`, `fd00::1/64`), for messages.
    pub fn show(&self) -> String {
        let bytes = self.local.as_ref().or(self.address.as_ref());
        let ip = match bytes.map(Vec::as_slice) {
            Some(b) if b.len() == 4 => {
                std::net::IpAddr::from(<[u8; 4]>::try_from(b).expect("4 bytes")).to_string()
            }
            Some(b) if b.len() == 16 => {
                std::net::IpAddr::from(<[u8; 16]>::try_from(b).expect("16 bytes")).to_string()
            }
            _ => "?".into(),
        };
        format!("{ip}/{}", self.prefix_len)
    }
}

/// A NETLINK_ROUTE socket, bound to the network namespace of the thread that opened it.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    pub fn open() -> io::Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Socket { fd, seq: 0 })
    }

    /// The link named `name`; `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST);
        m.bytes(&ifinfomsg(0, 0, 0));
        m.attr(IFLA_IFNAME, &nul_terminated(name));
        match self.request(m) {
            Ok(replies) => Ok(replies
                .iter()
                .find(|(t, _)| *t == RTM_NEWLINK)
                .and_then(|(_, p)| parse_link(p))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
        m.bytes(&ifinfomsg(0, 0, 0));
        Ok(self
            .request(m)?
            .iter()
            .filter(|(t, _)| *t == RTM_NEWLINK)
            .filter_map(|(_, p)| parse_link(p))
            .collect())
    }

    /// Every address of link `index` (all families).
    pub fn addrs(&mut self, index: i32) -> io::Result<Vec<Addr>> {
        let mut m = Msg::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP);
        m.bytes(&[0u8; IFADDRMSG_LEN]);
        Ok(self
            .request(m)?
            .iter()
            .filter(|(t, _)| *t == RTM_NEWADDR)
            .filter_map(|(_, p)| parse_addr(p))
            .filter(|a| a.index as i32 == index)
            .collect())
    }

    /// Move link `index` into the network namespace `netns`, named `name` there (a `%d` in it
    /// lets the kernel pick a free number).
    pub fn move_link(&mut self, index: i32, netns: BorrowedFd, name: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
        m.bytes(&ifinfomsg(index, 0, 0));
        m.attr(IFLA_NET_NS_FD, &(netns.as_raw_fd() as u32).to_ne_bytes());
        m.attr(IFLA_IFNAME, &nul_terminated(name));
        self.request(m).map(drop)
    }

    /// Add `addr` to link `index`.
    pub fn add_addr(&mut self, index: i32, addr: &Addr) -> io::Result<()> {
        let mut m = Msg::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        );
        let flags = addr.flags & (IFA_F_NODAD | IFA_F_NOPREFIXROUTE);
        m.bytes(&[addr.family, addr.prefix_len, flags as u8, addr.scope]);
        m.bytes(&(index as u32).to_ne_bytes());
        for (t, v) in [
            (IFA_LOCAL, &addr.local),
            (IFA_ADDRESS, &addr.address),
            (IFA_BROADCAST, &addr.broadcast),
        ] {
            if let Some(v) = v {
                m.attr(t, v);
            }
        }
        m.attr(IFA_FLAGS, &flags.to_ne_bytes());
        self.request(m).map(drop)
    }

    /// Set IFF_UP on link `index`.
    pub fn set_up(&mut self, index: i32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
        m.bytes(&ifinfomsg(index, IFF_UP, IFF_UP));
        self.request(m).map(drop)
    }

    /// Send one request and read replies until its ack, its error or the end of its dump.
    fn request(&mut self, mut m: Msg) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = m.flags() & NLM_F_DUMP == NLM_F_DUMP;
        let acked = m.flags() & NLM_F_ACK != 0;
        let buf = m.finish(seq);
        send(self.fd.as_raw_fd(), &buf, MsgFlags::empty())?;
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 32 * 1024];
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut rbuf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r?,
            };
            if n == 0 {
                return Err(io::Error::other("netlink socket closed"));
            }
            for (typ, mseq, payload) in split(&rbuf[..n])? {
                if mseq != seq {
                    continue;
                }
                match typ {
                    NLMSG_ERROR => {
                        let errno = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                            .ok_or_else(|| io::Error::other("short netlink error"))?;
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    NLMSG_DONE => {
                        // A dump that ended in an error says so in its DONE message.
                        let errno = payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                        if errno < 0 {
                            return Err(io::Error::from_raw_os_error(-errno));
                        }
                        return Ok(out);
                    }
                    _ => {
                        out.push((typ, payload.to_vec()));
                        if !dump && !acked {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

/// A request under construction: header, then payload and attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(typ: u16, flags: u16) -> Msg {
        let mut v = vec![0u8; NLMSG_HDRLEN];
        v[4..6].copy_from_slice(&typ.to_ne_bytes());
        v[6..8].copy_from_slice(&flags.to_ne_bytes());
        Msg(v)
    }

    fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.0[6], self.0[7]])
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
        self.pad();
    }

    fn attr(&mut self, typ: u16, data: &[u8]) {
        self.0
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&typ.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn finish(&mut self, seq: u32) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        std::mem::take(&mut self.0)
    }
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut b = [0u8; IFINFOMSG_LEN];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages of one datagram: (type, sequence number, payload).
fn split(buf: &[u8]) -> io::Result<Vec<(u16, u32, &[u8])>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let h = &buf[off..];
        let len = u32::from_ne_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(io::Error::other("malformed netlink message"));
        }
        let typ = u16::from_ne_bytes([h[4], h[5]]);
        let seq = u32::from_ne_bytes(h[8..12].try_into().expect("4 bytes"));
        out.push((typ, seq, &h[NLMSG_HDRLEN..len]));
        off += align4(len);
    }
    Ok(out)
}

/// The attributes after a fixed header of `skip` bytes: (type, data).
fn attrs(payload: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = align4(skip);
    while off + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[off], payload[off + 1]]) as usize;
        let typ = u16::from_ne_bytes([payload[off + 2], payload[off + 3]]) & 0x3fff;
        if len < 4 || off + len > payload.len() {
            break;
        }
        out.push((typ, &payload[off + 4..off + len]));
        off += align4(len);
    }
    out
}

fn parse_link(p: &[u8]) -> Option<Link> {
    let index = i32::from_ne_bytes(p.get(4..8)?.try_into().ok()?);
    let name = attrs(p, IFINFOMSG_LEN)
        .into_iter()
        .find(|(t, _)| *t == IFLA_IFNAME)
        .map(|(_, d)| {
            String::from_utf8_lossy(d.split(|b| *b == 0).next().unwrap_or(d)).into_owned()
        })?;
    Some(Link { index, name })
}

fn parse_addr(p: &[u8]) -> Option<Addr> {
    let h = p.get(..IFADDRMSG_LEN)?;
    let mut a = Addr {
        family: h[0],
        prefix_len: h[1],
        flags: u32::from(h[2]),
        scope: h[3],
        index: u32::from_ne_bytes(h[4..8].try_into().ok()?),
        address: None,
        local: None,
        broadcast: None,
    };
    for (t, d) in attrs(p, IFADDRMSG_LEN) {
        match t {
            IFA_ADDRESS => a.address = Some(d.to_vec()),
            IFA_LOCAL => a.local = Some(d.to_vec()),
            IFA_BROADCAST => a.broadcast = Some(d.to_vec()),
            IFA_FLAGS if d.len() == 4 => a.flags = u32::from_ne_bytes(d.try_into().ok()?),
            _ => {}
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_REQUEST);
        m.bytes(&[2, 24, 0, 0]);
        m.bytes(&7u32.to_ne_bytes());
        m.attr(IFA_LOCAL, &[10, 0, 0, 1]);
        m.attr(IFA_FLAGS, &IFA_F_PERMANENT.to_ne_bytes());
        let buf = m.finish(9);
        assert_eq!(buf.len() % 4, 0);
        let msgs = split(&buf).unwrap();
        assert_eq!(msgs.len(), 1);
        let (typ, seq, payload) = msgs[0];
        assert_eq!((typ, seq), (RTM_NEWADDR, 9));
        let a = parse_addr(payload).unwrap();
        assert_eq!((a.family, a.prefix_len, a.index), (2, 24, 7));
        assert_eq!(a.flags, IFA_F_PERMANENT);
        assert_eq!(a.show(), "10.0.0.1/24");

        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST);
        m.bytes(&ifinfomsg(5, 0, 0));
        m.attr(IFLA_IFNAME, &nul_terminated("eth1"));
        let buf = m.finish(1);
        let (_, _, payload) = split(&buf).unwrap()[0];
        assert_eq!(
            parse_link(payload),
            Some(Link {
                index: 5,
                name: "eth1".into()
            })
        );
        assert!(split(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
