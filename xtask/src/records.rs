//! The benchmark records the guests print, one JSON object per line, read
//! with serde: the user-space `bench` prints [`Record`]s (the same fields
//! on Folium and on Linux), the kernel's `bench-alloc` prints objects of
//! its own shapes, kept as they are ([`Object`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Result;

/// A JSON object, its fields in the order they came.
pub type Object = Map<String, Value>;

/// One row of the user-space benchmark: the statistics are of one
/// repetition's time in ns; `per` is what one repetition covers (4 KiB
/// pages, operations, forks) and `per_unit` names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `sys`, `fork`, `memcpy`, `fault` or `munmap`.
    pub bench: String,
    /// The row: `order-9`, `64K`, `64K/per-pte`, `null_syscall` ...
    pub case: String,
    /// Folio size in KiB (0 where none applies).
    pub folio_kb: u64,
    /// Memory per repetition in MiB (0 where none applies).
    pub size_mib: u64,
    pub iterations: u32,
    pub median_ns: f64,
    pub mean_ns: f64,
    pub stddev_ns: f64,
    pub min_ns: f64,
    pub max_ns: f64,
    pub per: f64,
    pub per_unit: String,
    /// `ok`, or what the program found wrong.
    pub check: String,
    /// The kernel's release, as uname reported it.
    pub kernel: String,
    /// The columns particular to a benchmark (`mode`, `folios_got` ...).
    #[serde(flatten)]
    pub extra: Object,
}

impl Record {
    /// `batched` or `per-pte` (Folium's `pte_batching` switch), `native`
    /// (Linux), or "" where the row has no mode.
    pub fn mode(&self) -> &str {
        self.extra.get("mode").and_then(Value::as_str).unwrap_or("")
    }

    /// The median per unit (per 4 KiB, per op, per fork), in ns.
    pub fn per_unit_ns(&self) -> f64 {
        self.median_ns / self.per.max(1.0)
    }

    /// The standard deviation per unit, in ns.
    pub fn stddev_per_unit_ns(&self) -> f64 {
        self.stddev_ns / self.per.max(1.0)
    }

    /// How the row ran with arm64 contiguous PTEs (`contpte`): Folium's
    /// `off`, `on`, `on-per-pte-wp`, or Linux's `native`; `None` for the
    /// rows that are not about contpte.
    pub fn contpte(&self) -> Option<&str> {
        self.extra.get("contpte").and_then(Value::as_str)
    }

    /// The contpte counters' growth per repetition over the timed part:
    /// fold, unfold, refold, tlbi (`None` where the kernel has none).
    pub fn contpte_counts(&self) -> Option<[f64; 4]> {
        let mut out = [0.0; 4];
        for (o, k) in out.iter_mut().zip(CONTPTE_COUNTERS) {
            *o = self.extra.get(k)?.as_f64()?;
        }
        Some(out)
    }

    /// The median of the per-repetition ratios to the same row with
    /// contpte off, and those ratios' standard error.
    pub fn contpte_vs_off(&self) -> Option<(f64, f64)> {
        let get = |k: &str| self.extra.get(k).and_then(Value::as_f64);
        Some((get("contpte_vs_off")?, get("contpte_vs_off_noise")?))
    }

    /// Whether [`Record::contpte_vs_off`] is within twice its noise
    /// (`None` with one repetition, or for an off row).
    pub fn contpte_within_noise(&self) -> Option<bool> {
        self.extra
            .get("contpte_within_noise")
            .and_then(Value::as_bool)
    }
}

/// The contpte counters each contpte row carries, per repetition.
pub const CONTPTE_COUNTERS: [&str; 4] = [
    "contpte_fold",
    "contpte_unfold",
    "contpte_refold",
    "contpte_tlbi",
];

