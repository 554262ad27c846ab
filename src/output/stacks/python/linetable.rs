//! The line of a code unit, from a CPython 3.11+ code object's location
//! table (`co_linetable`; CPython's `Objects/locations.md`, PEP 626).
//!
//! The table is a sequence of entries, each covering 1 to 8 code units
//! (2-byte units of `co_code_adaptive`, inline caches included): a first
//! byte `1cccclll` (code `cccc`, `lll` + 1 units) followed by the code's
//! operands, every later byte with bit 7 clear. The line starts at
//! `co_firstlineno` and each entry moves it by a delta: a signed varint for
//! the long (14) and no-column (13) forms, 0, 1 or 2 for the one-line forms
//! (10, 11, 12), 0 for the short forms (0-9); code 15 means "no line" (the
//! line does not move). This is the logic of CPython's `advance` and
//! `PyCode_Addr2Line` (`Objects/codeobject.c`). No Rust crate parses this
//! format on its own (py-spy carries its own copy), hence this one.

/// Bytes of a location table read at most (one code object's).
pub const MAX_TABLE: u64 = 64 * 1_024;

/// A parsed location table: per entry, the code unit after its last and
/// its line (`None`: no line), in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTable {
    ends: Vec<(u32, Option<u32>)>,
}

/// The unsigned varint at `bytes[*at..]` (6-bit chunks, bit 6: more).
fn varint(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*at)?;
        *at += 1;
        if shift > 24 {
            return None;
        }
        value |= u32::from(b & 63) << shift;
        shift += 6;
        if b & 64 == 0 {
            return Some(value);
        }
    }
}

/// The signed varint at `bytes[*at..]` (bit 0 of the unsigned: negative).
fn svarint(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let u = varint(bytes, at)?;
    let magnitude = i64::from(u >> 1);
    Some(if u & 1 != 0 { -magnitude } else { magnitude })
}

impl LineTable {
    /// Parse `bytes`, the table of a code object whose first line is
    /// `firstlineno`; `None` if it is not well formed.
    pub fn parse(bytes: &[u8], firstlineno: u32) -> Option<LineTable> {
        let mut ends = Vec::with_capacity(bytes.len() / 2);
        let mut line = i64::from(firstlineno);
        let mut end: u32 = 0;
        let mut at = 0;
        while at < bytes.len() {
            let first = bytes[at];
            if first & 0x80 == 0 {
                return None;
            }
            at += 1;
            let code = (first >> 3) & 15;
            end = end.checked_add(u32::from(first & 7) + 1)?;
            let delta = match code {
                15 => None,
                14 => {
                    let delta = svarint(bytes, &mut at)?;
                    varint(bytes, &mut at)?; // end line delta
                    varint(bytes, &mut at)?; // column + 1
                    varint(bytes, &mut at)?; // end column + 1
                    Some(delta)
                }
                13 => Some(svarint(bytes, &mut at)?),
                10..=12 => {
                    at += 2; // column, end column
                    Some(i64::from(code - 10))
                }
                _ => {
                    at += 1; // column
                    Some(0)
                }
            };
            if at > bytes.len() || bytes[at..].first().is_some_and(|b| b & 0x80 == 0) {
                return None;
            }
            let entry_line = match delta {
                Some(delta) => {
                    line += delta;
                    Some(u32::try_from(line).ok()?)
                }
                None => None,
            };
            ends.push((end, entry_line));
        }
        Some(LineTable { ends })
    }

    /// Code units the table covers.
    pub fn units(&self) -> u32 {
        self.ends.last().map_or(0, |&(end, _)| end)
    }

