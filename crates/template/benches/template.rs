//! `cargo bench -p eso-template`: the 20-key template case (parse + execute cold, execute with a
//! warm parse cache), and a template that spends its whole work budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use eso_template::{FuncMap, Options, Template, Value, sprig};

fn bench(c: &mut Criterion) {
    let mut funcs = FuncMap::new();
    sprig::register(&mut funcs, &sprig::SprigEnv::fixed(0, 1));
    let data = Value::string_map((0..50).map(|i| (format!("key{i}"), "x".repeat(200))));
    // 20 template keys, as ESO users write them: a field through a function, then another field.
    let texts: Vec<String> = (0..20)
        .map(|i| format!("{{{{ .key{i} | upper }}}}-{{{{ .key{} }}}}", (i + 1) % 50))
        .collect();
    let opts = Options::new(&funcs);
    c.bench_function("20-key template, cold (parse + execute)", |b| {
        b.iter(|| {
            for t in &texts {
                let p = Template::parse("t", t, &opts).unwrap();
                p.execute(&data).unwrap();
            }
        })
    });
    let parsed: Vec<Template> = texts
        .iter()
        .map(|t| Template::parse("t", t, &opts).unwrap())
        .collect();
    c.bench_function("20-key template, warm (execute only)", |b| {
        b.iter(|| {
            for p in &parsed {
                p.execute(&data).unwrap();
            }
        })
    });
    // Three nested ranges over 1000 items: far over the budget, stopped by fuel.
    let list = Value::string_map([(
        "l",
        vec![b'i'; 1000].iter().map(|_| "i,").collect::<String>(),
    )]);
    let spend = Template::parse(
        "spend",
        "{{ $l := splitList \",\" .l }}{{ range $l }}{{ range $l }}{{ range $l }}{{ end }}{{ end }}{{ end }}",
        &opts,
    )
    .unwrap();
    let mut g = c.benchmark_group("budget");
    g.sample_size(10);
    g.bench_function("a template that spends its whole work budget", |b| {
        b.iter(|| assert!(spend.execute(&list).is_err()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
