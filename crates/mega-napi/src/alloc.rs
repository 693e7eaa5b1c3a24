//! The addon's global allocator: blocks of 64 KiB and more (zlib windows and hash tables, large
//! message buffers) are mapped and unmapped directly, everything smaller goes to the system
//! allocator. zlib-rs asks for 64-byte-aligned blocks, which glibc serves through `memalign`, and
//! glibc before 2.38 does not reuse freed memalign chunks well: 1,000 short compressed WebSocket
//! connections that each freed their ~300 KB of zlib state still grew the RSS by ~200 MB. Mapped
//! blocks go back to the OS on free; growth of a large buffer is an `mremap` (no copy).
use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are mapped (well above the small-object sizes malloc serves best).
const BIG: usize = 64 * 1024;
const PAGE: usize = 4096;

pub struct MegaAlloc;

#[inline]
fn mapped(layout_size: usize, align: usize) -> bool {
    cfg!(target_os = "linux") && layout_size >= BIG && align <= PAGE
}

#[cfg(target_os = "linux")]
unsafe fn map(size: usize) -> *mut u8 {
    let p = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(not(target_os = "linux"))]
unsafe fn map(_size: usize) -> *mut u8 {
    unreachable!("mapped blocks are linux-only")
}

#[cfg(target_os = "linux")]
unsafe fn unmap(ptr: *mut u8, size: usize) {
    libc::munmap(ptr.cast(), size);
}

#[cfg(not(target_os = "linux"))]
unsafe fn unmap(_ptr: *mut u8, _size: usize) {}

#[cfg(target_os = "linux")]
unsafe fn remap(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
    let p = libc::mremap(ptr.cast(), old, new, libc::MREMAP_MAYMOVE);
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(not(target_os = "linux"))]
unsafe fn remap(_ptr: *mut u8, _old: usize, _new: usize) -> *mut u8 {
    std::ptr::null_mut()
}

// SAFETY: every block is released by the path that allocated it: the decision depends only on the
// layout, and `dealloc`/`realloc` receive the layout (size) the block was allocated or last
// reallocated with. Mapped memory is page-aligned (>= any align accepted here) and zeroed.
unsafe impl GlobalAlloc for MegaAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(layout.size(), layout.align()) {
            unmap(ptr, layout.size());
        } else {
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was, will) = (
            mapped(layout.size(), layout.align()),
            mapped(new_size, layout.align()),
        );
        match (was, will) {
            (false, false) => System.realloc(ptr, layout, new_size),
            (true, true) => remap(ptr, layout.size(), new_size),
            _ => {
                // Crossing the threshold: allocate on the other side, copy, free the old block.
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let out = self.alloc(new_layout);
                if !out.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, out, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cross_the_threshold_both_ways_intact() {
        let a = MegaAlloc;
        unsafe {
            let l = Layout::from_size_align(1000, 64).unwrap();
            let p = a.alloc(l);
            for i in 0..1000 {
                *p.add(i) = i as u8;
            }
            let p = a.realloc(p, l, 200_000);
            let l = Layout::from_size_align(200_000, 64).unwrap();
            let p = a.realloc(p, l, 400_000);
            let l = Layout::from_size_align(400_000, 64).unwrap();
            for i in 0..1000 {
                assert_eq!(*p.add(i), i as u8);
            }
            let p = a.realloc(p, l, 500);
            for i in 0..500 {
                assert_eq!(*p.add(i), i as u8);
            }
            a.dealloc(p, Layout::from_size_align(500, 64).unwrap());
            let z = Layout::from_size_align(1 << 20, 64).unwrap();
            let q = a.alloc_zeroed(z);
            assert!(std::slice::from_raw_parts(q, 1 << 20)
                .iter()
                .all(|&b| b == 0));
            a.dealloc(q, z);
        }
    }
}
