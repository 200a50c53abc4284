//! Structured text formats: CSV (one `header: value` line per field, a blank line between
//! records), JSON and YAML (flattened to `path: value` lines, top-level list items as separate
//! paragraphs; JSON Lines accepted), and XML (its text nodes).

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::Value;

use super::{ExtractError, Extracted, tidy};

pub fn extract_csv(source: &str) -> Result<Extracted, ExtractError> {
    let first_line = source.lines().next().unwrap_or("");
    let delimiter = if first_line.contains('\t') && !first_line.contains(',') {
        b'\t'
    } else if first_line.contains(';') && !first_line.contains(',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(source.as_bytes());
    let corrupt = |e: csv::Error| ExtractError::Corrupt {
        kind: "CSV",
        reason: e.to_string(),
    };
    let headers = reader.headers().map_err(corrupt)?.clone();
    let mut out = String::with_capacity(source.len() * 2);
    let mut rows = 0usize;
    for record in reader.records() {
        let record = record.map_err(corrupt)?;
        rows += 1;
        for (i, value) in record.iter().enumerate() {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match headers.get(i).map(str::trim).filter(|h| !h.is_empty()) {
                Some(h) => out.push_str(&format!("{h}: {value}\n")),
                None => out.push_str(&format!("column {}: {value}\n", i + 1)),
            }
        }
        out.push('\n');
    }
    let mut e = Extracted {
        text: tidy(&out),
        ..Default::default()
    };
    e.metadata.insert("rows".into(), Value::from(rows));
    e.metadata
        .insert("columns".into(), Value::from(headers.len()));
    Ok(e)
}

pub fn extract_json(source: &str) -> Result<Extracted, ExtractError> {
    let values: Vec<Value> = match serde_json::from_str::<Value>(source) {
        Ok(v) => vec![v],
        Err(whole) => serde_json::Deserializer::from_str(source)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|_| ExtractError::Corrupt {
                kind: "JSON",
                reason: whole.to_string(),
            })?,
    };
    Ok(flattened(values))
}

pub fn extract_yaml(source: &str) -> Result<Extracted, ExtractError> {
    use serde::Deserialize;
    let mut values = Vec::new();
    for doc in serde_norway::Deserializer::from_str(source) {
        let v = Value::deserialize(doc).map_err(|e| ExtractError::Corrupt {
            kind: "YAML",
            reason: e.to_string(),
        })?;
        values.push(v);
    }
    Ok(flattened(values))
}

fn flattened(values: Vec<Value>) -> Extracted {
    let mut out = String::new();
    let mut items = 0usize;
    for v in &values {
        match v {
            Value::Array(list) => {
                for item in list {
                    items += 1;
                    flatten("", item, &mut out);
                    out.push('\n');
                }
            }
            other => {
                items += 1;
                flatten("", other, &mut out);
                out.push('\n');
            }
        }
    }
    let mut e = Extracted {
        text: tidy(&out),
        ..Default::default()
    };
    e.metadata.insert("items".into(), Value::from(items));
    e
}

fn flatten(path: &str, v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, child, out);
            }
        }
        Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), child, out);
            }
        }
        Value::Null => {}
        Value::String(s) => push_line(path, s, out),
        other => push_line(path, &other.to_string(), out),
    }
}

fn push_line(path: &str, value: &str, out: &mut String) {
    if path.is_empty() {
        out.push_str(value);
    } else {
        out.push_str(path);
        out.push_str(": ");
        out.push_str(value);
    }
    out.push('\n');
}

pub fn extract_xml(source: &str) -> Result<Extracted, ExtractError> {
    let mut reader = Reader::from_str(source);
    let mut out = String::with_capacity(source.len() / 2);
    let corrupt = |reason: String| ExtractError::Corrupt {
        kind: "XML",
        reason,
    };
    loop {
        match reader.read_event() {
            Ok(Event::Text(t)) => {
                let s = t.decode().map_err(|e| corrupt(e.to_string()))?;
                out.push_str(&s);
            }
            Ok(Event::CData(c)) => {
                let s = c.decode().map_err(|e| corrupt(e.to_string()))?;
                out.push_str(&s);
            }
            Ok(Event::GeneralRef(r)) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    out.push(c);
                } else if let Some(s) = r
                    .decode()
                    .ok()
                    .and_then(|n| quick_xml::escape::resolve_predefined_entity(&n))
                {
                    out.push_str(s);
                }
            }
            Ok(Event::End(_)) => out.push('\n'),
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(corrupt(format!(
                    "at byte {}: {e}",
                    reader.buffer_position()
                )));
            }
        }
    }
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Ok(Extracted {
        text: lines.join("\n"),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_header_value_lines() {
        let e = extract_csv("name,role\nAda,engineer\nGrace,admiral\n").unwrap();
        assert_eq!(
            e.text,
            "name: Ada\nrole: engineer\n\nname: Grace\nrole: admiral"
        );
        assert_eq!(e.metadata["rows"], 2);
        let tsv = extract_csv("a\tb\n1\t2\n").unwrap();
        assert_eq!(tsv.text, "a: 1\nb: 2");
    }

    #[test]
    fn json_is_flattened() {
        let e =
            extract_json(r#"{"title":"Doc","tags":["a","b"],"meta":{"n":2,"x":null}}"#).unwrap();
        assert_eq!(e.text, "title: Doc\ntags[0]: a\ntags[1]: b\nmeta.n: 2");
        let list = extract_json(r#"[{"q":"one"},{"q":"two"}]"#).unwrap();
        assert_eq!(list.text, "q: one\n\nq: two");
        let lines = extract_json("{\"a\":1}\n{\"a\":2}\n").unwrap();
        assert_eq!(lines.text, "a: 1\n\na: 2");
        assert!(matches!(
            extract_json("{nope"),
            Err(ExtractError::Corrupt { kind: "JSON", .. })
        ));
    }

    #[test]
    fn yaml_is_flattened() {
        let e = extract_yaml("service: api\nports:\n  - 8080\n---\nservice: worker\n").unwrap();
        assert_eq!(e.text, "service: api\nports[0]: 8080\n\nservice: worker");
        assert!(matches!(
            extract_yaml("a: [unclosed"),
            Err(ExtractError::Corrupt { kind: "YAML", .. })
        ));
    }

    #[test]
    fn xml_text_nodes() {
        let e = extract_xml(
            "<?xml version=\"1.0\"?><r><a>one &amp; two</a><b><![CDATA[three]]></b></r>",
        )
        .unwrap();
        assert_eq!(e.text, "one & two\nthree");
        assert!(extract_xml("<a><b></a>").is_err());
    }
}
