//! Every report field as a named value, for humans and for JSON.
//!
//! One list feeds both renderings, so `report show` and `report show --json`
//! can never disagree on what a report contains.

use std::fmt::{self, Write as _};

use serde_json::{json, Map, Value};

use super::{AttestationReport, TcbVersion};
use crate::Product;

/// One field of a report, in ABI order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name, lower snake case after the ABI name.
    pub name: &'static str,
    /// Its value.
    pub value: FieldValue,
}

/// The value of a report field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// A number.
    Int(u64),
    /// Raw bytes, shown as hex.
    Bytes(Vec<u8>),
    /// A bit field with its named flags.
    Bits {
        /// The raw value.
        raw: u64,
        /// Named parts and flags, in bit order.
        parts: Vec<(&'static str, String)>,
    },
    /// A TCB_VERSION, decoded for a product layout.
    Tcb(TcbVersion, Product),
    /// A firmware version "major.minor.build".
    Version(u8, u8, u8),
    /// A field this report version does not have.
    Absent,
}

impl AttestationReport {
    /// Every field of the report, in ABI order.
    pub fn fields(&self) -> Vec<Field> {
        let layout = self.tcb_layout();
        let f = |name, value| Field { name, value };
        let bytes = |b: &[u8]| FieldValue::Bytes(b.to_vec());
        let flags = |raw: u64, mut parts: Vec<(&'static str, String)>, named: Vec<(&'static str, bool)>| {
            parts.extend(named.into_iter().map(|(n, v)| (n, v.to_string())));
            FieldValue::Bits { raw, parts }
        };
        let ki = self.key_info;
        let cpuid = |get: fn(&super::Cpuid) -> u8| match &self.cpuid {
            Some(c) => FieldValue::Int(u64::from(get(c))),
            None => FieldValue::Absent,
        };
        let opt = |v: Option<u64>| v.map_or(FieldValue::Absent, FieldValue::Int);
        vec![
            f("version", FieldValue::Int(self.version.into())),
            f("guest_svn", FieldValue::Int(self.guest_svn.into())),
            f(
                "policy",
                flags(
                    self.policy.0,
                    vec![
                        ("abi_major", self.policy.abi_major().to_string()),
                        ("abi_minor", self.policy.abi_minor().to_string()),
                    ],
                    self.policy.flags(),
                ),
            ),
            f("family_id", bytes(&self.family_id)),
            f("image_id", bytes(&self.image_id)),
            f("vmpl", FieldValue::Int(self.vmpl.into())),
            f("signature_algo", FieldValue::Int(self.signature_algo.into())),
            f("current_tcb", FieldValue::Tcb(self.current_tcb, layout)),
            f("platform_info", flags(self.platform_info.0, vec![], self.platform_info.flags())),
            f(
                "key_info",
                flags(
                    ki.0.into(),
                    vec![
                        ("author_key_en", ki.author_key_en().to_string()),
                        ("mask_chip_key", ki.mask_chip_key().to_string()),
                        ("signing_key", ki.signing_key().to_string()),
                    ],
                    vec![],
                ),
            ),
            f("report_data", bytes(&self.report_data)),
            f("measurement", bytes(&self.measurement)),
            f("host_data", bytes(&self.host_data)),
            f("id_key_digest", bytes(&self.id_key_digest)),
            f("author_key_digest", bytes(&self.author_key_digest)),
            f("report_id", bytes(&self.report_id)),
            f("report_id_ma", bytes(&self.report_id_ma)),
            f("reported_tcb", FieldValue::Tcb(self.reported_tcb, layout)),
            f("cpuid_fam_id", cpuid(|c| c.family)),
            f("cpuid_mod_id", cpuid(|c| c.model)),
            f("cpuid_step", cpuid(|c| c.stepping)),
            f("chip_id", bytes(&self.chip_id)),
            f("committed_tcb", FieldValue::Tcb(self.committed_tcb, layout)),
            f(
                "current_version",
                FieldValue::Version(
                    self.current_version.major,
                    self.current_version.minor,
                    self.current_version.build,
                ),
            ),
            f(
                "committed_version",
                FieldValue::Version(
                    self.committed_version.major,
                    self.committed_version.minor,
                    self.committed_version.build,
                ),
            ),
            f("launch_tcb", FieldValue::Tcb(self.launch_tcb, layout)),
            f("launch_mit_vector", opt(self.launch_mit_vector)),
            f("current_mit_vector", opt(self.current_mit_vector)),
            f("signature_r", bytes(&self.signature.r)),
            f("signature_s", bytes(&self.signature.s)),
        ]
    }

    /// The fields as one JSON object; absent fields are `null`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for field in self.fields() {
            map.insert(field.name.to_owned(), field.value.to_json());
        }
        Value::Object(map)
    }
}

impl FieldValue {
    /// The value as JSON: bytes as hex strings, bit fields and TCBs as objects.
    pub fn to_json(&self) -> Value {
        match self {
            FieldValue::Int(v) => json!(v),
            FieldValue::Bytes(b) => json!(hex::encode(b)),
            FieldValue::Bits { raw, parts } => {
                let mut m = Map::new();
                m.insert("raw".into(), json!(format!("{raw:#x}")));
                for (name, value) in parts {
                    let v = match value.as_str() {
                        "true" => json!(true),
                        "false" => json!(false),
                        other => other.parse::<u64>().map_or_else(|_| json!(other), |n| json!(n)),
                    };
                    m.insert((*name).to_owned(), v);
                }
                Value::Object(m)
            }
            FieldValue::Tcb(tcb, product) => {
                let mut v = json!(tcb.parts(*product));
                if let Value::Object(m) = &mut v {
                    m.insert("raw".into(), json!(tcb.to_string()));
                }
                v
            }
            FieldValue::Version(major, minor, build) => json!(format!("{major}.{minor}.{build}")),
            FieldValue::Absent => Value::Null,
        }
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Int(v) => write!(f, "{v}"),
            FieldValue::Bytes(b) => f.write_str(&hex::encode(b)),
            FieldValue::Bits { raw, parts } => {
                let mut s = format!("{raw:#x}");
                let shown: Vec<String> = parts
                    .iter()
                    .filter(|(_, v)| v != "false")
                    .map(|(n, v)| if v == "true" { (*n).to_owned() } else { format!("{n}={v}") })
                    .collect();
                if !shown.is_empty() {
                    let _ = write!(s, " ({})", shown.join(", "));
                }
                f.write_str(&s)
            }
            FieldValue::Tcb(tcb, product) => write!(f, "{tcb} ({})", tcb.parts(*product)),
            FieldValue::Version(major, minor, build) => write!(f, "{major}.{minor}.{build}"),
            FieldValue::Absent => f.write_str("(not in this report version)"),
        }
    }
}
