//! ragdoll-operator: placeholder until the operator issue lands.
fn main() {
    eprintln!("ragdoll-operator: not implemented yet; see the operator issue");
    std::process::exit(2);
}
