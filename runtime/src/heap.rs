//! berth's global allocator: power-of-two size classes carved from one static arena, each with
//! a free list; larger or over-aligned blocks, and everything once the arena is used up, come
//! from the system allocator.
//!
//! Why not musl's allocator alone: it hands memory back to the kernel as soon as a group of
//! blocks is free, so a `berth --version` made 29 mmap and 25 munmap calls, each munmap a TLB
//! flush; perf put them at about a fifth of a berth process's CPU time. berth's processes are
//! short-lived, or (`events`, a foreground `run`) allocate the same few sizes over and over, so
//! keeping freed blocks for reuse costs little memory and never asks the kernel. The arena is
//! zero-initialised static memory (.bss): pages nobody touched are never backed by RAM.
//!
//! A spin lock guards the lists. berth clones its init and exec children from a single thread,
//! so a child never inherits the lock held (the same assumption musl's allocator makes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};

/// The smallest class: 16 bytes (2^4), enough for the free-list link and malloc's alignment.
const MIN_SHIFT: usize = 4;
/// The largest class: 32 KiB (2^15); bigger blocks go to the system allocator.
const MAX_SHIFT: usize = 15;
const CLASSES: usize = MAX_SHIFT - MIN_SHIFT + 1;
/// Blocks are aligned to their size, up to a page.
const PAGE: usize = 4096;
const ARENA_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena([u8; ARENA_SIZE]);

struct Lists {
    /// Offset of the first arena byte not yet carved into a block.
    next: usize,
    /// Head of each class's free list; a free block's first word points to the next one.
    free: [*mut u8; CLASSES],
}

pub struct Heap {
    lock: AtomicBool,
    lists: UnsafeCell<Lists>,
    arena: UnsafeCell<Arena>,
}

// SAFETY: `lists` is only touched with `lock` held; arena bytes belong to whoever was handed
// the block that holds them.
unsafe impl Sync for Heap {}

impl Heap {
    pub const fn new() -> Self {
        Heap {
            lock: AtomicBool::new(false),
            lists: UnsafeCell::new(Lists {
                next: 0,
                free: [null_mut(); CLASSES],
            }),
            arena: UnsafeCell::new(Arena([0; ARENA_SIZE])),
        }
    }

    fn base(&self) -> *mut u8 {
        self.arena.get().cast()
    }

    fn owns(&self, p: *mut u8) -> bool {
        let (p, base) = (p as usize, self.base() as usize);
        p >= base && p < base + ARENA_SIZE
    }

    /// Run `f` on the lists with the lock held.
    fn with_lists<T>(&self, f: impl FnOnce(&mut Lists, *mut u8) -> T) -> T {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held, so nobody else has a reference to the lists.
        let r = f(unsafe { &mut *self.lists.get() }, self.base());
        self.lock.store(false, Ordering::Release);
        r
    }
}

/// The class of a layout, or None if it is served by the system allocator.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > PAGE {
        return None;
    }
    let size = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
    let shift = size.next_power_of_two().trailing_zeros() as usize;
    (shift <= MAX_SHIFT).then(|| shift - MIN_SHIFT)
}

fn block_size(class: usize) -> usize {
    1 << (class + MIN_SHIFT)
}

