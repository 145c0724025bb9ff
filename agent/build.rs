//! Links the vTPM's TCTIs into the static release agent.
//!
//! `scripts/build-agent` sets `CVM_TSS2_STATIC` to the prefix of the static
//! tpm2-tss that `scripts/build-tpm2-tss-static` builds. Its TCTI loader is
//! built without dlopen (`--enable-nodl`) and calls the device, swtpm and
//! mssim TCTIs directly, but its pkg-config file does not list them: they are
//! added here. Development builds (the variable unset) link Debian's shared
//! libtss2, whose loader finds the TCTIs at run time.

fn main() {
    println!("cargo:rerun-if-env-changed=CVM_TSS2_STATIC");
    if let Ok(prefix) = std::env::var("CVM_TSS2_STATIC") {
        println!("cargo:rustc-link-search=native={prefix}/lib");
        for lib in ["tss2-tcti-device", "tss2-tcti-swtpm", "tss2-tcti-mssim", "tss2-tctildr", "tss2-mu"] {
            println!("cargo:rustc-link-lib=static={lib}");
        }
    }
}
