//! The few messages of CRIU's RPC protocol (`rpc.proto`, proto2) that berth sends and reads,
//! encoded and decoded by hand: a request is a handful of scalar, string and nested fields,
//! a response a few more, so a protobuf code generator would be more than the protocol.
//! Field numbers are rpc.proto's.

/// `criu_req_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqType {
    Dump = 1,
    Restore = 2,
    PreDump = 4,
    Notify = 6,
    FeatureCheck = 9,
}

impl ReqType {
    fn from_i64(v: i64) -> Option<ReqType> {
        Some(match v {
            1 => ReqType::Dump,
            2 => ReqType::Restore,
            4 => ReqType::PreDump,
            6 => ReqType::Notify,
            9 => ReqType::FeatureCheck,
            _ => return None,
        })
    }
}

/// `criu_cg_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgMode {
    Ignore = 0,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

/// `criu_opts`: only the fields berth sets (unset ones are left out of the message).
#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub images_dir_fd: i32,
    pub pid: Option<i32>,
    pub leave_running: bool,
    pub ext_unix_sk: bool,
    pub tcp_established: bool,
    pub evasive_devices: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub log_level: i32,
    pub log_file: String,
    /// `criu_page_server_info`: address and port.
    pub page_server: Option<(String, i32)>,
    pub notify_scripts: bool,
    pub root: Option<String>,
    pub parent_img: Option<String>,
    pub track_mem: bool,
    pub auto_dedup: bool,
    pub work_dir_fd: Option<i32>,
    pub link_remap: bool,
    /// `ext_mount_map` key, value.
    pub ext_mnt: Vec<(String, String)>,
    pub manage_cgroups: bool,
    /// `cgroup_root` controller, path.
    pub cg_root: Vec<(String, String)>,
    pub rst_sibling: bool,
    /// `inherit_fd` key, fd.
    pub inherit_fd: Vec<(String, i32)>,
    pub manage_cgroups_mode: Option<CgMode>,
    pub external: Vec<String>,
    pub empty_ns: u32,
    /// `join_namespace` ns, ns_file.
    pub join_ns: Vec<(String, String)>,
    pub freeze_cgroup: Option<String>,
    pub tcp_skip_in_flight: bool,
    pub lazy_pages: bool,
    pub status_fd: Option<i32>,
    pub orphan_pts_master: bool,
    pub config_file: Option<String>,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
}

/// `criu_req`.
#[derive(Debug, Clone)]
pub struct Req {
    pub typ: ReqType,
    pub opts: Option<Opts>,
    pub notify_success: bool,
    /// `criu_features` asked for: mem_track, lazy_pages.
    pub features: Option<(bool, bool)>,
}

/// `criu_resp`, the fields berth reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resp {
    pub typ: Option<ReqType>,
    pub success: bool,
    /// `criu_restore_resp.pid`.
    pub restore_pid: Option<i32>,
    /// `criu_notify`: script, pid.
    pub notify_script: Option<String>,
    pub notify_pid: Option<i32>,
    pub cr_errno: Option<i32>,
    pub cr_errmsg: Option<String>,
    /// `criu_features`: mem_track, lazy_pages.
    pub features: Option<(Option<bool>, Option<bool>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed message from criu: {0}")]
pub struct DecodeError(&'static str);

// ---- encoding ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

/// int32 (a negative value is sign-extended to 10 bytes, as protobuf does), uint32, bool, enum.
fn int(out: &mut Vec<u8>, field: u32, v: i64) {
    key(out, field, 0);
    varint(out, v as u64);
}

fn flag(out: &mut Vec<u8>, field: u32, v: bool) {
    if v {
        int(out, field, 1);
    }
}

fn bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    key(out, field, 2);
    varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

fn string(out: &mut Vec<u8>, field: u32, v: &str) {
    bytes(out, field, v.as_bytes());
}

fn pair(out: &mut Vec<u8>, field: u32, k: &str, v: &str) {
    let mut m = Vec::new();
    string(&mut m, 1, k);
    string(&mut m, 2, v);
    bytes(out, field, &m);
}

impl Opts {
    fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        int(&mut o, 1, self.images_dir_fd.into());
        if let Some(p) = self.pid {
            int(&mut o, 2, p.into());
        }
        flag(&mut o, 3, self.leave_running);
        flag(&mut o, 4, self.ext_unix_sk);
        flag(&mut o, 5, self.tcp_established);
        flag(&mut o, 6, self.evasive_devices);
        flag(&mut o, 7, self.shell_job);
        flag(&mut o, 8, self.file_locks);
        int(&mut o, 9, self.log_level.into());
        string(&mut o, 10, &self.log_file);
        if let Some((addr, port)) = &self.page_server {
            let mut m = Vec::new();
            string(&mut m, 1, addr);
            int(&mut m, 2, (*port).into());
            bytes(&mut o, 11, &m);
        }
        flag(&mut o, 12, self.notify_scripts);
        if let Some(r) = &self.root {
            string(&mut o, 13, r);
        }
        if let Some(p) = &self.parent_img {
            string(&mut o, 14, p);
        }
        flag(&mut o, 15, self.track_mem);
        flag(&mut o, 16, self.auto_dedup);
        if let Some(fd) = self.work_dir_fd {
            int(&mut o, 17, fd.into());
        }
        flag(&mut o, 18, self.link_remap);
        for (k, v) in &self.ext_mnt {
            pair(&mut o, 23, k, v);
        }
        flag(&mut o, 24, self.manage_cgroups);
        for (ctrl, path) in &self.cg_root {
            pair(&mut o, 25, ctrl, path);
        }
        flag(&mut o, 26, self.rst_sibling);
        for (k, fd) in &self.inherit_fd {
            let mut m = Vec::new();
            string(&mut m, 1, k);
            int(&mut m, 2, (*fd).into());
            bytes(&mut o, 27, &m);
        }
        if let Some(mode) = self.manage_cgroups_mode {
            int(&mut o, 34, mode as i64);
        }
        for e in &self.external {
            string(&mut o, 37, e);
        }
        if self.empty_ns != 0 {
            int(&mut o, 38, self.empty_ns.into());
        }
        for (ns, file) in &self.join_ns {
            pair(&mut o, 39, ns, file);
        }
        if let Some(f) = &self.freeze_cgroup {
            string(&mut o, 44, f);
        }
        flag(&mut o, 46, self.tcp_skip_in_flight);
        flag(&mut o, 48, self.lazy_pages);
        if let Some(fd) = self.status_fd {
            int(&mut o, 49, fd.into());
        }
        flag(&mut o, 50, self.orphan_pts_master);
        if let Some(c) = &self.config_file {
            string(&mut o, 51, c);
        }
        if let Some(p) = &self.lsm_profile {
            string(&mut o, 53, p);
        }
        if let Some(c) = &self.lsm_mount_context {
            string(&mut o, 63, c);
        }
        o
    }
}

impl Req {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        int(&mut out, 1, self.typ as i64);
        if let Some(o) = &self.opts {
            bytes(&mut out, 2, &o.encode());
        }
        if self.notify_success {
            int(&mut out, 3, 1);
        }
        if let Some((mem_track, lazy)) = self.features {
            let mut m = Vec::new();
            if mem_track {
                int(&mut m, 1, 1);
            }
            if lazy {
                int(&mut m, 2, 1);
            }
            bytes(&mut out, 5, &m);
        }
        out
    }
}

