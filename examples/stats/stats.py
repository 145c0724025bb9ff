"""Mean, standard deviation and count of one numeric column over every CSV dataset.

Runs inside cvm-agent's sandbox: datasets are read-only in $CVM_DATASETS,
results go to $CVM_RESULTS. No network, no other input. If the manifest
gives a sealed artifact `model.json` (a small linear risk model,
decrypted by the agent in memory only), it also reports the model's mean
risk and how many rows are over its threshold.
"""
import csv
import json
import math
import os
import sys

column = sys.argv[sys.argv.index("--column") + 1] if "--column" in sys.argv else "value"
datasets = os.environ["CVM_DATASETS"]
results = os.environ["CVM_RESULTS"]

values, per_dataset = [], {}
for name in sorted(os.listdir(datasets)):
    with open(os.path.join(datasets, name), newline="") as f:
        rows = [float(r[column]) for r in csv.DictReader(f)]
    per_dataset[name] = len(rows)
    values.extend(rows)

n = len(values)
mean = sum(values) / n
std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
summary = {"column": column, "count": n, "mean": round(mean, 6), "stdev": round(std, 6), "rows_per_dataset": per_dataset}
model_path = os.path.join(os.environ.get("CVM_ARTIFACTS", "/nonexistent"), "model.json")
if os.path.exists(model_path):
    with open(model_path) as f:
        model = json.load(f)
    risks = [model["intercept"] + model["per_year"] * v for v in values]
    summary["model"] = {
        "mean_risk": round(sum(risks) / n, 6),
        "over_threshold": sum(1 for r in risks if r > model["threshold"]),
    }
with open(os.path.join(results, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
print(f"{n} rows, mean {mean:.3f}")
