fn main() {
    eprintln!("berthctl: not implemented yet (see issues)");
    std::process::exit(1);
}
