//! Work vectors that outlive one call: each prompt matmul lays its
//! activations out in two vectors of several MiB (quantized blocks, then
//! token pairs for the register tiles), 7 matmuls per layer. Allocated
//! afresh, each call's vectors come from new pages (large allocations are
//! mapped and unmapped by the allocator), and a Llama-1B-shaped 512-token
//! prompt took ~53,000 page faults per forward pass, each page zeroed by
//! the kernel before being overwritten. The pool hands a call the vector an
//! earlier call gave back, capacity and all.
//!
//! The pool belongs to one [`crate::CpuBackend`] (and its clones), so its
//! memory goes with the backend. It keeps at most [`KEEP`] vectors, which
//! bounds what it holds to the few largest layouts a model's matmuls use;
//! those are allocated during every prompt pass anyway, so the pool does
//! not raise the peak.

use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Vectors kept for reuse at most.
const KEEP: usize = 8;

/// Vectors given back by earlier calls, of any element type.
#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<Vec<Box<dyn Any + Send>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.free.lock().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("Pool").field("free", &n).finish()
    }
}

impl Pool {
    /// A vector of `len` copies of `value`, reusing a vector of the same
    /// element type given back earlier when there is one; it goes back to
    /// the pool when dropped.
    pub(crate) fn take<T: Clone + Send + 'static>(&self, len: usize, value: T) -> Reused<'_, T> {
        let found = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.iter()
                .position(|b| b.is::<Vec<T>>())
                .map(|i| free.swap_remove(i))
        };
        let mut v = found
            .and_then(|b| b.downcast::<Vec<T>>().ok())
            .map(|b| *b)
            .unwrap_or_default();
        v.clear();
        v.resize(len, value);
        Reused { v, pool: self }
    }
}

/// A vector from [`Pool::take`].
pub(crate) struct Reused<'a, T: Send + 'static> {
    v: Vec<T>,
    pool: &'a Pool,
}

impl<T: Send + 'static> Deref for Reused<'_, T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.v
    }
}

impl<T: Send + 'static> DerefMut for Reused<'_, T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.v
    }
}

impl<T: Send + 'static> Drop for Reused<'_, T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        if v.capacity() == 0 {
            return;
        }
        let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < KEEP {
            free.push(Box::new(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_vector_is_reused_and_refilled() {
        let pool = Pool::default();
        let ptr = {
            let mut a = pool.take(1000, 7u32);
            a[3] = 9;
            a.as_ptr()
        };
        // Another element type does not take it.
        let b = pool.take(10, 1.5f32);
        assert!(b.iter().all(|&x| x == 1.5));
        let a = pool.take(500, 2u32);
        assert_eq!(a.as_ptr(), ptr, "the first vector's allocation again");
        assert_eq!(a.len(), 500);
        assert!(a.iter().all(|&x| x == 2), "every element set anew");
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_vectors() {
        let pool = Pool::default();
        let held: Vec<_> = (0..KEEP + 5).map(|i| pool.take(i + 1, 0u8)).collect();
        drop(held);
        assert_eq!(pool.free.lock().unwrap().len(), KEEP);
    }
}
