//! The counting proxy (`scripts/counting_proxy.py`) at `127.0.0.1:<port>`, as the benches
//! that run on a local server read it: `/reset` clears its totals, `/stats` returns them
//! per operation (`#[path]`-included, as `counting.rs`).

pub struct Proxy {
    pub port: u16,
}

impl Proxy {
    fn call(&self, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("the counting proxy");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    pub fn reset(&self) {
        self.call("POST", "/reset");
    }

    /// The totals since the last reset, summed over the operations: each of `fields`
    /// (`requests`, `items`, `read_units`, `write_units`, `index_write_units`).
    pub fn totals<const N: usize>(&self, fields: [&str; N]) -> [f64; N] {
        let stats: serde_json::Value =
            serde_json::from_str(&self.call("GET", "/stats")).unwrap_or_default();
        let mut sums = [0.0; N];
        for totals in stats.as_object().into_iter().flat_map(|map| map.values()) {
            for (sum, field) in sums.iter_mut().zip(fields) {
                *sum += totals[field].as_f64().unwrap_or(0.0);
            }
        }
        sums
    }
}
