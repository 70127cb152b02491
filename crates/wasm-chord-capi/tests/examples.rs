//! examples/c/chat.c and examples/cpp/chat.cpp compiled with the system C
//! and C++ compilers against include/wasmchord.h and the library built for
//! this test run, run on a tiny model, and their output checked against the
//! Rust API. The C example also runs under AddressSanitizer.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TURNS: [&str; 2] = ["Hello! Who are you?", "Tell me a story about a fox."];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory holding this build's `libwasmchord.{so,a}`: cargo builds
/// the library (all its crate types) next to this test's executable.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("deps dir").to_path_buf();
    for f in ["libwasmchord.so", "libwasmchord.a"] {
        assert!(dir.join(f).exists(), "{} not found next to the test", f);
    }
    dir
}

fn compile(compiler: &str, source: &str, out: &str, extra: &[&str]) -> PathBuf {
    let exe = common::scratch().join(out);
    let include = repo().join("include");
    let output = Command::new(compiler)
        .arg(repo().join(source))
        .arg("-I")
        .arg(&include)
        .args(["-Wall", "-Wextra", "-Werror", "-g", "-o"])
        .arg(&exe)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(
        output.status.success(),
        "{compiler} {source} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

fn shared_link() -> Vec<String> {
    let dir = lib_dir();
    vec![
        format!("-L{}", dir.display()),
        "-lwasmchord".into(),
        format!("-Wl,-rpath,{}", dir.display()),
    ]
}

/// Runs a chat example; returns (status ok, stdout, stderr).
fn run(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let (_, model) = common::tiny();
    let mut child = Command::new(exe)
        .arg(model)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let input = TURNS.iter().map(|t| format!("{t}\n")).collect::<String>();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for example");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_chat(exe: &Path) {
    let (_, model) = common::tiny();
    for (temp, seed) in [("0", 1u64), ("0.8", 42)] {
        let (ok, stdout, stderr) = run(
            exe,
            &["-n", "12", "--temp", temp, "--seed", &seed.to_string()],
            &[],
        );
        assert!(ok, "{} failed:\n{stderr}", exe.display());
        let expected = common::reference_chat(model, &TURNS, 12, temp.parse().unwrap_or(0.0), seed);
        assert_eq!(
            stdout, expected,
            "temp {temp} seed {seed}; stderr:\n{stderr}"
        );
        assert!(stderr.contains("using chatml"), "{stderr}");
        assert!(stderr.contains("llama, "), "{stderr}");
    }
}

#[test]
fn c_chat_matches_the_rust_api() {
    let link = shared_link();
    let mut args = vec!["-std=c11", "-pedantic"];
    args.extend(link.iter().map(String::as_str));
    let exe = compile("cc", "examples/c/chat.c", "chat-c", &args);
    check_chat(&exe);

    // Errors come back as codes with a message.
    let out = Command::new(&exe)
        .arg(common::scratch().join("no-such-model.gguf"))
        .output()
        .expect("run chat");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WASMCHORD_IO"), "{stderr}");
}

#[test]
fn cpp_chat_linked_statically_matches_the_rust_api() {
    let lib = lib_dir().join("libwasmchord.a");
    let lib = lib.to_str().expect("UTF-8 path");
    let exe = compile(
        "c++",
        "examples/cpp/chat.cpp",
        "chat-cpp",
        &[
            "-std=c++17",
            lib,
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
        ],
    );
    check_chat(&exe);
}

#[test]
fn c_chat_is_clean_under_address_sanitizer() {
    let link = shared_link();
    let mut args = vec!["-std=c11", "-fsanitize=address", "-fno-omit-frame-pointer"];
    args.extend(link.iter().map(String::as_str));
    let exe = compile("cc", "examples/c/chat.c", "chat-c-asan", &args);
    let (_, model) = common::tiny();
    let (ok, stdout, stderr) = run(
        &exe,
        &["-n", "12", "--temp", "0.8", "--seed", "42"],
        &[("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:exitcode=99")],
    );
    assert!(ok, "ASan run failed:\n{stderr}");
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
    assert_eq!(stdout, common::reference_chat(model, &TURNS, 12, 0.8, 42));
}

#[test]
fn pkg_config_file_gives_working_flags() {
    let template = std::fs::read_to_string(repo().join("crates/wasm-chord-capi/wasmchord.pc.in"))
        .expect("read wasmchord.pc.in");
    let pc_dir = common::scratch().join("pkgconfig");
    std::fs::create_dir_all(&pc_dir).expect("create pkgconfig dir");
    let pc = template
        .replace("@PREFIX@", "/unused")
        .replace("@LIBDIR@", &lib_dir().display().to_string())
        .replace(
            "@INCLUDEDIR@",
            &repo().join("include").display().to_string(),
        )
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@LIBS_PRIVATE@", "-lpthread -ldl -lm");
    assert!(!pc.contains('@'), "unsubstituted placeholder in {pc}");
    std::fs::write(pc_dir.join("wasmchord.pc"), pc).expect("write wasmchord.pc");
    let pkg_config = |args: &[&str]| {
        Command::new("pkg-config")
            .args(args)
            .env("PKG_CONFIG_PATH", &pc_dir)
            .output()
    };
    let Ok(version) = pkg_config(&["--modversion", "wasmchord"]) else {
        eprintln!("pkg-config is not installed; skipping");
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );
    let out = pkg_config(&["--cflags", "--libs", "wasmchord"]).expect("run pkg-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flags = String::from_utf8(out.stdout).expect("UTF-8 flags");
    assert!(flags.contains("-lwasmchord"), "{flags}");
    let mut args: Vec<String> = flags
        .split_whitespace()
        .filter(|f| f.starts_with('-'))
        .map(str::to_owned)
        .collect();
    args.push(format!("-Wl,-rpath,{}", lib_dir().display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exe = compile("cc", "examples/c/chat.c", "chat-c-pkgconfig", &args);
    let (ok, stdout, stderr) = run(&exe, &["-n", "4", "--temp", "0"], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), TURNS.len());
}
