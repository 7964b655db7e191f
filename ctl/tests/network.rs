//! berthctl's container networking through CNI plugins (issue 13), end to end. Each test runs
//! berthctl in a network and mount namespace of its own (`Env::with_netns`: its own
//! /run/netns, /var/lib/cni, CNI configuration directory and iptables), so the host's network
//! is never touched; a veth there has HOST_ADDR, the "host's address" other than loopback.
//! Skipped without the plugins (Debian's containernetworking-plugins).

mod support;

use support::*;

const BODY: &str = "hello from berth\n";

/// One test at a time: the cgroup count of `counts` covers this process's cgroup parent.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A busybox httpd document root with BODY as its index.
fn www(e: &Env) -> String {
    let d = e.root.path().join("www");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.html"), BODY).unwrap();
    format!("{}:/www:ro", d.display())
}

fn sh(e: &Env, line: &str) -> String {
    let o = e.netns.as_ref().unwrap().sh(line);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The HTTP body at `url`, fetched from the test's namespace (curl), once it answers.
fn fetch(e: &Env, url: &str) -> String {
    let mut body = String::new();
    within_5s(|| {
        body = sh(e, &format!("curl -s -m 2 {url}"));
        !body.is_empty()
    });
    body
}

/// What a container's network leaves in the namespace, counted: veths, nat and filter rules
/// and chains, IPAM files, namespace files, mounts, the test's cgroups.
fn counts(e: &Env) -> Vec<(String, String)> {
    let probes = [
        (
            "veths",
            "ip -o link show type veth | grep -v -e ' v0@' -e ' v1@' | wc -l",
        ),
        ("nat", "iptables-save -t nat | grep -c -e '^-A' -e '^:'"),
        (
            "filter",
            "iptables-save -t filter | grep -c -e '^-A' -e '^:'",
        ),
        ("ipam files", "find /var/lib/cni -type f | sort"),
        ("netns files", "ls /run/netns | wc -l"),
        ("mounts", "wc -l < /proc/self/mountinfo"),
        (
            "cgroups",
            "find /sys/fs/cgroup -mindepth 2 -type d -path '*/berthctl-test-*/*' | wc -l",
        ),
    ];
    probes
        .iter()
        .map(|(what, cmd)| (what.to_string(), sh(e, cmd)))
        .collect()
}

fn run_ok(e: &Env, args: &[&str]) -> String {
    let o = e.run_ctr(args);
    assert!(
        o.status.success(),
        "run {args:?}: {}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn published_ports_answer_on_every_address_and_leave_nothing_behind() {
    let _serial = serial();
    let Some(e) = Env::with_netns() else { return };
    e.import_busybox();
    let www = www(&e);
    // The plugins' own chains (CNI-FORWARD, CNI-HOSTPORT-*) and the IPAM directory come with
    // the first container and stay, as with podman: the counts start after one.
    run_ok(&e, &["--rm", "-p", "18999:80", "busybox", "true"]);
    let before = counts(&e);

    let httpd = ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"];
    let mut args = vec!["-d", "--name", "web", "-p", "8080:80", "-v", &www];
    args.extend(httpd);
    run_ok(&e, &args);
    assert_eq!(fetch(&e, "http://127.0.0.1:8080/"), BODY, "on 127.0.0.1");
    assert_eq!(
        fetch(&e, &format!("http://{HOST_ADDR}:8080/")),
        BODY,
        "on the host's address"
    );
    // From another container, and from the container itself (hairpin), through the host.
    let url = format!("http://{HOST_ADDR}:8080/");
    assert_eq!(
        run_ok(&e, &["--rm", "busybox", "wget", "-q", "-O-", &url]),
        BODY
    );
    assert_eq!(e.ok(&["exec", "web", "wget", "-q", "-O-", &url]), BODY);

    assert_eq!(e.ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8080\n");
    assert_eq!(e.ok(&["port", "web", "80/tcp"]), "0.0.0.0:8080\n");
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");
    let ip = e.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    assert!(ip.starts_with("10.87.0."), "{ip}");
    let ports = e.ok(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "web"]);
    assert_eq!(
        ports.trim(),
        r#"{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]}"#
    );

    // The port is berthctl's to refuse (portmap reserves nothing), with docker's words.
    let o = e.run_ctr(&[
        "-d", "--name", "web2", "-p", "8080:80", "busybox", "sleep", "9",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Bind for 0.0.0.0:8080 failed: port is already allocated"),
        "{}",
        stderr(&o)
    );
    // A port a process of the host holds is refused too.
    let o = e.run_ctr(&["--rm", "-p", "127.0.0.1:8090:80", "busybox", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let held = e.netns.as_ref().unwrap();
    let mut listener = held
        .wrap(std::path::Path::new("/usr/bin/python3"))
        .args(["-c", "import socket,sys,time\ns=socket.socket()\ns.bind(('0.0.0.0',8091))\ns.listen()\nprint('ok',flush=True)\ntime.sleep(60)"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(listener.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let o = e.run_ctr(&["--rm", "-p", "8091:80", "busybox", "true"]);
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("port is already allocated"),
        "{}",
        stderr(&o)
    );

    // No host port: a free one.
    let mut args = vec!["-d", "--name", "web3", "-p", "80", "-v", &www];
    args.extend(httpd);
    run_ok(&e, &args);
    let addr = e.ok(&["port", "web3", "80"]);
    let port = addr.trim().rsplit(':').next().unwrap().to_string();
    assert_ne!(port, "0");
    assert_eq!(fetch(&e, &format!("http://127.0.0.1:{port}/")), BODY);

    e.ok(&["rm", "-f", "web", "web2", "web3"]);
    assert_eq!(counts(&e), before, "what the containers' networks left");
    e.assert_clean();
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name() {
    let _serial = serial();
    let Some(e) = Env::with_netns() else { return };
    e.import_busybox();
    let www = www(&e);
    let id = e.ok(&["network", "create", "appnet"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = e.ok(&["network", "ls"]);
    assert!(
        ls.contains("appnet") && ls.contains("bridge") && ls.contains("none"),
        "{ls}"
    );
    // docker's `network ls --format`.
    let names = e.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(
        names,
        "appnet bridge\nbridge bridge\nhost host\nnone null\n"
    );
    let conf = e.root.path().join("net.d/berth-appnet.conflist");
    assert!(conf.is_file(), "the network is a CNI conflist");

    let mut args = vec!["-d", "--name", "web", "--network", "appnet", "-v", &www];
    args.extend(["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]);
    run_ok(&e, &args);
    run_ok(
        &e,
        &[
            "-d",
            "--name",
            "later",
            "--network",
            "appnet",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    // Both ways: the first container's /etc/hosts was rewritten in place when `later` came.
    assert_eq!(
        run_ok(
            &e,
            &[
                "--rm",
                "--network",
                "appnet",
                "busybox",
                "wget",
                "-q",
                "-O-",
                "http://web/"
            ]
        ),
        BODY
    );
    assert_eq!(
        e.ok(&["exec", "later", "wget", "-q", "-O-", "http://web/"]),
        BODY
    );
    let seen = e.ok(&["exec", "web", "ping", "-c1", "-W2", "later"]);
    assert!(seen.contains("1 packets received"), "{seen}");
    // The default network has no names (as docker's).
    let o = e.run_ctr(&["--rm", "busybox", "wget", "-q", "-O-", "http://web/"]);
    assert!(!o.status.success());

    let o = e.run(&["network", "rm", "appnet"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has active endpoints"),
        "{}",
        stderr(&o)
    );
    let inspect = e.ok(&["network", "inspect", "-f", "{{json .Containers}}", "appnet"]);
    assert!(
        inspect.contains("\"Name\":\"web\"") && inspect.contains("\"Name\":\"later\""),
        "{inspect}"
    );

    // A container's root may chmod its /etc/hosts (a file of berthctl's on the host): the
    // containers' files are out of other users' reach, and a rewrite sets its mode back.
    e.ok(&["exec", "web", "chmod", "4755", "/etc/hosts"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(e.root.path().join("containers")), 0o700);
    assert_eq!(mode(e.root.path().to_path_buf()), 0o711);
    assert_eq!(mode(e.root.path().join("snapshots")), 0o700);

    // A name that leaves is gone from the others' hosts files.
    e.ok(&["rm", "-f", "later"]);
    let hosts = e.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("later"), "{hosts}");
    let perms = e.ok(&["exec", "web", "stat", "-c", "%a", "/etc/hosts"]);
    assert_eq!(perms.trim(), "644", "the rewrite set the mode back");
    e.ok(&["rm", "-f", "web"]);
    e.ok(&["network", "rm", "appnet"]);
    assert!(!conf.exists());
    let bridge = format!("br-{}", &id.trim()[..12]);
    assert_eq!(
        sh(&e, &format!("ip link show {bridge} 2>/dev/null")),
        "",
        "bridge left"
    );
    assert_eq!(
        sh(&e, "ls /var/lib/cni/networks | grep appnet"),
        "",
        "IPAM state left"
    );
    assert_eq!(sh(&e, "ls /run/netns"), "");
    e.assert_clean();
}

#[test]
fn ip_dns_add_host_and_another_containers_network() {
    let _serial = serial();
    let Some(e) = Env::with_netns() else { return };
    e.import_busybox();
    let www = www(&e);
    e.ok(&["network", "create", "--subnet", "10.99.5.0/24", "opts"]);
    let out = run_ok(
        &e,
        &[
            "--rm",
            "--network",
            "opts",
            "--ip",
            "10.99.5.77",
            "--dns",
            "192.0.2.53",
            "--add-host",
            "foo:192.0.2.9",
            "--add-host",
            "gw:host-gateway",
            "--hostname",
            "box",
            "busybox",
            "sh",
            "-c",
            "ip -4 -o addr show eth0; cat /etc/resolv.conf /etc/hosts",
        ],
    );
    assert!(out.contains("inet 10.99.5.77/24"), "{out}");
    assert!(out.contains("nameserver 192.0.2.53\n"), "{out}");
    assert_eq!(out.matches("nameserver").count(), 1, "{out}");
    assert!(out.contains("192.0.2.9\tfoo\n"), "{out}");
    assert!(out.contains("10.99.5.1\tgw\n"), "{out}");
    assert!(out.contains("10.99.5.77\tbox\n"), "{out}");

    for (args, why) in [
        (
            vec!["--ip", "10.87.0.9"],
            "user specified IP address is supported on user defined networks only",
        ),
        (vec!["--network", "nope"], "network nope not found"),
        (vec!["--network", "opts", "--ip", "10.99.6.1"], "10.99.6.1"),
        (vec!["-p", "8080:80/sctp"], "invalid protocol"),
    ] {
        let mut a = vec!["--rm"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        let o = e.run_ctr(&a);
        assert_eq!(o.status.code(), Some(125), "{a:?}");
        assert!(stderr(&o).contains(why), "{a:?}: {}", stderr(&o));
    }

    let mut args = vec!["-d", "--name", "web", "-v", &www];
    args.extend(["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]);
    run_ok(&e, &args);
    assert_eq!(
        run_ok(
            &e,
            &[
                "--rm",
                "--network",
                "container:web",
                "busybox",
                "wget",
                "-q",
                "-O-",
                "http://127.0.0.1/"
            ]
        ),
        BODY
    );
    let o = e.run_ctr(&[
        "--rm",
        "--network",
        "container:web",
        "-p",
        "80",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    e.ok(&["rm", "-f", "web"]);
    e.ok(&["network", "rm", "opts"]);
    assert_eq!(sh(&e, "ls /run/netns"), "");
    e.assert_clean();
}

#[test]
fn stop_start_and_a_killed_monitor_leave_the_network_clean() {
    let _serial = serial();
    let Some(e) = Env::with_netns() else { return };
    e.import_busybox();
    let www = www(&e);
    run_ok(&e, &["--rm", "-p", "18999:80", "busybox", "true"]);
    let before = counts(&e);
    let mut args = vec!["-d", "--name", "web", "-p", "8081:80", "-v", &www];
    args.extend(["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]);
    run_ok(&e, &args);
    assert_eq!(fetch(&e, "http://127.0.0.1:8081/"), BODY);
    e.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(counts(&e), before, "a stopped container keeps no network");
    e.ok(&["start", "web"]);
    assert_eq!(fetch(&e, "http://127.0.0.1:8081/"), BODY, "after start");
    assert_eq!(e.ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8081\n");

    // Its monitor killed: rm still takes the network down.
    let pid = e.ok(&["inspect", "-f", "{{.State.Pid}}", "web"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let monitor: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{monitor}/cmdline")).unwrap();
    assert!(cmdline.contains("__monitor"), "{cmdline}");
    // SAFETY: plain kill(2) of the monitor this test started (checked above).
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    e.ok(&["rm", "-f", "web"]);
    assert_eq!(
        counts(&e),
        before,
        "after a dead monitor's container is removed"
    );
    e.assert_clean();
}
