//! The RUN step: its command (`run::run_command`) in a container of the runtime on the step's
//! snapshot, with the network it asks for, its heredoc scripts under /dev/pipes, the host's
//! resolv.conf and hosts with the host network, and the mount points the runtime makes for
//! them taken out of the layer again (`stubs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use image::bundle::{Bind, Network};
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::build::{Builder, Error, Result, State};
use crate::context::{self, Selected};
use crate::dockerfile::Instruction;
use crate::exec;
use crate::meta;
use crate::mounts::{self, Kind, MountSpec, SecretSource, Sharing};
use crate::step::{Step, View};

impl Builder<'_> {
    /// The ARGs in scope with values, as `KEY=value` (for RUN's environment).
    pub(crate) fn args_env(&self, st: &State) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, v) in &st.stage.args {
            if let Some(v) = v {
                out.retain(|e| e.split('=').next() != Some(k));
                out.push(format!("{k}={v}"));
            }
        }
        for p in meta::PROXY_ARGS {
            if let Some(v) = self.opts.build_args.get(*p) {
                if !out.iter().any(|e| e.split('=').next() == Some(p)) {
                    out.push(format!("{p}={v}"));
                }
            }
        }
        out
    }

    pub(crate) fn run_step(&self, st: &mut State, ins: &Instruction, stage: usize) -> Result<bool> {
        let mut network = self.opts.network;
        let mut specs: Vec<MountSpec> = Vec::new();
        for f in &ins.flags {
            match (f.name.as_str(), f.value.as_deref()) {
                ("mount", v) => {
                    let snapshot = st.stage.clone();
                    let lookup = |n: &str| snapshot.lookup(n, &self.opts.build_args);
                    let v = self
                        .lexer
                        .word(v.unwrap_or(""), &lookup)
                        .map_err(|m| Error::step(ins.line, format!("RUN --mount: {m}")))?;
                    specs.push(
                        mounts::parse(&v)
                            .map_err(|m| Error::step(ins.line, format!("RUN --mount={v}: {m}")))?,
                    );
                }
                ("network", Some("none")) => network = Network::None,
                ("network", Some("host")) => network = Network::Host,
                ("network", Some("default")) => {}
                ("network", v) => {
                    return Err(Error::step(
                        ins.line,
                        format!(
                            "RUN --network={}: use none, host or default",
                            v.unwrap_or("")
                        ),
                    ))
                }
                (name, _) => {
                    return Err(Error::step(
                        ins.line,
                        format!("RUN --{name} is not supported by this builder yet"),
                    ))
                }
            }
        }
        let shell = st.stage.shell();
        let cmd = crate::run::run_command(ins, &shell);
        let args_env = self.args_env(st);
        let expanded = serde_json::to_string(&json!({"argv": cmd.argv, "files": cmd.files}))
            .unwrap_or_default();
        let prepared = self.prepare_mounts(&specs, ins.line, stage)?;
        let key = self.key_of(
            st,
            ins,
            &st.stage.args,
            &expanded,
            &format!("{network:?} {}", prepared.key),
        );
        // Build args appear in RUN's history as docker shows them: `|N K=V ... cmd`; the
        // predefined proxy ARGs only when the Dockerfile declares them (their values may hold
        // credentials).
        let declared: Vec<&String> = args_env
            .iter()
            .filter(|kv| {
                let k = kv.split('=').next().unwrap_or(kv);
                st.stage.args.iter().any(|(n, _)| n == k)
            })
            .collect();
        let shown = if declared.is_empty() {
            cmd.argv.join(" ")
        } else {
            format!(
                "|{} {} {}",
                declared.len(),
                declared
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                cmd.argv.join(" ")
            )
        };
        let by = format!("RUN {shown} # buildkit");
        if self.take_cached(st, &key, &by)? {
            return Ok(true);
        }
        let mut step = self.begin(st)?;
        step.ensure_workdir(st)?;
        let mut binds = Vec::new();
        if !cmd.files.is_empty() {
            let pipes = step.bundle.join("pipes");
            std::fs::create_dir_all(&pipes)?;
            for (path, content) in &cmd.files {
                let name = path.rsplit('/').next().unwrap_or(path);
                let p = pipes.join(name);
                std::fs::write(&p, content)?;
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            }
            binds.push(Bind {
                source: pipes,
                destination: crate::run::PIPES_DIR.into(),
                readonly: true,
            });
        }
        if network == Network::Host {
            for f in ["/etc/resolv.conf", "/etc/hosts"] {
                if Path::new(f).exists() {
                    let copy = step.bundle.join(f.rsplit('/').next().unwrap_or(f));
                    std::fs::copy(f, &copy)?;
                    binds.push(Bind {
                        source: copy,
                        destination: f.into(),
                        readonly: false,
                    });
                }
            }
        }
        // Secrets given as variables win over ENV and ARGs, and exist only here: never in the
        // key, the history or the config.
        let (mounts, secret_env, _locks) = self.mount_entries(&prepared, &step, ins.line)?;
        let mut destinations: Vec<String> = image::bundle::default_spec("/")["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["destination"].as_str().map(str::to_string))
            .collect();
        destinations.extend(binds.iter().map(|b| b.destination.clone()));
        destinations.extend(
            mounts
                .iter()
                .filter_map(|m| m["destination"].as_str().map(str::to_string)),
        );
        let stubs = crate::stubs::find(&step.rootfs(), &destinations);
        let id = format!("build-{}", image::fsutil::random_hex(8));
        let image_config = st.image_config();
        exec::run(
            &self.opts.runtime,
            &exec::Job {
                id: &id,
                bundle: &step.bundle,
                image_config: &image_config,
                argv: cmd.argv.clone(),
                args_env,
                secret_env,
                network,
                binds,
                mounts,
                line: ins.line,
            },
            self.report,
        )?;
        step.unmount()?;
        if let Some(k) = &step.key {
            crate::stubs::remove(&self.store.snapshots.active_fs_path(k), &stubs);
        }
        self.finish(st, step, &key, &by)?;
        Ok(false)
    }

    /// Resolve the step's mounts: bind sources as real paths inside their roots (views of
    /// stages and images mounted for the step), and what they add to the key.
    fn prepare_mounts(
        &self,
        specs: &[MountSpec],
        line: usize,
        stage: usize,
    ) -> Result<Prepared<'_>> {
        let mut p = Prepared {
            key: String::new(),
            mounts: Vec::new(),
            _views: Vec::new(),
        };
        for m in specs {
            let err =
                |msg: String| Error::step(line, format!("RUN --mount target={}: {msg}", m.target));
            // An env-only secret has no target.
            let env_only = m.kind == Kind::Secret && m.target.is_empty();
            if !env_only && !m.target.starts_with('/') {
                return Err(err("the target must be an absolute path".into()));
            }
            let source = match m.kind {
                Kind::Bind => {
                    let rel = m.source.clone().unwrap_or_default();
                    match &m.from {
                        Some(from) => {
                            let state = self.source_state(from, line, stage)?;
                            let (dir, view) = self.view_of(&state)?;
                            p._views.push(view);
                            p.key
                                .push_str(&format!("bind {from} {} {rel}\n", state.key));
                            let real = context::real_path_in_root(&dir, &rel).map_err(err)?;
                            p.mounts.push((m.clone(), Some(real), None));
                        }
                        None => {
                            // What is mounted is what is hashed: the source with its symlinks
                            // followed inside the context, and (with a .dockerignore) only
                            // what it keeps, as a copy.
                            let root = &self.context.root;
                            let real = context::real_path_in_root(root, &rel).map_err(err)?;
                            let root_real = std::fs::canonicalize(root)?;
                            let real_rel = real
                                .strip_prefix(&root_real)
                                .map(|r| r.to_string_lossy().into_owned())
                                .map_err(|_| err(format!("{rel}: outside the context")))?;
                            let sel = self.context.select(&[real_rel]).map_err(err)?;
                            let mut stat =
                                self.stat_cache.lock().unwrap_or_else(|e| e.into_inner());
                            let d = context::digest(&sel, &mut stat).map_err(err)?;
                            p.key.push_str(&format!("bind context {rel} {d}\n"));
                            let filtered = (!self.context.ignore.is_empty()).then_some(sel);
                            p.mounts.push((m.clone(), Some(real), filtered));
                        }
                    }
                    continue;
                }
                Kind::Cache => {
                    p.key
                        .push_str(&format!("cache {}\n", m.id.as_deref().unwrap_or("")));
                    None
                }
                Kind::Tmpfs | Kind::Secret => None,
            };
            p.mounts.push((m.clone(), source, None));
        }
        Ok(p)
    }

    /// The OCI mounts of `p` for `step` (copies for writable binds, the cache directories,
    /// the secret files), and the locks `sharing=locked` holds until the step ends.
    fn mount_entries(
        &self,
        p: &Prepared<'_>,
        step: &Step<'_>,
        line: usize,
    ) -> Result<(Vec<Value>, Vec<String>, Vec<image::fsutil::FileLock>)> {
        let mut out = Vec::new();
        let mut env = Vec::new();
        let mut locks = Vec::new();
        for (n, (m, source, filtered)) in p.mounts.iter().enumerate() {
            let err =
                |msg: String| Error::step(line, format!("RUN --mount target={}: {msg}", m.target));
            let bind = |src: &Path, rw: bool| {
                json!({"destination": m.target, "type": "bind", "source": src,
                       "options": ["rbind", "nosuid", "nodev", if rw { "rw" } else { "ro" }]})
            };
            match m.kind {
                Kind::Bind => {
                    let src = source.as_ref().expect("bind sources are resolved");
                    if m.rw || filtered.is_some() {
                        // A copy: what .dockerignore leaves out is not there, and writes are
                        // dropped with the step.
                        let copy = step.bundle.join(format!("bind-{n}"));
                        copy_tree(src, filtered.as_deref(), &copy, &step.bundle).map_err(err)?;
                        out.push(bind(&copy, m.rw));
                    } else {
                        out.push(bind(src, false));
                    }
                }
                Kind::Cache => {
                    let id = m.id.as_deref().unwrap_or(&m.target);
                    let dir = crate::build::builder_dir(self.store)
                        .join("cache-mounts")
                        .join(format!("{:x}", sha2::Sha256::digest(id.as_bytes())));
                    if !dir.is_dir() {
                        let tmp =
                            dir.with_extension(format!("new-{}", image::fsutil::random_hex(4)));
                        std::fs::create_dir_all(&tmp).map_err(|e| err(e.to_string()))?;
                        std::fs::set_permissions(
                            &tmp,
                            PermissionsExt::from_mode(m.mode.unwrap_or(0o755)),
                        )
                        .map_err(|e| err(e.to_string()))?;
                        std::os::unix::fs::chown(
                            &tmp,
                            Some(m.uid.unwrap_or(0)),
                            Some(m.gid.unwrap_or(0)),
                        )
                        .map_err(|e| err(e.to_string()))?;
                        if std::fs::rename(&tmp, &dir).is_err() {
                            let _ = std::fs::remove_dir(&tmp);
                        }
                    }
                    if m.sharing == Sharing::Locked {
                        locks.push(image::fsutil::FileLock::exclusive(
                            &dir.with_extension("lock"),
                        )?);
                    }
                    out.push(bind(&dir, m.rw));
                }
                Kind::Tmpfs => {
                    let mut o = vec!["nosuid".to_string(), "nodev".to_string()];
                    if let Some(s) = m.size {
                        o.push(format!("size={s}"));
                    }
                    out.push(json!({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": o}));
                }
                Kind::Secret => {
                    let id = m.id.clone().unwrap_or_default();
                    let content = match self.opts.secrets.get(&id) {
                        Some(SecretSource::File(f)) => Some(
                            std::fs::read(f)
                                .map_err(|e| err(format!("secret {id}: {}: {e}", f.display())))?,
                        ),
                        Some(SecretSource::Env(v)) => {
                            std::env::var_os(v).map(|v| v.as_encoded_bytes().to_vec())
                        }
                        None => None,
                    };
                    let Some(content) = content else {
                        if m.required {
                            return Err(err(format!(
                                "secret {id} not found: give it with --secret id={id},src=FILE"
                            )));
                        }
                        continue;
                    };
                    if let Some(name) = &m.env {
                        let value = String::from_utf8(content.clone())
                            .ok()
                            .filter(|v| !v.contains('\0'))
                            .ok_or_else(|| {
                                err(format!("secret {id} is not text: it cannot be ${name}"))
                            })?;
                        env.push(format!("{name}={value}"));
                    }
                    if m.target.is_empty() {
                        continue;
                    }
                    let dir = step.bundle.join("secrets");
                    std::fs::create_dir_all(&dir)?;
                    std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o700))?;
                    let f = dir.join(n.to_string());
                    std::fs::write(&f, &content)?;
                    std::fs::set_permissions(
                        &f,
                        PermissionsExt::from_mode(m.mode.unwrap_or(0o400)),
                    )?;
                    std::os::unix::fs::chown(
                        &f,
                        Some(m.uid.unwrap_or(0)),
                        Some(m.gid.unwrap_or(0)),
                    )?;
                    out.push(bind(&f, false));
                }
            }
        }
        Ok((out, env, locks))
    }
}

