//! A small JSON writer for `balsa status --json`: values are built as a [`Json`] tree and
//! rendered compactly, strings escaped as RFC 8259 requires.
//!
//! Invariant: [`Json::render`] always produces valid JSON, whatever the strings hold (quotes,
//! backslashes and control characters are escaped; other characters pass through as UTF-8).

use std::fmt::Write;

/// A JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`.
    Null,
    /// A non-negative integer (every number `balsa` reports is one).
    Number(u64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, its members in this order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// An object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(members: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Object(
            members
                .into_iter()
                .map(|(key, value)| (key.into(), value))
                .collect(),
        )
    }

    /// A string value.
    pub fn string(text: impl Into<String>) -> Json {
        Json::String(text.into())
    }

    /// The value as compact JSON text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Number(value) => {
                let _ = write!(out, "{value}");
            }
            Json::String(text) => write_string(text, out),
            Json::Array(items) => {
                out.push('[');
                for (position, item) in items.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    item.write_to(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (position, (key, value)) in members.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write_to(out);
                }
                out.push('}');
            }
        }
    }
}

impl From<Option<u64>> for Json {
    fn from(value: Option<u64>) -> Json {
        value.map_or(Json::Null, Json::Number)
    }
}

/// Writes `text` as a quoted JSON string.
fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(Json::Null.render(), "null");
        assert_eq!(Json::Number(0).render(), "0");
        assert_eq!(Json::Number(u64::MAX).render(), "18446744073709551615");
        assert_eq!(Json::from(None).render(), "null");
        assert_eq!(Json::from(Some(3)).render(), "3");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(Json::string("plain").render(), r#""plain""#);
        assert_eq!(Json::string(r#"a"b\c"#).render(), r#""a\"b\\c""#);
        assert_eq!(
            Json::string("line\nreturn\rtab\tbell\u{07}bs\u{08}ff\u{0c}").render(),
            r#""line\nreturn\rtab\tbell\u0007bs\bff\f""#
        );
        assert_eq!(Json::string("\u{0}\u{1f}").render(), r#""\u0000\u001f""#);
        assert_eq!(Json::string("é ✓ \u{7f}").render(), "\"é ✓ \u{7f}\"");
        assert_eq!(Json::string("</script>").render(), r#""</script>""#);
    }

    #[test]
    fn arrays_and_objects_nest_in_order() {
        assert_eq!(Json::Array(vec![]).render(), "[]");
        assert_eq!(Json::object(Vec::<(String, Json)>::new()).render(), "{}");
        let value = Json::Array(vec![
            Json::object([
                ("id", Json::Number(1)),
                ("role", Json::string("leader")),
                ("leader", Json::Null),
            ]),
            Json::object([("error", Json::string("no \"answer\""))]),
        ]);
        assert_eq!(
            value.render(),
            r#"[{"id":1,"role":"leader","leader":null},{"error":"no \"answer\""}]"#
        );
    }

    #[test]
    fn keys_are_escaped_too() {
        let value = Json::object([("a\"b", Json::Number(1))]);
        assert_eq!(value.render(), r#"{"a\"b":1}"#);
    }
}
