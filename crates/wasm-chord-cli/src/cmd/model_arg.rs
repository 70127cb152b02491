//! Resolving `-m MODEL`: a path, a known model name, or the default model.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use wasm_chord_cli::models::{self, Cache, FetchError, ModelSpec, Progress};
use wasm_chord_core::backend::Backend;
use wasm_chord_runtime::{AnyBackend, Device, Model};

/// A path if `arg` names an existing file; else a known model name fetched
/// into the cache; with no `arg`, the default model (fetched on first use).
pub fn resolve(arg: Option<&str>) -> Result<PathBuf, FetchError> {
    match arg {
        Some(a) if std::path::Path::new(a).exists() => Ok(PathBuf::from(a)),
        Some(a) => match models::find(a) {
            Ok(spec) => ensure_with_progress(spec),
            // Not a known name either: report the missing file, the common case.
            Err(_) => Err(FetchError::Io {
                path: PathBuf::from(a),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            }),
        },
        None => ensure_with_progress(&models::DEFAULT_MODEL),
    }
}

/// [`models::ensure`] with a progress bar on stderr (plain lines when stderr
/// is not a terminal).
pub fn ensure_with_progress(spec: &ModelSpec) -> Result<PathBuf, FetchError> {
    let mut bar = ProgressBar::new(spec);
    Cache::from_env()?.ensure(spec, &mut |p| bar.update(p))
}

/// For `pull`: re-checks the sha256 of a cached copy, and downloads (again)
/// when there is none, it is damaged, or `force` is set.
pub fn pull_with_progress(spec: &ModelSpec, force: bool) -> Result<PathBuf, FetchError> {
    let mut bar = ProgressBar::new(spec);
    let cache = Cache::from_env()?;
    if !force && cache.verify(spec, &mut |p| bar.update(p))? {
        return Ok(cache.path_of(spec));
    }
    cache.fetch(spec, &mut |p| bar.update(p))
}

struct ProgressBar {
    bar: indicatif::ProgressBar,
    tty: bool,
    name: &'static str,
    current: String,
    last_logged: u64,
}

impl ProgressBar {
    fn new(spec: &ModelSpec) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            tty,
            name: spec.name,
            current: String::new(),
            last_logged: 0,
        }
    }

    fn update(&mut self, p: Progress<'_>) {
        match p {
            Progress::Start { package, total } => {
                self.current = package.to_owned();
                self.last_logged = 0;
                self.bar.reset();
                self.bar.set_length(total.unwrap_or(0));
                self.bar.set_message(format!("{}: {package}", self.name));
                if !self.tty {
                    eprintln!(
                        "fetching {package} ({} MB)",
                        total.map_or("?".into(), |t| (t / 1_000_000).to_string())
                    );
                }
            }
            Progress::Bytes(n) => {
                self.bar.set_position(n);
                if !self.tty && n - self.last_logged >= 20_000_000 {
                    self.last_logged = n;
                    eprintln!("  {}: {} MB", self.current, n / 1_000_000);
                }
            }
            Progress::Verifying => {
                self.bar.finish_and_clear();
                eprintln!("verifying sha256 of {}", self.name);
            }
        }
    }
}

/// The compute device and CPU threads, shared by every command that runs a
/// model.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Compute device: auto, cpu, webgpu, cuda[:N], metal[:N], candle-cpu.
    /// `auto` takes CUDA, then Metal, then a hardware WebGPU adapter, then
    /// the CPU, among those compiled into this binary (see `--version`).
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub backend: Device,
    /// CPU threads (default: one per core).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

impl BackendArgs {
    /// Opens the backend (setting the CPU thread count first).
    pub fn open(&self) -> Result<AnyBackend, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(t) = self.threads {
            wasm_chord_cpu::CpuBackend::set_threads(t.max(1))?;
        }
        Ok(AnyBackend::open(self.backend)?)
    }
}

/// A one-line description of the backend in use, for end-of-run summaries.
pub fn describe(backend: &AnyBackend) -> String {
    match backend.as_cpu() {
        Some(_) => format!("cpu, {} threads", wasm_chord_cpu::CpuBackend::threads()),
        None => format!("{} ({})", backend.name(), backend.summary()),
    }
}

/// A model ready to run: file, tokenizer and weights on the chosen backend.
pub struct Loaded {
    /// The tokenizer read from the file.
    pub tokenizer: wasm_chord_core::tokenizer::Tokenizer,
    /// The model.
    pub model: Model<AnyBackend>,
}

/// Resolves `arg` (see [`resolve`]), opens the file and loads tokenizer and
/// model on the backend of `be`.
pub fn load(
    arg: Option<&str>,
    be: &BackendArgs,
) -> Result<Loaded, Box<dyn std::error::Error + Send + Sync>> {
    let path = resolve(arg)?;
    let file = Arc::new(wasm_chord_core::gguf::GgufFile::open(&path)?);
    let tokenizer = wasm_chord_core::tokenizer::Tokenizer::from_metadata(file.metadata())?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model = load_model(file, &name, be)?;
    Ok(Loaded { tokenizer, model })
}

/// Uploads the weights of `file` to the backend of `be`, with a progress bar
/// on a terminal.
pub fn load_model(
    file: Arc<wasm_chord_core::gguf::GgufFile>,
    name: &str,
    be: &BackendArgs,
) -> Result<Model<AnyBackend>, Box<dyn std::error::Error + Send + Sync>> {
    let backend = Arc::new(be.open()?);
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(100)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}%") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    let model = Model::load_with_progress(file, backend, &mut |p| {
        bar.set_position((p * 100.0) as u64);
        true
    })?;
    bar.finish_and_clear();
    Ok(model)
}
