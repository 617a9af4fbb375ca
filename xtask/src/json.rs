//! Just enough JSON for the benchmark records the guests print: one flat
//! object per line (string, number, boolean and null values), read into
//! [`Object`], and strings escaped for writing `results.json`.

/// A value of a flat object.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// A flat JSON object, fields in their order, with the text it came from.
#[derive(Clone, Debug)]
pub struct Object {
    pub fields: Vec<(String, Value)>,
    pub raw: String,
}

impl Object {
    /// The field `k`.
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    /// The string field `k` ("" if missing or not a string).
    pub fn str(&self, k: &str) -> &str {
        match self.get(k) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    /// The number field `k`, if there is one.
    pub fn num(&self, k: &str) -> Option<f64> {
        match self.get(k) {
            Some(Value::Num(n)) => Some(*n),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
                            self.i += 4;
                            let cp =
                                u32::from_str_radix(std::str::from_utf8(hex).unwrap_or("x"), 16)
                                    .map_err(|_| "bad \\u escape")?;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        _ => return Err(format!("bad escape \\{}", e as char)),
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Value::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Value::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Value::Null)
            }
            Some(_) => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                t.parse()
                    .map(Value::Num)
                    .map_err(|_| format!("bad value at byte {start}"))
            }
            None => Err("a value is missing".into()),
        }
    }
}

/// Parses one flat object (nested objects and arrays are refused).
pub fn parse_object(line: &str) -> Result<Object, String> {
    let mut p = Parser {
        s: line.as_bytes(),
        i: 0,
    };
    p.eat(b'{')?;
    let mut fields = Vec::new();
    p.ws();
    if p.s.get(p.i) == Some(&b'}') {
        p.i += 1;
    } else {
        loop {
            let k = p.string()?;
            p.eat(b':')?;
            let v = p.value()?;
            fields.push((k, v));
            p.ws();
            match p.s.get(p.i) {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return Err(format!("expected ',' or '}}' at byte {}", p.i)),
            }
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing text at byte {}", p.i));
    }
    Ok(Object {
        fields,
        raw: line.to_string(),
    })
}

/// `s` as a JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bench_record() {
        let o = parse_object(
            r#"{"bench":"fork","case":"order-9","median_ns":19000000,"ratio":-1.5e-3,"ok":true,"n":null,"s":"a\"b\\c"}"#,
        )
        .unwrap();
        assert_eq!(o.str("bench"), "fork");
        assert_eq!(o.num("median_ns"), Some(19e6));
        assert_eq!(o.num("ratio"), Some(-1.5e-3));
        assert_eq!(o.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(o.get("n"), Some(&Value::Null));
        assert_eq!(o.str("s"), "a\"b\\c");
        assert_eq!(o.num("missing"), None);
    }

    #[test]
    fn refuses_what_is_not_one_flat_object() {
        for bad in [
            "",
            "{",
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a":[1]}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":1} x"#,
            r#"{a:1}"#,
            r#"{"a":"unterminated}"#,
        ] {
            assert!(parse_object(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_object("{}").unwrap().fields.is_empty());
    }

    #[test]
    fn quoting_round_trips() {
        let s = "tab\there \"q\" back\\slash\u{1}";
        let o = parse_object(&format!("{{\"k\":{}}}", quote(s))).unwrap();
        assert_eq!(o.str("k"), s);
    }
}
