//! `pvmouse-man DIR`: writes a section-1 man page for each of pvmouse's programs into DIR,
//! rendered from the same command-line definitions the programs parse, so a page cannot drift
//! from its program. `make deb` runs it; the packages install the pages.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: pvmouse-man DIR");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvmouse-man: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for command in [
        vhost_user_pvmouse::Cli::command(),
        pvmouse_vnc::cli::Cli::command(),
        pvmouse_guestd::cli::Cli::command(),
        pvmouse_session::cli::Cli::command(),
    ] {
        let path = dir.join(format!("{}.1", command.get_name()));
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::fs::write(&path, page)?;
        println!("{}", path.display());
    }
    Ok(())
}
