//! The workspace's test crates build each crate once: no crate's tests
//! depend on a workspace crate that depends on it, and this crate depends on
//! no workspace crate at all. Read from `cargo metadata`, the manifests as
//! cargo resolves them.

#![expect(clippy::expect_used, reason = "the fixtures outside the tests panic on broken cargo output")]

use std::collections::{BTreeMap, BTreeSet};

use cvm_test_support::{ok, run};

/// Each workspace crate's dependencies on other workspace crates, by kind:
/// (normal and build, dev).
fn workspace_edges() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let o = run(
        env!("CARGO"),
        &["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path", manifest],
    );
    let meta: serde_json::Value =
        serde_json::from_str(&ok(&o, "cargo metadata")).expect("cargo metadata's JSON");
    let packages = meta["packages"].as_array().expect("cargo metadata lists packages");
    let members: BTreeSet<String> =
        packages.iter().filter_map(|p| p["name"].as_str()).map(str::to_owned).collect();
    packages
        .iter()
        .map(|p| {
            let (mut normal, mut dev) = (BTreeSet::new(), BTreeSet::new());
            for d in p["dependencies"].as_array().into_iter().flatten() {
                let Some(name) = d["name"].as_str().filter(|n| members.contains(*n)) else { continue };
                match d["kind"].as_str() {
                    Some("dev") => dev.insert(name.to_owned()),
                    _ => normal.insert(name.to_owned()),
                };
            }
            (p["name"].as_str().expect("a package name").to_owned(), (normal, dev))
        })
        .collect()
}

/// Every workspace crate `name` links, itself included (normal and build edges).
fn closure(edges: &BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([name.to_owned()]);
    let mut todo = vec![name.to_owned()];
    while let Some(n) = todo.pop() {
        for d in edges.get(&n).map(|e| &e.0).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn no_crates_tests_link_a_second_copy_of_it() {
    let edges = workspace_edges();
    assert!(edges.contains_key("cvm-agent") && edges.contains_key("cvmctl"), "{edges:?}");
    let mut twice = Vec::new();
    for (name, (_, dev)) in &edges {
        for d in dev {
            if d != name && closure(&edges, d).contains(name) {
                twice.push(format!("{name}'s tests depend on {d}, which links {name} again"));
            }
        }
    }
    assert!(twice.is_empty(), "{twice:#?}");
}

#[test]
fn this_crate_links_no_workspace_crate() {
    let edges = workspace_edges();
    let (normal, _) = &edges["cvm-test-support"];
    assert!(normal.is_empty(), "cvm-test-support depends on {normal:?}");
}
