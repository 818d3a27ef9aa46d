//! Files in the guest: `--add` puts host files into `/`, the built-in programs read them
//! through the file system, and what `vmm` says about bad `--add` arguments.

use crate::common;

use common::{boot, build_c_program, stderr, stdout, vmm};

/// A fresh private directory under the target directory, for host files to add.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn added_files_are_files_in_the_guest_root() {
    let dir = scratch("add-files");
    let a = dir.join("notes.txt");
    std::fs::write(&a, "first file\n").unwrap();
    std::fs::write(dir.join("second"), "second file\n").unwrap();
    let spec = format!("{}:n1", a.display());
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("in-dir"), "from a directory\n").unwrap();
    let subspec = sub.display().to_string();
    let Some(out) = boot(&[
        "--quiet", "--add", &spec, "--add", &subspec, "cat", "n1", "/in-dir", "n1",
    ]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "first file\nfrom a directory\nfirst file\n");
    // A missing file in the guest: cat says so and fails.
    let Some(out) = boot(&["--quiet", "--add", &spec, "cat", "nosuch"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cat: cannot open nosuch"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_added_file_shadows_a_builtin_with_a_note() {
    let dir = scratch("add-shadow");
    let f = dir.join("hello");
    std::fs::write(&f, "not the built-in hello\n").unwrap();
    let spec = f.display().to_string();
    let Some(out) = boot(&["--quiet", "--add", &spec, "cat", "hello"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "not the built-in hello\n");
    assert!(
        stderr(&out).contains("the host file 'hello' shadows the built-in program"),
        "{}",
        stderr(&out)
    );
    // Run as PROGRAM, the data file is not executable: 126, before any boot.
    let out = vmm(&["run", "--quiet", "--add", &spec, "hello"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
}

#[test]
fn bad_add_arguments_are_126_or_127() {
    let out = vmm(&["run", "--add", "/no/such/file", "hello"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--add /no/such/file"),
        "{}",
        stderr(&out)
    );
    let dir = scratch("add-bad");
    let f = dir.join("f");
    std::fs::write(&f, "x").unwrap();
    let long = format!("{}:a-name-longer-than-14", f.display());
    let out = vmm(&["run", "--add", &long, "hello"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 to 14 bytes"), "{}", stderr(&out));
    let out = vmm(&["run", "--add", "/dev/null", "hello"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn add_input_the_guest_cannot_take_is_refused_before_boot() {
    let dir = scratch("add-refused");
    let f = dir.join("f");
    std::fs::write(&f, "x").unwrap();
    let f = f.display().to_string();
    // Each refused with 126 and one line on stderr, nothing on stdout, no boot.
    let refused = |args: &[&str], want: &str| {
        let mut all = vec!["run", "--quiet"];
        all.extend_from_slice(args);
        let out = vmm(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(126), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(stdout(&out).is_empty(), "{args:?}");
    };
    for name in ["console", ".", "..", "TRAILER!!!"] {
        refused(
            &["--add", &format!("{f}:{name}"), "hello"],
            "is taken in the guest",
        );
    }
    refused(
        &["--add", &f, "--add", &format!("{f}:f"), "hello"],
        "given twice",
    );
    // A host program named like an added file.
    let prog = dir.join("prog");
    std::fs::create_dir(&prog).unwrap();
    let hello = prog.join("f");
    std::fs::write(&hello, vmm_hello_image()).unwrap();
    refused(
        &["--add", &f, &hello.display().to_string()],
        "would both be 'f'",
    );
    // A directory of 190 files, and 129 files one by one.
    let big = dir.join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..190 {
        std::fs::write(big.join(format!("f{i}")), "").unwrap();
    }
    refused(
        &["--add", &big.display().to_string(), "hello"],
        "at most 128",
    );
    let specs: Vec<String> = (0..129).map(|i| format!("{f}:n{i}")).collect();
    let mut args: Vec<&str> = Vec::new();
    for s in &specs {
        args.extend(["--add", s]);
    }
    args.push("hello");
    refused(&args, "at most 128");
}

/// The built-in hello's ELF image, as a host program.
fn vmm_hello_image() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/guest/user/hello"
    ))
    .expect("target/guest/user/hello is built with vmm")
}

#[test]
fn the_most_files_add_takes_all_reach_the_guest() {
    let dir = scratch("add-most");
    let many = dir.join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..128 {
        std::fs::write(many.join(format!("f{i:03}")), format!("file {i}\n")).unwrap();
    }
    let spec = many.display().to_string();
    let Some(out) = boot(&["--quiet", "--add", &spec, "cat", "f000", "f127"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "file 0\nfile 127\n");
    assert!(!stderr(&out).contains("not added"), "{}", stderr(&out));
}

#[test]
fn a_c_program_built_on_the_c_header_uses_pipes_and_files() {
    // The README's recipe.
    let exe = build_c_program("files", false);
    // One loadable segment at 0, no stray build-id note at 0x080480b4 (--build-id=none).
    let image = std::fs::read(&exe).unwrap();
    let elf = goblin::elf::Elf::parse(&image).unwrap();
    let loads: Vec<u64> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
        .map(|p| p.p_vaddr)
        .collect();
    assert_eq!(loads, [0], "the README's recipe makes one PT_LOAD at 0");
    let exe = exe.display().to_string();
    let Some(out) = boot(&["--quiet", &exe, "x", "y"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    assert_eq!(stdout(&out), "through a pipe\nfiles\nx\ny\n");
}