    /// The line of code unit `unit`; `None` outside the table or for an
    /// instruction without a line.
    pub fn line(&self, unit: u32) -> Option<u32> {
        let i = self.ends.partition_point(|&(end, _)| end <= unit);
        self.ends.get(i)?.1
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ends.capacity() * std::mem::size_of::<(u32, Option<u32>)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_made_table_maps_units_to_lines() {
        // firstlineno 10: 2 units short form (line 10), 3 units one-line
        // +1 (11), 1 unit no line, 2 units no-column -2 (9), 1 unit long
        // form +5 (14).
        let bytes = [
            0x80 | 1,
            0x05,
            0x80 | (11 << 3) | 2,
            0x01,
            0x02,
            0x80 | (15 << 3),
            0x80 | (13 << 3) | 1,
            0x05, // svarint: 2, negative
            0x80 | (14 << 3),
            0x0a, // +5
            0x00,
            0x01,
            0x02,
        ];
        let t = LineTable::parse(&bytes, 10).unwrap();
        let lines: Vec<Option<u32>> = (0..10).map(|u| t.line(u)).collect();
        assert_eq!(
            lines,
            [
                Some(10),
                Some(10),
                Some(11),
                Some(11),
                Some(11),
                None,
                Some(9),
                Some(9),
                Some(14),
                None
            ]
        );
        assert_eq!(t.units(), 9);
    }

    #[test]
    fn malformed_tables_are_refused() {
        // A continuation byte first; an entry cut short; a varint that
        // never ends.
        assert!(LineTable::parse(&[0x05], 1).is_none());
        assert!(LineTable::parse(&[0x80 | (11 << 3), 0x01], 1).is_none());
        assert!(LineTable::parse(&[0x80 | (13 << 3), 0x40, 0x40], 1).is_none());
        // A line below 0.
        assert!(LineTable::parse(&[0x80 | (13 << 3), 0x03], 0).is_none());
        assert_eq!(LineTable::parse(&[], 1), Some(LineTable::default()));
    }

    /// The table of every code object of a small program, compiled by
    /// each real interpreter, against its own `co_lines()`.
    #[test]
    fn real_interpreters_tables_match_co_lines() {
        let script = r#"
import sys
src = '''
import time
def f(a, b=3):
    x = [i * a
         for i in range(b)
         if i % 2]
    try:
        y = {k: v for k, v in zip(x, x)}
    except (KeyError,
            ValueError) as e:
        raise RuntimeError("no") from e
    finally:
        pass
    while a:
        a -= 1
        if a > 1000: break
    return lambda z: (z +
        1)
class C:
    def m(self):
        time.sleep(0)
        return f(1)
''' + "\n" * 300 + "def far():\n    return 1\n"
def walk(code):
    yield code
    for c in code.co_consts:
        if hasattr(c, 'co_code'):
            yield from walk(c)
for code in walk(compile(src, 'x.py', 'exec')):
    lines = []
    for start, end, line in code.co_lines():
        for u in range(start // 2, end // 2):
            lines.append(str(line if line is not None else -1))
    print(code.co_firstlineno, code.co_linetable.hex(), ','.join(lines))
"#;
        for python in [
            "/root/.pyenv/versions/3.11.7/bin/python3.11",
            "/root/.pyenv/versions/3.12.1/bin/python3.12",
            "/root/.pyenv/versions/3.13.0/bin/python3.13",
            "/usr/bin/python3.11",
        ] {
            let out = std::process::Command::new(python)
                .args(["-c", script])
                .output()
                .unwrap_or_else(|e| panic!("{python} is part of the machine image: {e}"));
            assert!(out.status.success(), "{python}: {out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            let mut codes = 0;
            for row in text.lines() {
                let mut fields = row.split(' ');
                let first: u32 = fields.next().unwrap().parse().unwrap();
                let hex = fields.next().unwrap();
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let want: Vec<Option<u32>> = fields
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| u32::try_from(s.parse::<i64>().unwrap()).ok())
                    .collect();
                let table =
                    LineTable::parse(&bytes, first).unwrap_or_else(|| panic!("{python}: {row}"));
                let got: Vec<Option<u32>> = (0..want.len() as u32).map(|u| table.line(u)).collect();
                assert_eq!(got, want, "{python}: {row}");
                assert_eq!(table.units() as usize, want.len(), "{python}: {row}");
                codes += 1;
            }
            assert!(codes >= 6, "{python}: {text}");
        }
    }
}
