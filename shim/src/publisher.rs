//! Events to containerd: `containerd.services.events.ttrpc.v1.Events/Forward` over ttrpc to
//! TTRPC_ADDRESS, one at a time and in order, from the event loop (never blocking it). A lost
//! connection (containerd restarting) is retried with backoff; an event is dropped only after
//! repeated failures.

use crate::wire::{self, Wire};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};
use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const TOKEN: u64 = 2;
const MAX_ATTEMPTS: u32 = 12;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

struct Pending {
    topic: String,
    request: Vec<u8>,
    attempts: u32,
}

pub struct Publisher {
    addr: Option<PathBuf>,
    namespace: String,
    queue: VecDeque<Pending>,
    wire: Option<Wire>,
    inflight: Option<u32>,
    /// When the in-flight request was sent (a Forward unanswered for 10 s is retried).
    sent_at: Option<Instant>,
    next_id: u32,
    retry_at: Option<Instant>,
    registered_out: bool,
}

/// The envelope's Any for an event message, named as containerd's typeurl registry names it.
pub fn event_any<M: Message>(type_name: &str, msg: &M) -> Any {
    let mut a = Any::new();
    a.type_url = format!("containerd.events.{type_name}");
    a.value = msg.write_to_bytes().unwrap_or_default();
    a
}

impl Publisher {
    pub fn new(namespace: &str) -> Publisher {
        let addr = std::env::var("TTRPC_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .map(|a| PathBuf::from(a.strip_prefix("unix://").unwrap_or(&a)));
        Publisher {
            addr,
            namespace: namespace.to_string(),
            queue: VecDeque::new(),
            wire: None,
            inflight: None,
            sent_at: None,
            next_id: 1,
            retry_at: None,
            registered_out: false,
        }
    }

    pub fn publish(&mut self, ep: &Epoll, topic: &str, event: Any) {
        crate::debug!("event {topic} {}", event.type_url);
        if self.addr.is_none() {
            return;
        }
        let mut env = Envelope::new();
        env.timestamp = MessageField::some(crate::util::now());
        env.namespace = self.namespace.clone();
        env.topic = topic.to_string();
        env.event = MessageField::some(event);
        let mut fwd = ForwardRequest::new();
        fwd.envelope = MessageField::some(env);
        let request = wire::request_payload(
            "containerd.services.events.ttrpc.v1.Events",
            "Forward",
            fwd.write_to_bytes().unwrap_or_default(),
            &[("containerd-namespace-ttrpc", &self.namespace)],
        );
        self.queue.push_back(Pending {
            topic: topic.to_string(),
            request,
            attempts: 0,
        });
        self.kick(ep);
    }

    pub fn idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// How long the loop may sleep before a retry is due.
    pub fn timeout(&self) -> Option<Duration> {
        let due = match (self.retry_at, self.sent_at) {
            (Some(r), _) => Some(r),
            (None, Some(s)) => Some(s + FORWARD_TIMEOUT),
            (None, None) => None,
        };
        due.map(|t| t.saturating_duration_since(Instant::now()))
    }

    pub fn on_tick(&mut self, ep: &Epoll) {
        if self.inflight.is_some() && self.sent_at.is_some_and(|s| s.elapsed() >= FORWARD_TIMEOUT) {
            self.fail(ep, "containerd did not answer within 10 s");
        }
        if self.retry_at.is_some_and(|t| t <= Instant::now()) {
            self.retry_at = None;
            self.kick(ep);
        }
    }

    fn fail(&mut self, ep: &Epoll, why: &str) {
        if let Some(w) = self.wire.take() {
            let _ = ep.delete(&w.sock);
        }
        self.inflight = None;
        self.sent_at = None;
        self.registered_out = false;
        if let Some(head) = self.queue.front_mut() {
            head.attempts += 1;
            if head.attempts >= MAX_ATTEMPTS {
                crate::error!(
                    "dropping event {} after {} attempts: {why}",
                    head.topic,
                    head.attempts
                );
                self.queue.pop_front();
                self.retry_at = Some(Instant::now());
                return;
            }
            let backoff =
                Duration::from_millis(50u64 << head.attempts.min(6)).min(Duration::from_secs(2));
            crate::debug!("publishing {}: {why}; retrying in {backoff:?}", head.topic);
            self.retry_at = Some(Instant::now() + backoff);
        }
    }

    /// Send the head of the queue if nothing is in flight.
    pub fn kick(&mut self, ep: &Epoll) {
        if self.inflight.is_some() || self.retry_at.is_some() || self.queue.is_empty() {
            return;
        }
        let Some(addr) = self.addr.clone() else {
            return;
        };
        if self.wire.is_none() {
            match UnixStream::connect(&addr).and_then(Wire::new) {
                Ok(w) => {
                    if let Err(e) = ep.add(&w.sock, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN)) {
                        return self.fail(ep, &e.to_string());
                    }
                    self.wire = Some(w);
                }
                Err(e) => return self.fail(ep, &format!("connecting to {}: {e}", addr.display())),
            }
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(2);
        let w = self.wire.as_mut().expect("connected");
        w.queue(id, wire::REQUEST, &self.queue[0].request);
        self.inflight = Some(id);
        self.sent_at = Some(Instant::now());
        self.flush(ep);
    }

    fn flush(&mut self, ep: &Epoll) {
        let Some(w) = self.wire.as_mut() else { return };
        match w.flush() {
            Ok(done) => {
                if done == self.registered_out {
                    let flags = if done {
                        EpollFlags::EPOLLIN
                    } else {
                        EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
                    };
                    let mut ev = EpollEvent::new(flags, TOKEN);
                    let _ = ep.modify(&w.sock, &mut ev);
                    self.registered_out = !done;
                }
            }
            Err(e) => self.fail(ep, &e.to_string()),
        }
    }

    pub fn on_event(&mut self, ep: &Epoll, flags: EpollFlags) {
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.flush(ep);
        }
        if !flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            return;
        }
        let Some(w) = self.wire.as_mut() else { return };
        let open = match w.fill() {
            Ok(open) => open,
            Err(e) => return self.fail(ep, &e.to_string()),
        };
        loop {
            let Some(w) = self.wire.as_mut() else { return };
            match w.next_frame() {
                Ok(Some(f)) if f.kind == wire::RESPONSE && Some(f.stream_id) == self.inflight => {
                    self.inflight = None;
                    self.sent_at = None;
                    let head = self.queue.pop_front();
                    if let (Ok(resp), Some(h)) =
                        (ttrpc::Response::parse_from_bytes(&f.payload), head)
                    {
                        if resp.status.is_some() && resp.status.code.value() != 0 {
                            crate::error!(
                                "containerd refused event {}: {}",
                                h.topic,
                                resp.status.message
                            );
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return self.fail(ep, &e),
            }
        }
        if !open {
            if self.inflight.is_some() {
                self.fail(ep, "containerd closed the connection");
            } else if let Some(w) = self.wire.take() {
                let _ = ep.delete(&w.sock);
                self.registered_out = false;
            }
        }
        self.kick(ep);
    }
}
