//! Where Folium's own control files live. Linux's knobs keep Linux's paths
//! (`/sys/kernel/mm/transparent_hugepage/...`); the ones only Folium has
//! sit in a directory of their own, which Linux does not have, so Linux's
//! directories hold Linux's files only and a program can tell the two
//! kernels apart by whether a file in it opens (the directory itself is
//! not served: Folium has files, not a filesystem).

/// The path of Folium's memory-management directory, `folium_mm_path!()`,
/// or of a file in it, `folium_mm_path!("stats")`, as a string literal
/// (so `concat!` can build C-string constants from it). The one place the
/// directory is named; [`FOLIUM_MM_DIR`] is the same path as a constant.
///
/// Its files: `pte_batching` (1 batches fork and zap over runs of PTEs
/// mapping one large folio, 0 goes PTE by PTE; read and write), `stats`
/// (batching, TLB-flush and contpte counters; read-only); the calling
/// process's user page tables as of the open (read-only): `ptdump`, in
/// the layout of Linux's arm64 page-table dump, and `mmview`, one record
/// per run of pages of one folio (folio order, mapcount, sharing), which
/// `cargo xtask mmview` draws; `audit` (read-only: reading runs the mm
/// audit of every live page table against the memmap and shows `audit:
/// ok` or `audit: FAILED: N findings`, the page totals and each finding);
/// and on arm64 only `contpte` (1 folds whole
/// 64 KiB blocks of one folio, 0 folds no new ones) and
/// `contpte_fork_per_pte` (1: fork unfolds folded blocks and
/// write-protects them entry by entry, for measuring Linux's behaviour
/// before 6.9).
#[macro_export]
macro_rules! folium_mm_path {
    () => {
        "/sys/kernel/mm/folium"
    };
    ($file:literal) => {
        concat!($crate::folium_mm_path!(), "/", $file)
    };
}

/// Folium's memory-management directory (see [`folium_mm_path!`]).
pub const FOLIUM_MM_DIR: &str = folium_mm_path!();

#[cfg(test)]
mod tests {
    #[test]
    fn files_are_in_the_directory() {
        assert_eq!(super::FOLIUM_MM_DIR, "/sys/kernel/mm/folium");
        assert_eq!(
            folium_mm_path!("pte_batching"),
            "/sys/kernel/mm/folium/pte_batching"
        );
    }
}
