//! A Kubernetes resource quantity (`500m`, `2`, `1Gi`) that accepts both the string and the
//! integer form users write in YAML (`cpu: 2`), with an int-or-string schema, and converts to
//! bytes or cores for tuning.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Quantity(pub String);

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::S(s) => Quantity(s),
            Raw::I(i) => Quantity(i.to_string()),
            Raw::F(f) => Quantity(f.to_string()),
        })
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A quantity such as 500m, 2, 512Mi or 10Gi.",
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$"
        })
    }
}

impl Quantity {
    /// The value as a number of base units (bytes for memory, cores for CPU).
    pub fn to_f64(&self) -> Option<f64> {
        let s = self.0.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(split);
        let n: f64 = num.parse().ok()?;
        let mult = match suffix {
            "" => 1.0,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            "Ki" => 1024.0,
            "Mi" => 1024f64.powi(2),
            "Gi" => 1024f64.powi(3),
            "Ti" => 1024f64.powi(4),
            "Pi" => 1024f64.powi(5),
            "Ei" => 1024f64.powi(6),
            e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
            _ => return None,
        };
        Some(n * mult)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_units() {
        let q: Quantity = serde_json::from_str("2").unwrap();
        assert_eq!(q.0, "2");
        let q: Quantity = serde_json::from_str("\"1Gi\"").unwrap();
        assert_eq!(q.to_f64(), Some(1073741824.0));
        assert_eq!(Quantity("500m".into()).to_f64(), Some(0.5));
        assert_eq!(Quantity("1.5G".into()).to_f64(), Some(1.5e9));
        assert_eq!(Quantity("12e3".into()).to_f64(), Some(12000.0));
        assert_eq!(Quantity("lots".into()).to_f64(), None);
    }
}