// ---- decoding ----

enum Value<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .0
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    /// The next field, or None at the end.
    fn field(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        let num = (k >> 3) as u32;
        let v = match k & 7 {
            0 => Value::Int(self.varint()?),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| DecodeError("length"))?;
                if n > self.0.len() {
                    return Err(DecodeError("truncated field"));
                }
                let (b, rest) = self.0.split_at(n);
                self.0 = rest;
                Value::Bytes(b)
            }
            1 => {
                let (b, rest) = self.0.split_at_checked(8).ok_or(DecodeError("truncated"))?;
                self.0 = rest;
                Value::Int(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            5 => {
                let (b, rest) = self.0.split_at_checked(4).ok_or(DecodeError("truncated"))?;
                self.0 = rest;
                Value::Int(u32::from_le_bytes(b.try_into().expect("4 bytes")).into())
            }
            _ => return Err(DecodeError("unknown wire type")),
        };
        Ok(Some((num, v)))
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i as i64),
        Value::Bytes(_) => None,
    }
}

fn as_str(v: &Value) -> Option<String> {
    match v {
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(_) => None,
    }
}

fn sub<'a>(v: &Value<'a>) -> Reader<'a> {
    match v {
        Value::Bytes(b) => Reader(b),
        Value::Int(_) => Reader(&[]),
    }
}

impl Resp {
    pub fn decode(buf: &[u8]) -> Result<Resp, DecodeError> {
        let mut r = Reader(buf);
        let mut resp = Resp::default();
        while let Some((num, v)) = r.field()? {
            match num {
                1 => resp.typ = as_int(&v).and_then(ReqType::from_i64),
                2 => resp.success = as_int(&v).unwrap_or(0) != 0,
                4 => {
                    let mut m = sub(&v);
                    while let Some((n, f)) = m.field()? {
                        if n == 1 {
                            resp.restore_pid = as_int(&f).map(|i| i as i32);
                        }
                    }
                }
                5 => {
                    let mut m = sub(&v);
                    while let Some((n, f)) = m.field()? {
                        match n {
                            1 => resp.notify_script = as_str(&f),
                            2 => resp.notify_pid = as_int(&f).map(|i| i as i32),
                            _ => {}
                        }
                    }
                }
                7 => resp.cr_errno = as_int(&v).map(|i| i as i32),
                8 => {
                    let mut m = sub(&v);
                    let mut feat = (None, None);
                    while let Some((n, f)) = m.field()? {
                        match n {
                            1 => feat.0 = as_int(&f).map(|i| i != 0),
                            2 => feat.1 = as_int(&f).map(|i| i != 0),
                            _ => {}
                        }
                    }
                    resp.features = Some(feat);
                }
                9 => resp.cr_errmsg = as_str(&v),
                _ => {}
            }
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_notify_ack() {
        let r = Req {
            typ: ReqType::Notify,
            opts: None,
            notify_success: true,
            features: None,
        };
        assert_eq!(r.encode(), vec![0x08, 6, 0x18, 1]);
    }

    #[test]
    fn encodes_negative_int32_as_ten_bytes() {
        let mut o = Vec::new();
        int(&mut o, 49, -1);
        assert_eq!(o.len(), 2 + 10);
    }

    #[test]
    fn decodes_a_notify() {
        // type NOTIFY, success, notify { script "post-restore", pid 42 }
        let mut m = Vec::new();
        string(&mut m, 1, "post-restore");
        int(&mut m, 2, 42);
        let mut b = Vec::new();
        int(&mut b, 1, 6);
        int(&mut b, 2, 1);
        bytes(&mut b, 5, &m);
        let r = Resp::decode(&b).unwrap();
        assert_eq!(r.typ, Some(ReqType::Notify));
        assert!(r.success);
        assert_eq!(r.notify_script.as_deref(), Some("post-restore"));
        assert_eq!(r.notify_pid, Some(42));
    }

    #[test]
    fn rejects_truncation() {
        assert!(Resp::decode(&[0x2a, 5, 1]).is_err());
    }
}