// SAFETY: blocks handed out are at least `layout.size()` bytes, aligned to `layout.align()`
// (class blocks are aligned to min(size, PAGE) and only layouts with align <= PAGE get one),
// never handed out twice before they are freed, and freed blocks return to the allocator they
// came from (arena membership is decided by address).
unsafe impl GlobalAlloc for Heap {
    #[inline(never)] // one copy, not one per allocation site (LTO inlines __rust_alloc)
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: forwarded as is.
            return unsafe { System.alloc(layout) };
        };
        let p = self.with_lists(|l, base| {
            let head = l.free[class];
            if !head.is_null() {
                // SAFETY: a free block's first word holds the next free block (or null).
                l.free[class] = unsafe { head.cast::<*mut u8>().read() };
                return head;
            }
            let size = block_size(class);
            let start = l.next.next_multiple_of(size.min(PAGE));
            if start + size > ARENA_SIZE {
                return null_mut();
            }
            l.next = start + size;
            // SAFETY: start + size <= ARENA_SIZE, so the block is inside the arena.
            unsafe { base.add(start) }
        });
        if p.is_null() {
            // SAFETY: the arena is used up; the system allocator takes over.
            unsafe { System.alloc(layout) }
        } else {
            p
        }
    }

    #[inline(never)] // one copy, not one per allocation site (LTO inlines __rust_alloc)
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if !self.owns(p) {
            // SAFETY: not an arena block, so the system allocator handed it out.
            return unsafe { System.dealloc(p, layout) };
        }
        let class = class_of(layout).expect("arena blocks have a class");
        self.with_lists(|l, base| {
            let off = p as usize - base as usize;
            if off + block_size(class) == l.next {
                l.next = off; // the newest block: its space goes back to the arena
                return;
            }
            // SAFETY: the block is free now and at least 16 bytes, 16-aligned.
            unsafe { p.cast::<*mut u8>().write(l.free[class]) };
            l.free[class] = p;
        });
    }

    #[inline(never)] // one copy, not one per allocation site (LTO inlines __rust_alloc)
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(p) {
            // SAFETY: forwarded as is; dealloc sends it back to the system allocator by address.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // SAFETY: the caller guarantees new_size is valid for layout's alignment.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old_class, new_class) = (class_of(layout), class_of(new));
        if new_class == old_class {
            return p; // the block is already that class's size
        }
        if let (Some(oc), Some(nc)) = (old_class, new_class) {
            // The newest block grows or shrinks where it is (a Vec filling up, a file read).
            let resized = self.with_lists(|l, base| {
                let off = p as usize - base as usize;
                let fits = off.is_multiple_of(block_size(nc).min(PAGE))
                    && off + block_size(nc) <= ARENA_SIZE;
                let newest = off + block_size(oc) == l.next;
                if newest && fits {
                    l.next = off + block_size(nc);
                }
                newest && fits
            });
            if resized {
                return p;
            }
        }
        // SAFETY: as for alloc and dealloc; the old block stays valid until it is freed.
        unsafe {
            let q = self.alloc(new);
            if !q.is_null() {
                std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class_of(l(1, 1)), Some(0));
        assert_eq!(class_of(l(16, 8)), Some(0));
        assert_eq!(class_of(l(17, 8)), Some(1));
        assert_eq!(class_of(l(8, 64)), Some(2));
        assert_eq!(class_of(l(32 << 10, 8)), Some(CLASSES - 1));
        assert_eq!(class_of(l((32 << 10) + 1, 8)), None);
        assert_eq!(class_of(l(16, 8192)), None);
    }

    #[test]
    fn reuse_alignment_realloc_and_overflow() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        unsafe {
            // A heap of its own, made in place: 4 MiB do not fit a test thread's stack, and
            // all-zero bytes are a valid empty Heap (unlocked, nothing carved, empty lists).
            let h = &*std::alloc::alloc_zeroed(Layout::new::<Heap>()).cast::<Heap>();
            let a = h.alloc(l(24, 8));
            assert!(h.owns(a));
            a.write_bytes(0xaa, 24);
            h.dealloc(a, l(24, 8));
            assert_eq!(h.alloc(l(30, 8)), a, "a freed block is reused by its class");

            let b = h.alloc(l(100, 64));
            assert!((b as usize).is_multiple_of(64));
            let c = h.alloc(l(4096, 4096));
            assert!((c as usize).is_multiple_of(4096));

            // Growing within a class keeps the block; past it, the bytes move (unless the block
            // is the newest, below).
            let d = h.alloc(l(40, 8));
            let blocker = h.alloc(l(16, 8));
            d.copy_from(b"0123456789".as_ptr(), 10);
            assert_eq!(h.realloc(d, l(40, 8), 60), d);
            let e = h.realloc(d, l(60, 8), 5000);
            assert_ne!(e, d);
            assert_eq!(std::slice::from_raw_parts(e, 10), b"0123456789");
            assert_eq!(
                std::slice::from_raw_parts(blocker, 16),
                [0; 16],
                "untouched"
            );

            // The newest block grows and shrinks in place, and its space returns when freed.
            let top = h.alloc(l(100, 8));
            let grown = h.realloc(top, l(100, 8), 3000);
            assert_eq!(grown, top);
            let after = h.alloc(l(16, 8));
            assert_eq!(
                after as usize,
                top as usize + 4096,
                "3000 bytes take a 4 KiB block"
            );
            h.dealloc(after, l(16, 8));
            h.dealloc(grown, l(3000, 8));
            assert_eq!(
                h.alloc(l(16, 8)),
                top,
                "freeing the newest blocks rewinds the arena"
            );

            // Too big, over-aligned, or past the arena's end: the system allocator's.
            let big = h.alloc(l(1 << 20, 8));
            assert!(!big.is_null() && !h.owns(big));
            h.dealloc(big, l(1 << 20, 8));
            let over = h.alloc(l(64, 8192));
            assert!(!over.is_null() && !h.owns(over) && (over as usize).is_multiple_of(8192));
            h.dealloc(over, l(64, 8192));
            let mut last = null_mut();
            for _ in 0..ARENA_SIZE / (32 << 10) + 1 {
                last = h.alloc(l(32 << 10, 8));
                assert!(!last.is_null());
            }
            assert!(!h.owns(last), "the arena ran out, the system took over");
            h.dealloc(last, l(32 << 10, 8));
            std::alloc::dealloc((h as *const Heap).cast_mut().cast(), Layout::new::<Heap>());
        }
    }
}
