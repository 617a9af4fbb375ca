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
}

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
