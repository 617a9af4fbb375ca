//! The contents of anonymous folios, reached through the linear map: the
//! zeroing of a new folio, copy-on-write's page copy, and the kernel's
//! byte copies into and out of user pages (program loading, tests).
//!
//! Why these are safe: they are `pub(crate)`, and their callers in this
//! crate hand them only pages of user page tables, which map nothing but
//! the folios that faults allocated for user data (`aspace/fault.rs`;
//! the shared zero page is never passed: every caller compares with it
//! first). No kernel object lives in such a folio and any byte pattern is
//! a valid content, so writing it cannot break the kernel's memory
//! safety. As a second line of defence each accessor checks that the
//! folio is marked anonymous (only faults mark a folio anon in this
//! crate, and freeing clears the mark) and that the bytes stay inside the
//! page named.

use crate::addr::{PAGE_SIZE, Pfn};
use crate::phys::LinearMap;

use super::FolioRef;

impl FolioRef<'_> {
    /// Checks the invariant the accessors rely on: an anonymous folio,
    /// and `len` bytes at `off` inside its page `pfn`.
    fn check_data(&self, pfn: Pfn, off: usize, len: usize) {
        assert!(self.test_anon(), "folio {:?} is not anonymous", self.pfn());
        assert!(
            self.contains(pfn),
            "{pfn:?} is not in folio {:?}",
            self.pfn()
        );
        assert!(
            off.checked_add(len)
                .is_some_and(|e| e <= PAGE_SIZE as usize),
            "{len} bytes at {off} leave the page"
        );
    }

    /// Zeroes every page of this anonymous folio.
    pub(crate) fn zero(&self, lin: LinearMap) {
        self.check_data(self.pfn(), 0, 0);
        let bytes = (self.nr_pages() * PAGE_SIZE) as usize;
        // SAFETY: an anonymous folio holds user data only (module doc),
        // all of its pages RAM in the linear map.
        unsafe { core::ptr::write_bytes(lin.ptr::<u8>(self.pfn().phys()), 0, bytes) };
    }

    /// Copies `bytes` into page `pfn` of this anonymous folio at `off`.
    /// The folio may be mapped already: it is no longer known to be
    /// visible to instruction fetches (Linux `flush_dcache_folio`), so an
    /// executable mapping syncs it again.
    pub(crate) fn write_page(&self, lin: LinearMap, pfn: Pfn, off: usize, bytes: &[u8]) {
        self.check_data(pfn, off, bytes.len());
        self.clear_dcache_clean();
        // SAFETY: inside one page of an anonymous folio (checked), RAM in
        // the linear map holding user data only; `bytes` is kernel memory,
        // so the two do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                lin.ptr::<u8>(pfn.phys()).add(off),
                bytes.len(),
            )
        };
    }

    /// Copies `buf.len()` bytes out of page `pfn` of this anonymous folio
    /// from `off`.
    pub(crate) fn read_page(&self, lin: LinearMap, pfn: Pfn, off: usize, buf: &mut [u8]) {
        self.check_data(pfn, off, buf.len());
        // SAFETY: as in write_page; every byte pattern is a valid u8.
        unsafe {
            core::ptr::copy_nonoverlapping(
                lin.ptr::<u8>(pfn.phys()).add(off),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
    }

    /// Copies page `src_pfn` of anonymous folio `src` into page `pfn` of
    /// this one (copy-on-write). The pages must differ.
    pub(crate) fn copy_page_from(
        &self,
        lin: LinearMap,
        pfn: Pfn,
        src: &FolioRef<'_>,
        src_pfn: Pfn,
    ) {
        self.check_data(pfn, 0, PAGE_SIZE as usize);
        src.check_data(src_pfn, 0, PAGE_SIZE as usize);
        assert_ne!(pfn, src_pfn, "copying a page onto itself");
        // SAFETY: two distinct whole pages of anonymous folios (checked),
        // RAM in the linear map holding user data only.
        unsafe {
            core::ptr::copy_nonoverlapping(
                lin.ptr::<u8>(src_pfn.phys()),
                lin.ptr::<u8>(pfn.phys()),
                PAGE_SIZE as usize,
            )
        };
    }
}
