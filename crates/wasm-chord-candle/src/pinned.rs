//! Read-backs through page-locked host memory.
//!
//! candle copies a tensor to the host into a fresh `Vec`, which the driver
//! must stage through its own page-locked buffer: for the logits read back
//! after every token (1 MiB for a 262k vocabulary) that is a second copy
//! and a slower transfer. llama.cpp keeps its output buffer in pinned
//! memory for the same reason. The buffer here is allocated once, grown
//! when a larger read comes, and reused; its memory is ordinary cached host
//! memory (not write-combined, which is slow for the host to read).

use candle_core::cuda_backend::cudarc::driver::PinnedHostSlice;
use candle_core::{Storage, Tensor};
use std::sync::Mutex;

/// On unless `WASMCHORD_CUDA_PINNED=0` (candle's own copy, for measuring
/// the difference).
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WASMCHORD_CUDA_PINNED").map_or(true, |v| v != "0"))
}

#[derive(Debug, Default)]
pub(crate) struct Pinned(Mutex<Option<PinnedHostSlice<f32>>>);

impl Pinned {
    /// Copies `t` (a contiguous f32 CUDA tensor of `out.len()` values)
    /// into `out`.
    pub(crate) fn download(&self, t: &Tensor, out: &mut [f32]) -> candle_core::Result<()> {
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cuda(cs) = &*storage else {
            candle_core::bail!("download: not a CUDA tensor");
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("download: not a contiguous tensor");
        };
        if b - a != out.len() {
            candle_core::bail!("download: {} values into {}", b - a, out.len());
        }
        if out.is_empty() {
            return Ok(());
        }
        let src = cs.as_cuda_slice::<f32>()?.slice(a..b);
        let stream = cs.device.cuda_stream();
        let mut guard = self
            .0
            .lock()
            .map_err(|_| candle_core::Error::Msg("pinned buffer poisoned".into()))?;
        if guard.as_ref().is_none_or(|p| p.len() < out.len()) {
            // SAFETY: the memory is written by the copy below before it is
            // read; flags 0 asks for cached (not write-combined) memory.
            let p = unsafe {
                stream
                    .context()
                    .alloc_pinned_with_flags::<f32>(out.len(), 0)
            };
            *guard = Some(p.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?);
        }
        let Some(pinned) = guard.as_mut() else {
            candle_core::bail!("download: no pinned buffer");
        };
        let cuda = |e| candle_core::Error::Cuda(Box::new(e));
        // A plain slice of the pinned memory, exactly as long as the copy
        // (cudarc copies the destination's length). The driver sees pinned
        // pages by address.
        let host = &mut pinned.as_mut_slice().map_err(cuda)?[..out.len()];
        stream.memcpy_dtoh(&src, host).map_err(cuda)?;
        // The backend turned off cudarc's event tracking (one stream), so
        // nothing above waits for the copy: wait here.
        stream.synchronize().map_err(cuda)?;
        out.copy_from_slice(host);
        Ok(())
    }
}
