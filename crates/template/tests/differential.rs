//! The differential against Go: every corpus case (tests/corpus.jsonl) rendered by this engine
//! must match the golden output Go's text/template + sprig produced (tests/golden.jsonl, written
//! by go-oracle), exactly for outputs and by class for errors — except the cases listed in
//! tests/deliberate.txt, each a documented deliberate difference (docs/migrating-from-eso.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use eso_template::{ErrorKind, FuncMap, Options, Template, Value, sprig};

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    tmpl: String,
    data: BTreeMap<String, String>,
    #[serde(default)]
    delims: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Golden {
    name: String,
    out: Option<String>,
    out_b64: Option<String>,
    #[serde(default)]
    err: String,
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
}

/// Render one case: Ok(bytes) or Err(class).
fn render(funcs: &FuncMap, c: &Case) -> Result<Vec<u8>, &'static str> {
    let mut opts = Options::new(funcs);
    if let [l, r] = c.delims.as_slice() {
        opts.left = l;
        opts.right = r;
    }
    let t = Template::parse(&c.name, &c.tmpl, &opts).map_err(|e| match e.kind {
        ErrorKind::Parse => "parse",
        _ => "limit",
    })?;
    let data = Value::string_map(c.data.iter().map(|(k, v)| (k.clone(), v.as_bytes())));
    t.execute(&data).map_err(|e| match e.kind {
        ErrorKind::Parse => "parse",
        ErrorKind::Exec => "exec",
        ErrorKind::Limit => "limit",
    })
}

#[test]
fn corpus_matches_go_goldens() {
    use base64::Engine as _;
    let corpus = include_str!("corpus.jsonl");
    let golden = include_str!("golden.jsonl");
    let deliberate: BTreeMap<&str, &str> = lines(include_str!("deliberate.txt"))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, why)| (n, why.trim()))
        .collect();
    let goldens: BTreeMap<String, Golden> = lines(golden)
        .map(|l| serde_json::from_str::<Golden>(l).unwrap())
        .map(|g| (g.name.clone(), g))
        .collect();
    let mut funcs = FuncMap::new();
    sprig::register(&mut funcs, &sprig::SprigEnv::fixed(1_700_000_000, 42));
    let (mut total, mut exact) = (0, 0);
    let mut unexpected = Vec::new();
    let mut differing_deliberate = Vec::new();
    for l in lines(corpus) {
        let c: Case = serde_json::from_str(l).unwrap();
        let g = goldens
            .get(&c.name)
            .unwrap_or_else(|| panic!("no golden for {}", c.name));
        total += 1;
        let got = render(&funcs, &c);
        let want: Result<Vec<u8>, String> = match (&g.out, &g.out_b64) {
            (Some(o), _) => Ok(o.clone().into_bytes()),
            (None, Some(b)) => Ok(base64::engine::general_purpose::STANDARD.decode(b).unwrap()),
            (None, None) => Err(g.err.clone()),
        };
        let same = match (&got, &want) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
        if same {
            exact += 1;
            continue;
        }
        let show = |r: &Result<Vec<u8>, String>| match r {
            Ok(b) => format!("{:?}", String::from_utf8_lossy(b)),
            Err(c) => format!("<{c} error>"),
        };
        let line = format!(
            "{}: rust {} go {}",
            c.name,
            show(&got.map_err(str::to_string)),
            show(&want)
        );
        if deliberate.contains_key(c.name.as_str()) {
            differing_deliberate.push(line);
        } else {
            unexpected.push(line);
        }
    }
    eprintln!(
        "differential: {total} cases, {exact} match Go exactly, {} deliberate differences",
        differing_deliberate.len()
    );
    for d in &differing_deliberate {
        eprintln!("  deliberate: {d}");
    }
    assert!(
        unexpected.is_empty(),
        "{} mismatches:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
