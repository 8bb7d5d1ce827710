//! What the convolution kernels share: per-thread scratch buffers reused from call to call (a
//! fresh multi-megabyte allocation per image costs page faults and zeroing that show up in a
//! training step's profile), and a pointer that threads writing disjoint parts of one output
//! share.

use std::cell::Cell;
use std::thread::LocalKey;

thread_local! {
    /// The im2col path's column matrix (conv.rs).
    pub(super) static IM2COL: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// The padded input of the image a thread works on (direct.rs).
    pub(super) static PADDED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// A chunk's flat output (forward), or an image's padded input and transposed output
    /// gradient (weight gradient) (direct.rs).
    pub(super) static OUTPUT: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// A plane padded for a depthwise 3x3 convolution and its flat output or output
    /// gradient (depthwise.rs).
    pub(super) static DEPTHWISE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// The largest per-thread buffer kept between calls (256 MiB): a bigger one (a whole large
/// image restored at once) goes back rather than staying with the thread.
const KEEP_VALUES: usize = 1 << 26;

/// Runs `f` with this thread's reusable buffer `which`, exactly `len` values long (contents
/// stale: every user overwrites what it reads). Reentrant: a nested call for the same buffer
/// gets a fresh one.
pub(super) fn with_buffer<R>(
    which: &'static LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut v = which.with(|c| c.take());
    if v.len() < len {
        v.resize(len, 0.0);
    }
    let r = f(&mut v[..len]);
    if v.len() <= KEEP_VALUES {
        which.with(|c| c.set(v));
    }
    r
}

/// An output buffer shared by threads that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub(super) *mut f32);
// SAFETY: only used where each thread writes a region no other thread touches (see the users).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Through a method, so closures capture the whole (Sync) wrapper, not its raw field.
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}
