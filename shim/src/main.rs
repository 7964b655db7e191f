//! containerd-shim-berth-v2: containerd's shim v2 for berth (or any runtime with runc's command
//! line). `start` and `delete` are containerd's bootstrap commands; without an action the binary
//! is the long-lived server (a single-threaded epoll loop serving the Task API over ttrpc).

mod args;
mod bootstrap;
mod buildinfo;
mod cgroup;
mod checkpoint;
mod io;
mod logger;
mod mounts;
mod options;
mod publisher;
mod runtime;
mod server;
mod service;
mod stats;
mod sys;
mod util;
mod wire;

fn main() {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            eprintln!("usage: containerd-shim-berth-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-bundle DIR] [-debug] [start|delete]");
            std::process::exit(2);
        }
    };
    if args.version {
        println!("containerd-shim-berth-v2:\n  Version: {}\n  Runtime: runc command line (berth by default)", env!("CARGO_PKG_VERSION"));
        return;
    }
    let result = match args.action.as_deref() {
        Some("start") => bootstrap::start(&args),
        Some("delete") => bootstrap::delete(&args),
        None => server::serve(args),
        Some(other) => Err(anyhow::anyhow!(
            "unknown action {other:?} (start or delete)"
        )),
    };
    if let Err(e) = result {
        eprintln!("containerd-shim-berth-v2: {e:#}");
        std::process::exit(1);
    }
}
