//! `etrn-harness scenarios list | show | export`: the corpus built into the binary, for a user
//! with no checkout.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use etrn_harness::scenario::{self, Scenario, ShippedFile, parse_scenario, shipped_files};

use super::{EXIT_INVALID, ScenariosCommand};

pub fn run(command: ScenariosCommand) -> ExitCode {
    match command {
        ScenariosCommand::List { filter } => list(filter.as_deref()),
        ScenariosCommand::Show { id } => show(&id.to_string_lossy()),
        ScenariosCommand::Export { dir, filter, force } => export(&dir, filter.as_deref(), force),
    }
}

/// Every built-in scenario with its parsed file, those `--filter` selects; `Err` is the exit
/// status after the error was shown.
fn selected(filter: Option<&str>) -> Result<Vec<(ShippedFile, Scenario)>, ExitCode> {
    let mut all = Vec::new();
    for f in shipped_files() {
        match parse_scenario(&f.label(), f.text) {
            Ok(s) => all.push((f, s)),
            // The corpus is checked when it is built into the binary (tests/corpus.rs): this is
            // a build from a damaged checkout.
            Err(errors) => {
                super::report_errors(&errors, true);
                return Err(ExitCode::from(EXIT_INVALID));
            }
        }
    }
    scenario::select(all, |(_, s)| &s.id, filter).map_err(|e| super::selection_error(&e))
}

fn list(filter: Option<&str>) -> ExitCode {
    let scenarios = match selected(filter) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // A reader that stops early (`| head -1`) is no error: stop writing, quietly.
    let mut out = std::io::stdout().lock();
    for (f, s) in &scenarios {
        if writeln!(out, "{:<44} {:<16} {}", s.id, f.topic(), s.title).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn show(id: &str) -> ExitCode {
    match scenario::builtin_one(id) {
        Ok(f) => {
            say_raw!("{}", f.text);
            ExitCode::SUCCESS
        }
        // A path is no id here; `show` never reads a file, so say what it takes instead of that
        // no file is there.
        Err(_) if Path::new(id).exists() => {
            let what = if Path::new(id).is_dir() {
                "a folder"
            } else {
                "a file"
            };
            eprintln!(
                "error: {id:?} is {what} here, but `scenarios show` takes a built-in scenario's id only \
                 (`etrn-harness scenarios list` shows them); to read a file, `cat` it"
            );
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => super::selection_error(&e),
    }
}

/// Writes each selected file to DIR/<topic>/<name>.toml. Nothing is written when any target is
/// there already (without --force) or is no regular file (a link, a folder: never, even with
/// --force), so a refused export loses nothing and leaves nothing half done. Each file goes
/// through a temporary file in its folder renamed into place, so a link at the target is
/// replaced, never followed.
fn export(dir: &Path, filter: Option<&str>, force: bool) -> ExitCode {
    let scenarios = match selected(filter) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // A DIR that is there and no folder is refused before anything is written: bad input (2),
    // not a failing system.
    if let Ok(m) = std::fs::metadata(dir)
        && !m.is_dir()
    {
        eprintln!(
            "error: {} exists and is no folder; nothing was written (name a folder, new or existing)",
            dir.display()
        );
        return ExitCode::from(EXIT_INVALID);
    }
    let targets: Vec<(std::path::PathBuf, &'static str)> = scenarios
        .iter()
        .map(|(f, _)| (dir.join(f.name), f.text))
        .collect();
    let mut refused = Vec::new();
    for (target, _) in &targets {
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_file() && force => {}
            Ok(m) if m.is_file() => refused.push(format!("{} exists", target.display())),
            Ok(_) => refused.push(format!(
                "{} exists and is no regular file",
                target.display()
            )),
            Err(_) => {}
        }
    }
    if let Some(first) = refused.first() {
        eprintln!(
            "error: {first}{}; nothing was written ({})",
            match refused.len() {
                1 => String::new(),
                n => format!(", and {} more", n - 1),
            },
            if force {
                "remove what is not a file"
            } else {
                "--force replaces existing files"
            }
        );
        return ExitCode::from(EXIT_INVALID);
    }
    for (target, text) in &targets {
        if let Err(e) = write_one(target, text, force) {
            eprintln!("error: cannot write {}: {e}", target.display());
            return ExitCode::from(super::exit::EXIT_SYSTEM);
        }
    }
    say!(
        "wrote {} scenario file(s) into {}",
        targets.len(),
        dir.display()
    );
    ExitCode::SUCCESS
}

fn write_one(target: &Path, text: &str, force: bool) -> std::io::Result<()> {
    let folder = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)?;
    // Readable as any file the user writes (the umask applies), not 0600 as a temporary file.
    let mut file = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(folder)?;
    file.write_all(text.as_bytes())?;
    if force {
        file.persist(target).map_err(|e| e.error)?;
    } else {
        // A file that appeared since the check is still not overwritten.
        file.persist_noclobber(target).map_err(|e| e.error)?;
    }
    Ok(())
}
