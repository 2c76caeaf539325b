//! `scripts/install-deps --check` tells a usable protoc from one that lacks the well-known
//! types (the state `apt-get install --no-install-recommends protobuf-compiler` leaves), so a
//! fresh machine fails in seconds with the package to install, not after a long build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-deps")
}

/// Runs the check with `bin` as the whole PATH.
fn check_protoc(bin: &Path) -> Output {
    Command::new(script())
        .args(["--check", "protoc"])
        .env("PATH", bin)
        .env_remove("PROTOC_INCLUDE")
        .output()
        .expect("run install-deps")
}

fn system_command(name: &str) -> PathBuf {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("look up a command");
    assert!(
        output.status.success(),
        "{name} is missing; the test command installs it"
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// A folder holding only the tools the script itself runs (no protoc): PATH for the checks.
fn bare_bin() -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    for tool in ["bash", "mktemp", "rm", "id"] {
        std::os::unix::fs::symlink(system_command(tool), bin.path().join(tool)).unwrap();
    }
    bin
}

#[test]
fn the_installed_protoc_with_its_includes_passes_the_check() {
    let bin = bare_bin();
    std::os::unix::fs::symlink(system_command("protoc"), bin.path().join("protoc")).unwrap();
    let output = check_protoc(bin.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_protoc_without_the_well_known_types_fails_the_check_naming_the_package() {
    // A copy of protoc in a folder with no include/ beside it finds no google/protobuf/*.proto,
    // as Debian's protoc does without libprotobuf-dev.
    let bin = bare_bin();
    std::fs::copy(system_command("protoc"), bin.path().join("protoc")).unwrap();
    let output = check_protoc(bin.path());
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "install-deps: protoc is present but cannot find google/protobuf/descriptor.proto: \
         install Debian's libprotobuf-dev (or set PROTOC_INCLUDE to a folder holding \
         google/protobuf/*.proto)"
    );
}

#[test]
fn a_missing_protoc_fails_the_check_naming_both_packages() {
    let bin = bare_bin();
    let output = check_protoc(bin.path());
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "install-deps: protoc is missing: install Debian's protobuf-compiler and libprotobuf-dev"
    );
}
