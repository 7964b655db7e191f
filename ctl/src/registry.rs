//! Registry commands: `login`, `logout`, `push`, and the options every registry access takes
//! (credentials from `--user` or docker's credential file, `--plain-http`, insecure hosts).

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context, Result};
use image::registry::PullOptions;

use crate::ctx::Ctx;

/// Registry options for `reference`'s registry: `user` ("USER:PASSWORD") or the kept
/// credentials, `plain_http`, the hosts in BERTHCTL_INSECURE_REGISTRIES (comma-separated), and
/// BERTHCTL_CERTS_DIR before /etc/docker/certs.d, /etc/containers/certs.d, /etc/berth/certs.d.
pub fn options(domain: &str, plain_http: bool, user: Option<&str>) -> Result<PullOptions> {
    let credentials = match user {
        Some(u) => {
            let (a, b) = u.split_once(':').context("--user: use USER:PASSWORD")?;
            Some((a.to_string(), b.to_string()))
        }
        None => {
            image::auth::lookup(domain).with_context(|| format!("the credentials for {domain}"))?
        }
    };
    let insecure_registries = std::env::var("BERTHCTL_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let mut o = PullOptions {
        plain_http,
        credentials,
        insecure_registries,
        ..Default::default()
    };
    // Certificates of berthctl's own (tests, users without /etc/docker): searched first.
    if let Some(d) = std::env::var_os("BERTHCTL_CERTS_DIR").filter(|d| !d.is_empty()) {
        o.certs_dirs.insert(0, d.into());
    }
    Ok(o)
}

/// The registry domain of an image reference.
pub fn domain_of(reference: &str) -> Result<String> {
    Ok(image::Reference::parse(reference)
        .with_context(|| format!("{reference:?}"))?
        .domain)
}

/// A registry argument (`host[:port]`, a URL, or none: Docker Hub) as a reference domain.
fn registry_domain(arg: Option<&str>) -> String {
    match arg {
        None => "docker.io".into(),
        Some(a) => {
            let a = a
                .strip_prefix("https://")
                .or_else(|| a.strip_prefix("http://"))
                .unwrap_or(a);
            let host = a.split('/').next().unwrap_or(a);
            match host {
                "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
                h => h.to_string(),
            }
        }
    }
}

/// Read a password from the terminal without echo.
fn prompt_password() -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    eprint!("Password: ");
    let old = tcgetattr(&stdin).context("read the terminal's settings")?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turn echo off")?;
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &old);
    eprintln!();
    r.context("read the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub struct LoginArgs<'a> {
    pub registry: Option<&'a str>,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub password_stdin: bool,
    pub plain_http: bool,
}

/// `login`: check the credentials against the registry, then keep them where docker does.
pub fn login(a: &LoginArgs<'_>) -> Result<i32> {
    let domain = registry_domain(a.registry);
    let user = match a.user {
        Some(u) => u.to_string(),
        None => {
            if !std::io::stdin().is_terminal() || a.password_stdin {
                bail!("give the user with -u/--username");
            }
            eprint!("Username: ");
            let mut l = String::new();
            std::io::stdin().lock().read_line(&mut l)?;
            l.trim().to_string()
        }
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.to_string()
        }
        (None, true) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("read the password from stdin")?;
            s.trim_end_matches(['\r', '\n']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => prompt_password()?,
        (None, false) => bail!("give the password with --password-stdin"),
    };
    if user.is_empty() || password.is_empty() {
        bail!("the user and the password must not be empty");
    }
    let mut opts = options(&domain, a.plain_http, None)?;
    opts.credentials = Some((user.clone(), password.clone()));
    image::registry::login(&domain, &opts)?;
    image::auth::store(&domain, &user, &password).with_context(|| {
        format!(
            "keep the credentials in {}",
            image::auth::config_path().display()
        )
    })?;
    println!("Login Succeeded");
    Ok(0)
}

/// `logout`: forget the credentials of a registry.
pub fn logout(registry: Option<&str>) -> Result<i32> {
    let domain = registry_domain(registry);
    if image::auth::erase(&domain)? {
        println!(
            "Removing login credentials for {}",
            image::auth::key_for(&domain)
        );
    } else {
        println!("Not logged in to {}", image::auth::key_for(&domain));
    }
    Ok(0)
}

/// `push NAME [DEST]`: progress per blob on stderr (a bar each on a terminal, a line when a
/// blob starts and when it is done otherwise), as a pull shows it; `quiet`: none, and only the
/// pushed reference on stdout (as docker push -q).
pub fn push(
    ctx: &Ctx,
    name: &str,
    dest: Option<&str>,
    plain_http: bool,
    user: Option<&str>,
    chunk_size: Option<u64>,
    quiet: bool,
) -> Result<i32> {
    let rec = ctx
        .store
        .image(name)
        .with_context(|| format!("push {name}"))?;
    let target = dest.unwrap_or(&rec.name).to_string();
    let r = image::Reference::parse(&target).with_context(|| format!("push {target:?}"))?;
    if !quiet {
        println!("The push refers to repository [{}]", r.repository());
    }
    let opts = options(&r.domain, plain_http, user)?;
    let mut push_opts = image::push::PushOptions::default();
    if let Some(c) = chunk_size {
        if c == 0 {
            bail!("--chunk-size must be positive");
        }
        push_opts.chunk_size = c;
    }
    let reporter;
    let progress: &dyn image::Progress = if quiet {
        &image::Quiet
    } else {
        reporter = crate::progress::Reporter::new();
        &reporter
    };
    let pushed = image::push::push(&ctx.store, name, Some(&target), &opts, &push_opts, progress)
        .with_context(|| format!("push {target}"))?;
    if quiet {
        println!("{r}");
        return Ok(0);
    }
    let object = r.tag.clone().unwrap_or_else(|| "<digest>".into());
    println!(
        "{object}: digest: {} size: {}",
        pushed.digest.map(|d| d.to_string()).unwrap_or_default(),
        pushed.size
    );
    Ok(0)
}
