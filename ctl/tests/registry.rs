//! `login`, `logout`, `push` and `pull` against Debian's docker-registry with TLS (a CA of the
//! test's own and a client certificate the registry requires, through BERTHCTL_CERTS_DIR) and
//! htpasswd auth, at a non-loopback address inside
//! a network namespace of the test's own (`unshare -n`: the host's network is never touched),
//! with docker's credential file in a DOCKER_CONFIG of the test's own. Also a plain-HTTP
//! registry at that address ("server gave HTTP response to HTTPS client") and a CA that is not
//! given (a certificate error). Skipped without root, openssl, docker-registry or the fixture.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn tls_registry_with_login_push_and_pull() {
    if !Path::new("/usr/bin/docker-registry").exists()
        || Command::new("openssl").arg("version").output().is_err()
    {
        eprintln!("skipped: docker-registry or openssl missing");
        return;
    }
    let Some(e) = env() else { return };
    e.import_busybox();
    let t = e.root.path().join("tls");
    std::fs::create_dir_all(&t).unwrap();
    let ip = "10.254.1.1";
    openssl(
        &t,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ],
    );
    openssl(
        &t,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            &format!("/CN={ip}"),
        ],
    );
    std::fs::write(t.join("ext"), format!("subjectAltName=IP:{ip}\n")).unwrap();
    openssl(
        &t,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    // A client certificate the registry requires (mutual TLS).
    openssl(
        &t,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=berthctl",
        ],
    );
    std::fs::write(t.join("client-ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        &t,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.cert",
            "-days",
            "2",
            "-extfile",
            "client-ext",
        ],
    );
    // An X.509 v1 certificate (no extensions): TLS cannot use it; berthctl must say so (it
    // used to abort inside the TLS library).
    openssl(
        &t,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "v1.cert",
            "-days",
            "2",
        ],
    );
    let v1 = t.join("certs-v1.d").join(format!("{ip}:5443"));
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::copy(t.join("ca.crt"), v1.join("ca.crt")).unwrap();
    std::fs::copy(t.join("v1.cert"), v1.join("client.cert")).unwrap();
    std::fs::copy(t.join("client.key"), v1.join("client.key")).unwrap();
    let certs = t.join("certs.d");
    std::fs::create_dir_all(certs.join(format!("{ip}:5443"))).unwrap();
    for f in ["ca.crt", "client.cert", "client.key"] {
        std::fs::copy(t.join(f), certs.join(format!("{ip}:5443/{f}"))).unwrap();
    }
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(t.join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    let td = t.display();
    std::fs::write(
        t.join("tls.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {td}/data\n\
             http:\n  addr: {ip}:5443\n  tls:\n    certificate: {td}/srv.crt\n    key: {td}/srv.key\n    clientcas:\n      - {td}/ca.crt\n\
             auth:\n  htpasswd:\n    realm: test\n    path: {td}/htpasswd\n"
        ),
    )
    .unwrap();
    std::fs::write(
        t.join("plain.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {td}/data2\nhttp:\n  addr: {ip}:5080\n"
        ),
    )
    .unwrap();
    std::fs::write(t.join("pw"), "s3cret\n").unwrap();
    let ctl = |root: &Path| {
        format!(
            "env DOCKER_CONFIG={td}/docker BERTHCTL_CERTS_DIR={} {} --root {}",
            certs.display(),
            env!("CARGO_BIN_EXE_berthctl"),
            root.display()
        )
    };
    let a = ctl(e.root.path());
    let other = e.root.path().join("other");
    let b = ctl(&other);
    let nocerts = format!(
        "env DOCKER_CONFIG={td}/docker {} --root {}",
        env!("CARGO_BIN_EXE_berthctl"),
        other.display()
    );
    let v1ctl = format!(
        "env DOCKER_CONFIG={td}/docker BERTHCTL_CERTS_DIR={td}/certs-v1.d {} --root {}",
        env!("CARGO_BIN_EXE_berthctl"),
        other.display()
    );
    let script = format!(
        r#"
ip link set lo up
ip addr add {ip}/32 dev lo
/usr/bin/docker-registry serve {td}/tls.yml >{td}/reg.log 2>&1 & r1=$!
/usr/bin/docker-registry serve {td}/plain.yml >{td}/reg2.log 2>&1 & r2=$!
trap 'kill $r1 $r2' EXIT
for i in $(seq 100); do (exec 3<>/dev/tcp/{ip}/5443) 2>/dev/null && break; sleep 0.1; done 2>/dev/null || true
sleep 0.5
{a} tag busybox {ip}:5443/team/bb:1
echo "== push without login"; {a} push {ip}:5443/team/bb:1 2>&1 || echo "exit $?"
echo "== wrong password"; echo nope | {a} login -u alice --password-stdin {ip}:5443 2>&1 || echo "exit $?"
echo "== login"; {a} login -u alice --password-stdin {ip}:5443 < {td}/pw
echo "== config"; cat {td}/docker/config.json; echo
echo "== push"; {a} push {ip}:5443/team/bb:1 2>&1
echo "== push quiet"; {a} push -q {ip}:5443/team/bb:1 2>&1
echo "== pull"; {b} pull {ip}:5443/team/bb:1 2>/dev/null
echo "== no CA"; {nocerts} pull {ip}:5443/team/bb:1 2>&1 || echo "exit $?"
echo "== v1 client cert"; {v1ctl} pull {ip}:5443/team/bb:1 2>&1 || echo "exit $?"
echo "== plain http"; {a} tag busybox {ip}:5080/x:1; {a} push {ip}:5080/x:1 2>&1 || echo "exit $?"
echo "== plain http flag"; {a} push --plain-http {ip}:5080/x:1 2>/dev/null
echo "== logout"; {a} logout {ip}:5443
echo "== pull after logout"; {b} pull {ip}:5443/team/bb:1 2>&1 || echo "exit $?"
"#,
    );
    // Under bash for /dev/tcp.
    let o = Command::new("unshare")
        .args(["-n", "bash", "-c", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr);
    let part = |name: &str| -> String {
        let start = out
            .find(&format!("== {name}\n"))
            .unwrap_or_else(|| panic!("no {name:?} in:\n{out}\n{err}"));
        let rest = &out[start + name.len() + 4..];
        rest[..rest.find("\n== ").unwrap_or(rest.len())].to_string()
    };
    let p = part("push without login");
    assert!(
        p.contains("exit 125") && (p.contains("user and password") || p.contains("access denied")),
        "{p}"
    );
    let p = part("wrong password");
    assert!(
        p.contains("incorrect username or password") && p.contains("exit 125"),
        "{p}"
    );
    assert!(part("login").contains("Login Succeeded"), "{out}\n{err}");
    // docker's credential file, as docker writes it.
    let cfg: serde_json::Value = serde_json::from_str(part("config").trim()).unwrap();
    assert_eq!(
        cfg["auths"][format!("{ip}:5443")]["auth"],
        "YWxpY2U6czNjcmV0"
    );
    // Progress per blob on stderr, as a pull shows it (plain lines: not a terminal).
    let p = part("push");
    assert!(p.contains("1: digest: sha256:"), "{p}");
    assert!(
        p.lines().filter(|l| l.contains(": pushing ")).count() == 2
            && p.lines().filter(|l| l.ends_with(": pushed")).count() == 2,
        "{p}"
    );
    // -q: no progress, only the reference.
    assert_eq!(
        part("push quiet").trim(),
        format!("{ip}:5443/team/bb:1"),
        "{out}"
    );
    assert!(
        part("pull").contains(&format!("Pulled {ip}:5443/team/bb:1")),
        "{out}\n{err}"
    );
    let p = part("no CA");
    assert!(
        p.contains("exit 125") && p.to_lowercase().contains("certificate"),
        "{p}"
    );
    let p = part("v1 client cert");
    assert!(
        p.contains("not usable as a client certificate") && p.contains("exit 125"),
        "{p}"
    );
    let p = part("plain http");
    assert!(
        p.contains("server gave HTTP response to HTTPS client") && p.contains("exit 125"),
        "{p}"
    );
    assert!(
        part("plain http flag").contains("1: digest:"),
        "{out}\n{err}"
    );
    assert!(
        part("logout").contains("Removing login credentials"),
        "{out}"
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join("docker/config.json")).unwrap()).unwrap();
    assert!(cfg["auths"].get(format!("{ip}:5443")).is_none(), "{cfg}");
    assert!(part("pull after logout").contains("exit 125"), "{out}");
    e.assert_clean();
}
