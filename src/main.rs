//! The `ccs` binary: everything lives in the library; this only maps its result to an exit code.

fn main() {
    std::process::exit(ccs::run(std::env::args_os().skip(1).collect()));
}
