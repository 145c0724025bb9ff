//! The demo's algorithm for the VM, where there is no Python: the same
//! computation as `stats.py`, as one static binary with no dependencies.
//!
//! `stats --column NAME`: reads every CSV file in `$CVM_DATASETS` (a header
//! line, then rows), takes the numeric column NAME, and writes
//! `$CVM_RESULTS/summary.json` with the count, mean, sample standard
//! deviation and rows per dataset. Runs inside cvm-agent's sandbox: no
//! network, datasets read-only, results the only writable place.

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
    let rows: Vec<String> = per_dataset.iter().map(|(k, v)| format!("    {}: {v}", json_string(k))).collect();
    let summary = format!(
        "{{\n  \"column\": {},\n  \"count\": {n},\n  \"mean\": {},\n  \"rows_per_dataset\": {{\n{}\n  }},\n  \"stdev\": {}\n}}",
        json_string(&column),
        round6(mean),
        rows.join(",\n"),
        round6(stdev)
    );
    std::fs::write(Path::new(&results).join("summary.json"), summary)
        .map_err(|e| format!("{results}: {e}"))?;
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

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
