//! Builds the guest kernel (`guest/`) and the user programs (`guest-user/`) for
//! i586-unknown-linux-gnu with a nested cargo, leaves them at `target/guest/kernel.elf` and
//! `target/guest/user/`, and copies them into OUT_DIR for `include_bytes!`.
//!
//! The nested cargo gets its own target dir (sharing ours deadlocks on the build lock) and an
//! environment without the outer build's compiler settings.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "i586-unknown-linux-gnu";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let build_dir = target_dir.join("guest-build");
    let guest_out = target_dir.join("guest");
    let user_out = guest_out.join("user");
    fs::create_dir_all(&user_out).unwrap();

    check_target_installed();
    for dir in ["guest", "guest-user"] {
        for item in [
            "src",
            "Cargo.toml",
            "Cargo.lock",
            "build.rs",
            ".cargo",
            "kernel.ld",
            "user.ld",
        ] {
            let p = root.join(dir).join(item);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }

    cargo_build(&root.join("guest"), &build_dir);
    let release = build_dir.join(GUEST_TARGET).join("release");
    copy(&release.join("kernel"), &guest_out.join("kernel.elf"));
    copy(&release.join("kernel"), &out_dir.join("kernel.elf"));

    cargo_build(&root.join("guest-user"), &build_dir);
    let mut table = String::from(
        "/// The built-in user programs: (name, static ELF32 i386 image).\n\
         pub static USER_PROGRAMS: &[(&str, &[u8])] = &[\n",
    );
    for name in user_program_names(&root.join("guest-user/src/bin")) {
        copy(&release.join(&name), &user_out.join(&name));
        copy(&release.join(&name), &out_dir.join(format!("user-{name}")));
        table += &format!(
            "    (\"{name}\", include_bytes!(concat!(env!(\"OUT_DIR\"), \"/user-{name}\"))),\n"
        );
    }
    table += "];\n";
    fs::write(out_dir.join("user_programs.rs"), table).unwrap();

    build_linux_exit0(&manifest, &out_dir);
}

/// `vmm bench fork`'s Linux baseline program: linux/exit0.S, assembled and linked static by
/// the system C compiler (the one that links this crate). Only on x86-64 Linux.
fn build_linux_exit0(manifest: &Path, out_dir: &Path) {
    let src = manifest.join("linux/exit0.S");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = out_dir.join("linux-exit0");
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64") {
        fs::write(&out, b"").unwrap();
        return;
    }
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-nostdlib", "-static", "-Wl,--build-id=none", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc} for linux/exit0.S: {e}"));
    if !status.success() {
        panic!("{cc} could not build linux/exit0.S (needs gcc or clang and binutils)");
    }
}

fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("cannot run rustc");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let lib = Path::new(&sysroot).join("lib/rustlib").join(GUEST_TARGET);
    if !lib.exists() {
        panic!(
            "the guest needs the Rust target {GUEST_TARGET}: run `rustup target add {GUEST_TARGET}` \
             (tools/dev does it for you)"
        );
    }
}

fn cargo_build(crate_dir: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate_dir)
        .args([
            "build",
            "--release",
            "--target",
            GUEST_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run the nested cargo");
    if !status.success() {
        panic!("building {} failed", crate_dir.display());
    }
}

fn user_program_names(bin_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(bin_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(String::from))?
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
}