/// The JSON objects among console lines (the lines that start with `{`),
/// each read as a `T`; the first that does not parse is the error.
pub fn parse_lines<T: DeserializeOwned>(lines: &[String]) -> Result<Vec<T>> {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).map_err(|e| format!("bad JSON line `{l}`: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"bench":"fork","case":"order-9","folio_kb":2048,"size_mib":64,"iterations":3,"median_ns":189568,"mean_ns":184939,"stddev_ns":11610,"min_ns":171728,"max_ns":193520,"per":1,"per_unit":"fork","check":"ok","kernel":"6.12.0-folium","pte_mapped":true,"child":"sleep-5ms","mode":"batched","ratio":-1.5e-3,"n":null,"s":"a\"b\\c"}"#;

    #[test]
    fn reads_a_bench_record() {
        let r: Vec<Record> = parse_lines(&["noise".into(), LINE.into()]).unwrap();
        let r = &r[0];
        assert_eq!((r.bench.as_str(), r.case.as_str()), ("fork", "order-9"));
        assert_eq!(r.median_ns, 189568.0);
        assert_eq!(r.mode(), "batched");
        assert_eq!(r.extra["ratio"], -1.5e-3);
        assert_eq!(r.extra["pte_mapped"], true);
        assert_eq!(r.extra["n"], Value::Null);
        assert_eq!(r.extra["s"], "a\"b\\c");
        assert_eq!(r.extra.get("missing"), None);
        // Written back, the fields keep their order.
        let back = serde_json::to_string(r).unwrap();
        let keys: Vec<&str> = back
            .split("\":")
            .map(|k| k.rsplit('"').next().unwrap())
            .collect();
        assert!(keys.starts_with(&["bench", "case", "folio_kb"]), "{back}");
        assert!(back.find("\"child\"") < back.find("\"mode\""), "{back}");
        let again: Record = serde_json::from_str(&back).unwrap();
        assert_eq!(&again, r);
    }

    const CONTPTE_ON: &str = r#"{"bench":"contpte-regress","case":"on-per-pte-wp","folio_kb":64,"size_mib":64,"iterations":3,"median_ns":2300000,"mean_ns":2300000,"stddev_ns":10000,"min_ns":2290000,"max_ns":2310000,"per":1,"per_unit":"fork","check":"ok","kernel":"6.12.0-folium","mode":"batched","contpte":"on-per-pte-wp","contpte_blocks":1024,"contpte_fold":1024,"contpte_unfold":1024.5,"contpte_refold":0,"contpte_tlbi":2048,"folios_expected":1024,"folios_got":1024,"folios_other_sizes":0,"child":"sleep-5ms","contpte_vs_off":1.0950,"contpte_vs_off_noise":0.0121,"contpte_within_noise":false}"#;

    #[test]
    fn reads_the_contpte_fields() {
        let r: Vec<Record> = parse_lines(&[CONTPTE_ON.into()]).unwrap();
        let r = &r[0];
        assert_eq!(r.contpte(), Some("on-per-pte-wp"));
        assert_eq!(r.contpte_counts(), Some([1024.0, 1024.5, 0.0, 2048.0]));
        assert_eq!(r.contpte_vs_off(), Some((1.095, 0.0121)));
        assert_eq!(r.contpte_within_noise(), Some(false));
        // Linux: counters null, no off row to compare with.
        let linux = CONTPTE_ON
            .replace(r#""contpte":"on-per-pte-wp""#, r#""contpte":"native""#)
            .replace(r#""contpte_unfold":1024.5"#, r#""contpte_unfold":null"#)
            .replace(r#","contpte_within_noise":false"#, "")
            .replace(r#","contpte_vs_off_noise":0.0121"#, "");
        let l: Record = serde_json::from_str(&linux).unwrap();
        assert_eq!(l.contpte(), Some("native"));
        assert_eq!(l.contpte_counts(), None);
        assert_eq!(l.contpte_vs_off(), None);
        assert_eq!(l.contpte_within_noise(), None);
        // Rows that are not about contpte have none of it.
        let plain: Record = serde_json::from_str(LINE).unwrap();
        assert_eq!(plain.contpte(), None);
        assert_eq!(plain.contpte_counts(), None);
    }

    #[test]
    fn refuses_what_is_not_a_record() {
        for bad in [
            "{",
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{a:1}"#,
            r#"{"a":"unterminated}"#,
            // Well-formed, but not a bench record.
            r#"{"bench":"zero","bytes":4096}"#,
        ] {
            assert!(
                parse_lines::<Record>(&[bad.into()]).is_err(),
                "{bad} accepted"
            );
        }
        // bench-alloc's objects are kept whatever their fields.
        let o: Vec<Object> = parse_lines(&[r#"{"bench":"zero","bytes":4096}"#.into()]).unwrap();
        assert_eq!(o[0]["bytes"], 4096);
    }
}
