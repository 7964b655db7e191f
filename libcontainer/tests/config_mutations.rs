//! A stable-Rust mutation fuzzer of config.json through `config::check` (what berth checks
//! before it makes anything): valid seed configs, mutated at the JSON level (a value of the
//! wrong type, extremes, unknown keys, deep nesting, huge arrays, hostile paths) and at the
//! byte level (invalid UTF-8, truncation, flipped bytes). Each mutant must give a result, never
//! a panic, and an error must be one bounded line; for a mutant that is still a JSON object
//! the error must name the field (`process.user.uid: ...`). Fixed seeds here; the cargo-fuzz
//! target `config` (libcontainer/fuzz) is the long run. `BERTH_CONFIG_MUTATIONS=N` sets the
//! number of mutants (default 20,000).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A bundle directory with an empty rootfs, removed on drop.
struct Bundle(PathBuf);

impl Bundle {
    fn new() -> Bundle {
        let dir =
            std::env::temp_dir().join(format!("berth-config-mutations-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        Bundle(dir)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn seeds() -> Vec<Value> {
    let base = libcontainer::spec_default::default_spec(false);
    let rootless = libcontainer::spec_default::default_spec(true);
    let mut docker = base.clone();
    let profile: Value = serde_json::from_str(include_str!(
        "../src/seccomp/testdata/docker-default.oci.json"
    ))
    .unwrap();
    docker["linux"]["seccomp"] = profile;
    let mut rich = base.clone();
    rich["linux"]["devices"] = json!([
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}
    ]);
    rich["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
        "memory": {"limit": 67108864, "swap": 134217728, "reservation": 0, "swappiness": 60},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 64},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "unified": {"memory.high": "max"}
    });
    rich["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    rich["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    rich["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    rich["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "4096"});
    rich["hooks"] = json!({"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]});
    rich["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "rro", "nosuid"]}));
    rich["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]);
    rich["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 18});
    vec![base, rootless, docker, rich]
}

/// Hostile values a field may be replaced with.
fn hostile(r: &mut Rng) -> Value {
    match r.below(22) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1e308),
        6 => json!(4294967295u64),
        7 => json!(""),
        8 => json!("x".repeat(100_000)),
        9 => json!("../../../../etc/shadow"),
        10 => json!("/proc/self/fd/0"),
        11 => json!("a\u{0}b"),
        12 => json!([]),
        13 => Value::Array(vec![json!("x"); 10_000]),
        14 => json!({}),
        15 => json!({"unknownKey": [1, 2, 3]}),
        16 => {
            let mut v = json!(0);
            for _ in 0..r.below(300) {
                v = json!([v]);
            }
            v
        }
        17 => json!(0),
        18 => json!(2147483648u64),
        19 => json!("SCMP_ACT_KILL"),
        20 => json!("RLIMIT_NOFILE"),
        _ => json!("/"),
    }
}

/// A random node of `v` (by a walk of random length), as a JSON pointer.
fn random_pointer(v: &Value, r: &mut Rng) -> String {
    let mut ptr = String::new();
    let mut cur = v;
    loop {
        let next = match cur {
            Value::Object(m) if !m.is_empty() && r.below(4) != 0 => {
                let (k, v) = m.iter().nth(r.below(m.len())).unwrap();
                Some((k.replace('~', "~0").replace('/', "~1"), v))
            }
            Value::Array(a) if !a.is_empty() && r.below(4) != 0 => {
                let i = r.below(a.len());
                Some((i.to_string(), &a[i]))
            }
            _ => None,
        };
        match next {
            Some((k, v)) => {
                ptr.push('/');
                ptr.push_str(&k);
                cur = v;
            }
            None => return ptr,
        }
    }
}

fn mutate_json(mut v: Value, r: &mut Rng) -> Value {
    for _ in 0..1 + r.below(3) {
        let ptr = random_pointer(&v, r);
        if ptr.is_empty() {
            continue; // the root stays an object
        }
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        let action = r.below(4);
        let Some(p) = v.pointer_mut(parent) else {
            continue;
        };
        match (p, action) {
            (Value::Object(m), 0) => {
                m.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            (Value::Object(m), 1) => {
                // Keys are echoed in error paths: some hold control characters.
                let sep = ["", "\n", "\t", "\u{7}"][r.below(4)];
                m.insert(format!("unknown{sep}{}", r.below(10)), hostile(r));
            }
            (Value::Array(a), 0) if !a.is_empty() => {
                let i = r.below(a.len());
                a.push(a[i].clone());
            }
            _ => {
                if let Some(t) = v.pointer_mut(&ptr) {
                    *t = hostile(r);
                }
            }
        }
    }
    v
}

fn mutate_bytes(mut b: Vec<u8>, r: &mut Rng) -> Vec<u8> {
    for _ in 0..1 + r.below(4) {
        if b.is_empty() {
            break;
        }
        let i = r.below(b.len());
        match r.below(5) {
            0 => b[i] ^= 1 << r.below(8),
            1 => b.insert(i, 0xff),
            2 => b.truncate(i),
            3 => b.insert(i, b"{}[]\",:0-e\\"[r.below(11)]),
            _ => {
                let end = (i + r.below(64)).min(b.len());
                let chunk = b[i..end].to_vec();
                b.splice(i..i, chunk);
            }
        }
    }
    b
}

/// Run one mutant: never a panic; an error is one bounded line, and (`names_field`) says
/// which field.
fn run(bytes: &[u8], dir: &Path, names_field: bool) -> Result<(), String> {
    let res = std::panic::catch_unwind(|| libcontainer::config::check(bytes, dir).map(drop));
    let msg = match res {
        Err(_) => return Err("panicked".into()),
        Ok(Ok(())) => return Ok(()),
        Ok(Err(msg)) => msg,
    };
    if msg.is_empty() || msg.contains('\n') || msg.len() > 4096 {
        return Err(format!(
            "error is not one bounded line: {:?}",
            &msg[..msg.len().min(300)]
        ));
    }
    if names_field {
        // `field.path: why`, or serde's own message for a syntax error at the top level.
        let named = msg
            .split_once(": ")
            .is_some_and(|(head, _)| !head.is_empty() && !head.contains(' '));
        if !named {
            return Err(format!("error names no field: {msg:?}"));
        }
    }
    Ok(())
}

#[test]
fn mutated_configs_give_one_line_errors_and_never_panic() {
    let n: usize = std::env::var("BERTH_CONFIG_MUTATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let bundle = Bundle::new();
    let seeds = seeds();
    for s in &seeds {
        let bytes = serde_json::to_vec(s).unwrap();
        run(&bytes, &bundle.0, true).unwrap();
        assert!(
            libcontainer::config::check(&bytes, &bundle.0).is_ok(),
            "seed must be valid"
        );
    }
    // The panic hook would print each caught panic; the failure list says it once.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut failures = Vec::new();
    let mut rejected = 0usize;
    for i in 0..n {
        let seed = &seeds[r.below(seeds.len())];
        let (bytes, json_level) = match r.below(6) {
            0 | 1 => (
                mutate_bytes(serde_json::to_vec(seed).unwrap(), &mut r),
                false,
            ),
            // Both: a byte-level error inside what a JSON-level mutant added.
            2 => {
                let v = mutate_json(seed.clone(), &mut r);
                (mutate_bytes(serde_json::to_vec(&v).unwrap(), &mut r), false)
            }
            _ => (
                serde_json::to_vec(&mutate_json(seed.clone(), &mut r)).unwrap(),
                true,
            ),
        };
        if libcontainer::config::check(&bytes, &bundle.0).is_err() {
            rejected += 1;
        }
        if let Err(why) = run(&bytes, &bundle.0, json_level) {
            if failures.len() < 20 {
                let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
                failures.push(format!("mutant {i}: {why}\n  config: {shown}"));
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "{n} mutants, {rejected} rejected with an error, {} findings",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A fuzzer whose mutants all fail tests only the parser's first error.
    assert!(rejected < n, "every mutant was rejected");
}