/// A step's mounts, resolved.
struct Prepared<'a> {
    /// What they add to the step's key.
    key: String,
    /// Each spec with its bind source's real path.
    /// With the selection a filtered context bind mounts (as a copy).
    mounts: Vec<(MountSpec, Option<PathBuf>, Option<Vec<Selected>>)>,
    /// Views of stages and images the binds come from, mounted until the step ends.
    _views: Vec<View<'a>>,
}

/// Copy `src` (a file, or a directory tree: all of it, or the `only` entries of it) to `dest`,
/// owners and modes kept, through a tar file in `work`.
fn copy_tree(
    src: &Path,
    only: Option<&[Selected]>,
    dest: &Path,
    work: &Path,
) -> std::result::Result<(), String> {
    let md = std::fs::metadata(src).map_err(|e| e.to_string())?;
    if !md.is_dir() {
        std::fs::copy(src, dest).map_err(|e| e.to_string())?;
        return Ok(());
    }
    std::fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    let sel = match only {
        Some(s) => s.to_vec(),
        None => context::Context::new(src.to_path_buf(), crate::ignore::Ignore::default())
            .select(&[String::new()])?,
    };
    let items: Vec<crate::copy::Item> = sel
        .into_iter()
        .map(|s| crate::copy::Item {
            source: crate::copy::Source::Path(s.src),
            dest: s.dest,
        })
        .collect();
    let attrs = crate::copy::Attrs {
        keep_owner: true,
        ..Default::default()
    };
    let tar_path = work.join(format!("copy-{}.tar", image::fsutil::random_hex(4)));
    let r = (|| {
        let f = std::fs::File::create(&tar_path).map_err(|e| e.to_string())?;
        crate::copy::write_tar(&items, &attrs, std::io::BufWriter::new(f))
            .map_err(|e| e.to_string())?;
        let f = std::fs::File::open(&tar_path).map_err(|e| e.to_string())?;
        image::layer::apply(
            dest,
            std::io::BufReader::new(f),
            &image::layer::ApplyOptions::delete(),
        )
        .map_err(|e| e.to_string())
        .map(|_| ())
    })();
    let _ = std::fs::remove_file(&tar_path);
    r
}
