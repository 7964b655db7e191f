//! Progress of fetching and unpacking: a bar per layer on a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use image::{Digest, Event};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Reporter {
    tty: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    /// Plain mode: blobs whose "fetching" line was printed.
    started: Mutex<HashMap<Digest, u64>>,
}

impl Reporter {
    pub fn new() -> Reporter {
        let tty = std::io::stderr().is_terminal();
        Reporter {
            tty,
            multi: MultiProgress::with_draw_target(if tty {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            }),
            bars: Mutex::new(HashMap::new()),
            started: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, d: &Digest, total: u64) -> ProgressBar {
        let mut bars = self.bars.lock().expect("lock");
        bars.entry(d.clone())
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(total));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix} {msg:<12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
                    )
                    .expect("template")
                    .progress_chars("=> "),
                );
                b.set_prefix(d.short().to_string());
                b
            })
            .clone()
    }

    /// A blob moving: its bar on a terminal, else one line when it starts.
    fn transfer(&self, d: &Digest, done: u64, total: u64, bar_msg: &'static str, line: &str) {
        if self.tty {
            let b = self.bar(d, total);
            b.set_length(total);
            b.set_position(done);
            b.set_message(bar_msg);
        } else {
            let mut s = self.started.lock().expect("lock");
            if !s.contains_key(d) {
                s.insert(d.clone(), total);
                eprintln!("{}: {line} {}", d.short(), mb(total));
            }
        }
    }

    fn finish_bar(&self, d: &Digest, msg: &'static str) {
        let b = self.bar(d, 0);
        b.set_style(ProgressStyle::with_template("{prefix} {msg}").expect("template"));
        b.finish_with_message(msg);
    }
}

fn mb(n: u64) -> String {
    crate::util::human_size(n)
}

impl image::Progress for Reporter {
    fn event(&self, e: Event<'_>) {
        match e {
            Event::Fetching {
                digest,
                done,
                total,
            } => self.transfer(digest, done, total, "downloading", "fetching"),
            Event::Fetched { digest, cached } => {
                let msg = if cached { "already exists" } else { "fetched" };
                if self.tty {
                    if cached || self.bars.lock().expect("lock").contains_key(digest) {
                        self.finish_bar(digest, msg);
                    }
                } else {
                    eprintln!("{}: {msg}", digest.short());
                }
            }
            Event::Unpacking { digest, .. } => {
                if self.tty {
                    let b = self.bar(digest, 0);
                    b.set_style(
                        ProgressStyle::with_template("{prefix} {msg} {spinner}").expect("template"),
                    );
                    b.set_message("unpacking");
                    b.enable_steady_tick(std::time::Duration::from_millis(120));
                } else {
                    eprintln!("{}: unpacking", digest.short());
                }
            }
            Event::Pushing {
                digest,
                done,
                total,
            } => self.transfer(digest, done, total, "pushing", "pushing"),
            Event::Pushed { digest, how } => {
                if self.tty {
                    let b = self.bar(digest, 0);
                    b.set_style(ProgressStyle::with_template("{prefix} {msg}").expect("template"));
                    b.finish_with_message(how.to_string());
                } else {
                    eprintln!("{}: {how}", digest.short());
                }
            }
            Event::Unpacked { digest, cached } => {
                let msg = if cached {
                    "already unpacked"
                } else {
                    "unpacked"
                };
                if self.tty {
                    self.finish_bar(digest, msg);
                } else {
                    eprintln!("{}: {msg}", digest.short());
                }
            }
        }
    }
}
