//! The fast reading of Prometheus's usual range answer,
//! `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{...},"values":[[t,"v"],...]},...]}}`:
//! a byte-level reader for exactly that shape, building the series as it goes, with no JSON tree
//! and no generic deserializer in between (the daemon reads one such answer per analysis, and
//! serde's way cost a sixth of its CPU). It gives up (`None`) on anything else: an error
//! answer, another result type, a string with an escape in it (Prometheus writes none in values
//! and rarely in labels), a value that is not a number, malformed JSON. The caller then reads the
//! answer the slow way, which accepts every valid answer and names what is wrong with the others.
//! Keys may come in any order; unknown keys (`warnings`, `infos`) are skipped.

use std::collections::BTreeMap;

use super::value::parse_value;
use crate::judge::Point;
use crate::source::Series;

/// The series of a successful matrix answer, or `None` to read it the slow way.
pub fn read(body: &[u8]) -> Option<Vec<Series>> {
    let mut r = Reader { b: body, i: 0 };
    let mut ok = false;
    let mut series = None;
    r.object(|r, key| {
        match key {
            "status" => ok = r.string()? == "success",
            "data" => series = Some(r.data()?),
            _ => r.skip()?,
        }
        Some(())
    })?;
    r.ws();
    (ok && r.i == r.b.len()).then_some(())?;
    series
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next non-blank byte, consumed.
    fn next(&mut self) -> Option<u8> {
        self.ws();
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// A string without escapes, borrowed from the body.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let bytes = &self.b[start..self.i];
        self.i += 1;
        std::str::from_utf8(bytes).ok()
    }

    /// A JSON number, exactly as the JSON reader takes them: RFC 8259's grammar
    /// `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?` (no `+1`, `0536`, `.5`, `5.`) and
    /// finite as a double (`1e400` is refused, as serde_json refuses it).
    fn number(&mut self) -> Option<f64> {
        self.ws();
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match *self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let from = self.i;
            self.digits();
            (self.i > from).then_some(())?;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            let from = self.i;
            self.digits();
            (self.i > from).then_some(())?;
        }
        // Only ASCII was consumed.
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        text.parse::<f64>().ok().filter(|x| x.is_finite())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// `{ "key": value, ... }`, `value` read by `field` for each key.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            field(self, key)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// `[ item, ... ]`, each item read by `item`.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// Any value, unread.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(|r, _| r.skip()),
            b'[' => self.array(Self::skip),
            b'"' => self.string().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number().map(drop),
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word.as_bytes()).then(|| self.i = end)
    }

    /// `data`: a matrix's series (`None` for any other result type).
    fn data(&mut self) -> Option<Vec<Series>> {
        let mut matrix = false;
        let mut series = None;
        self.object(|r, key| {
            match key {
                "resultType" => matrix = r.string()? == "matrix",
                "result" => {
                    let mut all = Vec::new();
                    r.array(|r| {
                        all.push(r.series()?);
                        Some(())
                    })?;
                    series = Some(all);
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        if matrix { series } else { None }
    }

    /// `{"metric": {...}, "values": [...]}`; a series without `values` (native histograms)
    /// is left to the slow reading, which names it.
    fn series(&mut self) -> Option<Series> {
        let mut labels = BTreeMap::new();
        let mut points = None;
        self.object(|r, key| {
            match key {
                "metric" => {
                    // A repeated key keeps its last value, as in the JSON reading.
                    labels.clear();
                    r.object(|r, name| {
                        let value = r.string()?;
                        labels.insert(name.to_string(), value.to_string());
                        Some(())
                    })?
                }
                "values" => points = Some(r.points()?),
                _ => r.skip()?,
            }
            Some(())
        })?;
        Some(Series {
            labels,
            points: points?,
        })
    }

    /// `[[<unix seconds>, "<value>"], ...]`.
    fn points(&mut self) -> Option<Vec<Point>> {
        let mut points = Vec::with_capacity(64);
        self.array(|r| {
            r.expect(b'[')?;
            let t = r.number()?;
            r.expect(b',')?;
            let v = parse_value(r.string()?)?;
            r.expect(b']')?;
            points.push(Point { t, v });
            Some(())
        })?;
        Some(points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_answer_is_read_with_labels_times_and_special_values() {
        let body = r#" { "status" : "success", "data": {"result": [
            {"values": [[1700000000, "1.5"], [1700000060.5,"NaN"]], "metric": {"a": "ü", "__name__": "m"}},
            {"metric": {}, "values": []}
        ], "resultType": "matrix"}, "infos": ["i", {"x": [true, false, null, -1.5e3]}] } "#;
        let series = read(body.as_bytes()).expect("read");
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels["a"], "ü");
        assert_eq!(series[0].labels["__name__"], "m");
        assert_eq!(series[0].points[0].t, 1_700_000_000.0);
        assert_eq!(series[0].points[0].v, 1.5);
        assert_eq!(series[0].points[1].t, 1_700_000_060.5);
        assert!(series[0].points[1].v.is_nan());
        assert!(series[1].labels.is_empty() && series[1].points.is_empty());
    }

    #[test]
    fn anything_else_is_left_to_the_slow_reading() {
        for body in [
            "",
            "{}",
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}} trailing"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"\""},"values":[]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,2]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[x,"2"]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2",3]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"],]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"]]}],"x":tru}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2"]]}]}"#,
            r#"{"status":"error","data":{"resultType":"matrix","result":[]}}"#,
        ] {
            assert!(read(body.as_bytes()).is_none(), "{body}");
        }
    }
}
