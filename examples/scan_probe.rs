use std::time::Instant;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let mb: u64 = std::env::args().nth(2).map_or(32, |a| a.parse().unwrap());
    let t = Instant::now();
    let s = tollgate::store::Store::open(std::path::Path::new(&dir), mb << 20).unwrap();
    println!("open {:?}", t.elapsed());
    let t = Instant::now();
    let mut n = 0usize;
    s.for_each_raw(tollgate::store::Table::Keys, &tollgate::store::Span::ALL, |_, _| -> Result<(), tollgate::store::StoreError> { n += 1; Ok(()) }).unwrap();
    println!("scan {n} {:?}", t.elapsed());
    let t = Instant::now();
    let mut c = tollgate::config::Config::default();
    c.data = dir.into();
    drop(s);
    let e = tollgate::engine::Engine::open(&c).unwrap();
    println!("engine open {:?} {}", t.elapsed(), e.index().keys.len());
}
