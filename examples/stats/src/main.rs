//! The demo's algorithm for the VM, where there is no Python: the same
//! computation as `stats.py`, as one static binary with no dependencies.
//!
//! `stats --column NAME`: reads every CSV file in `$CVM_DATASETS` (a header
//! line, then rows), takes the numeric column NAME, and writes
//! `$CVM_RESULTS/summary.json` with the count, mean, sample standard
//! deviation and rows per dataset. If the manifest gives a sealed artifact
//! `model.json` (a small linear risk model the agent decrypted in memory and
//! hands over in `$CVM_ARTIFACTS`), it also reports the model's mean risk
//! and how many rows are over its threshold. Runs inside cvm-agent's
//! sandbox: no network, inputs read-only, results the only writable place.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stats: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let column = args
        .iter()
        .position(|a| a == "--column")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "value".into());
    let datasets = std::env::var("CVM_DATASETS").map_err(|_| "CVM_DATASETS is not set")?;
    let results = std::env::var("CVM_RESULTS").map_err(|_| "CVM_RESULTS is not set")?;
    let mut names: Vec<_> = std::fs::read_dir(&datasets)
        .map_err(|e| format!("{datasets}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let mut values = Vec::new();
    let mut per_dataset = BTreeMap::new();
    for path in names {
        let rows = column_values(&path, &column)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        per_dataset.insert(name, rows.len());
        values.extend(rows);
    }
    let n = values.len();
    if n == 0 {
        return Err("no rows".into());
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let stdev = if n > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let mut summary = serde_json::json!({
        "column": column,
        "count": n,
        "mean": round6(mean),
        "rows_per_dataset": per_dataset,
        "stdev": round6(stdev),
    });
    if let Some(model) = load_model()? {
        let risks: Vec<f64> = values.iter().map(|v| model.intercept + model.per_year * v).collect();
        summary["model"] = serde_json::json!({
            "mean_risk": round6(risks.iter().sum::<f64>() / n as f64),
            "over_threshold": risks.iter().filter(|r| **r > model.threshold).count(),
        });
    }
    let text = serde_json::to_string_pretty(&summary).map_err(|e| format!("summary: {e}"))?;
    std::fs::write(Path::new(&results).join("summary.json"), text).map_err(|e| format!("{results}: {e}"))?;
    println!("{n} rows, mean {mean:.3}");
    Ok(())
}

fn column_values(path: &Path, column: &str) -> Result<Vec<f64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').map(str::trim).collect();
    let index = header
        .iter()
        .position(|h| *h == column)
        .ok_or_else(|| format!("{}: no column {column:?}", path.display()))?;
    lines
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let field = l.split(',').nth(index).unwrap_or_default().trim();
            field.parse::<f64>().map_err(|e| format!("{} row {}: {field:?}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The sealed model's parameters.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Model {
    intercept: f64,
    per_year: f64,
    threshold: f64,
}

/// Reads `$CVM_ARTIFACTS/model.json` when the manifest provides it.
fn load_model() -> Result<Option<Model>, String> {
    let Ok(dir) = std::env::var("CVM_ARTIFACTS") else { return Ok(None) };
    let path = Path::new(&dir).join("model.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}
