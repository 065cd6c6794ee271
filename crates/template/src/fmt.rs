//! Go's `fmt` printing (`Sprint`, `Sprintln`, `Sprintf`) for template values.

use crate::value::Value;

/// Go's `%v` of one value, as `fmt.Sprint(v)` prints it.
pub fn sprint_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_v(&mut out, v, false);
    out
}

fn write_v(out: &mut Vec<u8>, v: &Value, nested: bool) {
    match v {
        Value::Nil => out.extend_from_slice(b"<nil>"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(format_float(*f, 'g', None, false).as_bytes()),
        Value::Str(s) => out.extend_from_slice(s),
        Value::List(l) => {
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_v(out, e, true);
            }
            out.push(b']');
        }
        Value::Map(m) => {
            out.extend_from_slice(b"map[");
            for (i, (k, e)) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                write_v(out, e, true);
            }
            out.push(b']');
        }
        Value::Time(t) => out.extend_from_slice(crate::sprig::go_time_string(t).as_bytes()),
    }
    let _ = nested;
}

/// `fmt.Sprint(args...)`: spaces between operands when neither is a string.
pub fn sprint(args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            let prev_str = matches!(args[i - 1], Value::Str(_));
            let cur_str = matches!(a, Value::Str(_));
            if !prev_str && !cur_str {
                out.push(b' ');
            }
        }
        write_v(&mut out, a, false);
    }
    out
}

/// `fmt.Sprintln(args...)`.
pub fn sprintln(args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_v(&mut out, a, false);
    }
    out.push(b'\n');
    out
}

/// Shortest decimal digits and exponent of a finite, positive float: (digits, decimal point
/// position), the value being 0.DIGITS × 10^dp.
fn shortest_digits(f: f64) -> (Vec<u8>, i32) {
    let s = format!("{f:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    (digits, exp + 1)
}

/// Digits of `f` rounded to `n` significant digits: (digits, dp).
fn rounded_digits(f: f64, n: usize) -> (Vec<u8>, i32) {
    let n = n.max(1);
    let s = format!("{:.*e}", n - 1, f);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    (mant.bytes().filter(u8::is_ascii_digit).collect(), exp + 1)
}

fn exp_form(digits: &[u8], dp: i32, upper: bool, min_frac: Option<usize>) -> String {
    let mut s = String::new();
    s.push(char::from(digits.first().copied().unwrap_or(b'0')));
    let frac = &digits[1.min(digits.len())..];
    let frac_len = min_frac.unwrap_or(frac.len());
    if frac_len > 0 {
        s.push('.');
        for i in 0..frac_len {
            s.push(char::from(frac.get(i).copied().unwrap_or(b'0')));
        }
    }
    let e = dp - 1;
    s.push(if upper { 'E' } else { 'e' });
    s.push(if e < 0 { '-' } else { '+' });
    let a = e.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
    s
}

fn plain_form(digits: &[u8], dp: i32) -> String {
    let mut s = String::new();
    if dp <= 0 {
        s.push_str("0.");
        for _ in 0..(-dp) {
            s.push('0');
        }
        s.extend(digits.iter().map(|d| char::from(*d)));
    } else {
        let dp = dp as usize;
        for i in 0..dp.max(digits.len()) {
            if i == dp {
                s.push('.');
            }
            s.push(char::from(digits.get(i).copied().unwrap_or(b'0')));
        }
    }
    s
}

/// Go's float formatting for verbs `e`, `E`, `f`, `g`, `G` with an optional precision.
pub fn format_float(f: f64, verb: char, prec: Option<usize>, sharp: bool) -> String {
    let _ = sharp;
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = f.is_sign_negative() && f != 0.0 || (f == 0.0 && f.is_sign_negative());
    let a = f.abs();
    let body = match verb {
        'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), a),
        'e' | 'E' => {
            let upper = verb == 'E';
            if a == 0.0 {
                exp_form(b"0", 1, upper, Some(prec.unwrap_or(6)))
            } else {
                match prec {
                    None => {
                        let (d, dp) = rounded_digits(a, 7);
                        exp_form(&d, dp, upper, Some(6))
                    }
                    Some(p) => {
                        let (d, dp) = rounded_digits(a, p + 1);
                        exp_form(&d, dp, upper, Some(p))
                    }
                }
            }
        }
        _ => {
            let upper = verb == 'G';
            if a == 0.0 {
                "0".to_string()
            } else {
                let (digits, dp, eprec) = match prec {
                    None => {
                        let (d, dp) = shortest_digits(a);
                        (d, dp, 6)
                    }
                    Some(p) => {
                        let p = p.max(1);
                        let (mut d, dp) = rounded_digits(a, p);
                        while d.len() > 1 && d.last() == Some(&b'0') {
                            d.pop();
                        }
                        let mut eprec = p;
                        if eprec > d.len() && d.len() as i32 >= dp {
                            eprec = d.len();
                        }
                        (d, dp, eprec)
                    }
                };
                let exp = dp - 1;
                if exp < -4 || exp >= eprec as i32 {
                    exp_form(&digits, dp, upper, None)
                } else {
                    plain_form(&digits, dp)
                }
            }
        }
    };
    if neg { format!("-{body}") } else { body }
}

/// Go's `strconv.Quote` of bytes.
pub fn quote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\x07' => out.extend_from_slice(b"\\a"),
                '\x08' => out.extend_from_slice(b"\\b"),
                '\x0c' => out.extend_from_slice(b"\\f"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\x0b' => out.extend_from_slice(b"\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes())
                }
                c if c.is_control() => {
                    let u = c as u32;
                    if u < 0x10000 {
                        out.extend_from_slice(format!("\\u{u:04x}").as_bytes())
                    } else {
                        out.extend_from_slice(format!("\\U{u:08x}").as_bytes())
                    }
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        for b in chunk.invalid() {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
    out.push(b'"');
    out
}

#[derive(Default, Clone, Copy)]
struct Flags {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(out: &mut Vec<u8>, body: &[u8], fl: &Flags, numeric: bool) {
    let len = String::from_utf8_lossy(body).chars().count();
    let w = fl.width.unwrap_or(0);
    if len >= w {
        out.extend_from_slice(body);
        return;
    }
    let n = w - len;
    if fl.minus {
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(b' ', n));
    } else if fl.zero && numeric {
        let (sign, rest) = match body.first() {
            Some(b'-' | b'+' | b' ') => body.split_at(1),
            _ => (&body[..0], body),
        };
        out.extend_from_slice(sign);
        out.extend(std::iter::repeat_n(b'0', n));
        out.extend_from_slice(rest);
    } else if fl.zero && !numeric {
        out.extend(std::iter::repeat_n(b'0', n));
        out.extend_from_slice(body);
    } else {
        out.extend(std::iter::repeat_n(b' ', n));
        out.extend_from_slice(body);
    }
}

/// An element of a list or map: a nil interface prints as `<nil>` whatever the verb.
fn fmt_elem(out: &mut Vec<u8>, verb: char, fl: &Flags, e: &Value) {
    if matches!(e, Value::Nil) {
        out.extend_from_slice(b"<nil>");
    } else {
        fmt_one(out, verb, fl, e);
    }
}

/// Go's `badVerb`: `%!VERB(TYPE=VALUE)`, the value printed with `%v` under the same flags.
fn bad_verb(out: &mut Vec<u8>, verb: char, fl: &Flags, v: &Value) {
    out.extend_from_slice(format!("%!{verb}(").as_bytes());
    match v {
        Value::Nil => out.extend_from_slice(b"<nil>"),
        other => {
            out.extend_from_slice(other.type_name().as_bytes());
            out.push(b'=');
            fmt_one(out, 'v', fl, other);
        }
    }
    out.push(b')');
}

fn fmt_int(i: i64, verb: char, fl: &Flags) -> Option<Vec<u8>> {
    let neg = i < 0;
    let u = i.unsigned_abs();
    let mut digits = match verb {
        'd' | 'v' => u.to_string(),
        'x' => format!("{u:x}"),
        'X' => format!("{u:X}"),
        'o' => format!("{u:o}"),
        'O' => format!("0o{u:o}"),
        'b' => format!("{u:b}"),
        'c' => {
            return Some(
                char::from_u32(i as u32)
                    .unwrap_or('\u{fffd}')
                    .to_string()
                    .into_bytes(),
            );
        }
        'q' => {
            // Go's strconv.QuoteRune: the rune as a Go string literal, in single quotes.
            let c = char::from_u32(i as u32).unwrap_or('\u{fffd}');
            let mut b = [0u8; 4];
            let q = match c {
                '\'' => b"\\'".to_vec(),
                '"' => b"\"".to_vec(),
                c => {
                    let q = quote(c.encode_utf8(&mut b).as_bytes());
                    q[1..q.len() - 1].to_vec()
                }
            };
            return Some([b"'".as_slice(), &q, b"'"].concat());
        }
        'U' => return Some(format!("U+{u:04X}").into_bytes()),
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 's' | 't' => return None,
        _ => return None,
    };
    if let Some(p) = fl.prec {
        while digits.len() < p {
            digits.insert(0, '0');
        }
        if p == 0 && u == 0 {
            digits.clear();
        }
    }
    if fl.sharp {
        match verb {
            'x' => digits.insert_str(0, "0x"),
            'X' => digits.insert_str(0, "0X"),
            'o' if !digits.starts_with('0') => digits.insert(0, '0'),
            'b' => digits.insert_str(0, "0b"),
            _ => {}
        }
    }
    let sign = if neg {
        "-"
    } else if fl.plus {
        "+"
    } else if fl.space {
        " "
    } else {
        ""
    };
    Some(format!("{sign}{digits}").into_bytes())
}

fn fmt_one(out: &mut Vec<u8>, verb: char, fl: &Flags, v: &Value) {
    let body: Vec<u8>;
    let mut numeric = false;
    match (verb, v) {
        ('v', Value::Float(f)) | ('g' | 'G' | 'e' | 'E' | 'f' | 'F', Value::Float(f)) => {
            let vb = if verb == 'v' { 'g' } else { verb };
            let mut s = format_float(*f, vb, fl.prec, fl.sharp);
            if fl.plus && !s.starts_with('-') {
                s.insert(0, '+');
            } else if fl.space && !s.starts_with('-') {
                s.insert(0, ' ');
            }
            body = s.into_bytes();
            numeric = true;
        }
        ('v', Value::Int(i)) => {
            body = fmt_int(*i, 'd', fl).unwrap_or_default();
            numeric = true;
        }
        (_, Value::Int(i)) => match fmt_int(*i, verb, fl) {
            Some(b) => {
                body = b;
                numeric = !matches!(verb, 'c' | 'q' | 'U');
            }
            None => return bad_verb(out, verb, fl, v),
        },
        ('v' | 't', Value::Bool(b)) => {
            body = if *b {
                b"true".to_vec()
            } else {
                b"false".to_vec()
            }
        }
        ('v' | 's', Value::Str(s)) => {
            body = match fl.prec {
                Some(p) => String::from_utf8_lossy(s)
                    .chars()
                    .take(p)
                    .collect::<String>()
                    .into_bytes(),
                None => s.to_vec(),
            }
        }
        ('q', Value::Str(s)) => {
            if fl.sharp && !s.contains(&b'`') && std::str::from_utf8(s).is_ok() {
                body = [b"`".as_slice(), s, b"`"].concat();
            } else {
                body = quote(s);
            }
        }
        ('x' | 'X', Value::Str(s)) => {
            let mut h = Vec::new();
            let data = match fl.prec {
                Some(p) => &s[..p.min(s.len())],
                None => &s[..],
            };
            for (i, b) in data.iter().enumerate() {
                if fl.space && i > 0 {
                    h.push(b' ');
                }
                if fl.sharp && (fl.space || i == 0) {
                    h.extend_from_slice(if verb == 'x' { b"0x" } else { b"0X" });
                }
                let hx = if verb == 'x' {
                    format!("{b:02x}")
                } else {
                    format!("{b:02X}")
                };
                h.extend_from_slice(hx.as_bytes());
            }
            body = h;
        }
        ('x' | 'X', Value::Float(_)) => return bad_verb(out, verb, fl, v),
        // Go formats each element (and map key) with the verb and flags, width included, and
        // does not pad the brackets.
        (_, Value::List(l)) if verb != 'T' => {
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                fmt_elem(out, verb, fl, e);
            }
            out.push(b']');
            return;
        }
        (_, Value::Map(m)) if verb != 'T' => {
            out.extend_from_slice(b"map[");
            for (i, (k, e)) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                fmt_one(out, verb, fl, &Value::str(k));
                out.push(b':');
                fmt_elem(out, verb, fl, e);
            }
            out.push(b']');
            return;
        }
        ('T', v) => body = v.type_name().as_bytes().to_vec(),
        ('v', Value::Nil) => body = b"<nil>".to_vec(),
        ('v' | 's', Value::Time(_)) => body = sprint_value(v),
        _ => return bad_verb(out, verb, fl, v),
    }
    pad(out, &body, fl, numeric);
}

/// Go's `fmt.Sprintf(format, args...)`.
pub fn sprintf(format: &[u8], args: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(format.len() + 16);
    let mut argn = 0usize;
    let mut i = 0usize;
    while i < format.len() {
        let c = format[i];
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut fl = Flags::default();
        while i < format.len() {
            match format[i] {
                b'-' => fl.minus = true,
                b'+' => fl.plus = true,
                b'#' => fl.sharp = true,
                b' ' => fl.space = true,
                b'0' => fl.zero = !fl.minus,
                _ => break,
            }
            i += 1;
        }
        // width
        let mut bad_width = false;
        if i < format.len() && format[i] == b'*' {
            i += 1;
            match args.get(argn) {
                Some(Value::Int(w)) => {
                    if *w < 0 {
                        fl.minus = true;
                        fl.zero = false;
                    }
                    let w = w.unsigned_abs();
                    if w > 1_000_000 {
                        bad_width = true;
                    } else {
                        fl.width = Some(w as usize);
                    }
                }
                _ => bad_width = true,
            }
            argn += 1;
        } else {
            let start = i;
            while i < format.len() && format[i].is_ascii_digit() {
                i += 1;
            }
            if i > start {
                let w: usize = std::str::from_utf8(&format[start..i])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                if w > 1_000_000 {
                    bad_width = true;
                } else {
                    fl.width = Some(w);
                }
            }
        }
        if bad_width {
            out.extend_from_slice(b"%!(BADWIDTH)");
        }
        let mut bad_prec = false;
        if i < format.len() && format[i] == b'.' {
            i += 1;
            if i < format.len() && format[i] == b'*' {
                i += 1;
                match args.get(argn) {
                    Some(Value::Int(p)) if *p >= 0 && *p <= 1_000_000 => {
                        fl.prec = Some(*p as usize)
                    }
                    _ => bad_prec = true,
                }
                argn += 1;
            } else {
                let start = i;
                while i < format.len() && format[i].is_ascii_digit() {
                    i += 1;
                }
                let p: usize = std::str::from_utf8(&format[start..i])
                    .ok()
                    .and_then(|s| {
                        if s.is_empty() {
                            Some(0)
                        } else {
                            s.parse().ok()
                        }
                    })
                    .unwrap_or(usize::MAX);
                if p > 1_000_000 {
                    bad_prec = true;
                } else {
                    fl.prec = Some(p);
                }
            }
        }
        if bad_prec {
            out.extend_from_slice(b"%!(BADPREC)");
        }
        if i >= format.len() {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        }
        // verb (a UTF-8 character)
        let rest = &format[i..];
        let (verb, len) = match std::str::from_utf8(&rest[..rest.len().min(4)]) {
            Ok(s) => s
                .chars()
                .next()
                .map(|c| (c, c.len_utf8()))
                .unwrap_or(('?', 1)),
            Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&rest[..e.valid_up_to()])
                .ok()
                .and_then(|s| s.chars().next())
                .map(|c| (c, c.len_utf8()))
                .unwrap_or(('\u{fffd}', 1)),
            Err(_) => ('\u{fffd}', 1),
        };
        i += len;
        if verb == '%' {
            out.push(b'%');
            continue;
        }
        match args.get(argn) {
            None => out.extend_from_slice(format!("%!{verb}(MISSING)").as_bytes()),
            Some(a) => fmt_one(&mut out, verb, &fl, a),
        }
        argn += 1;
    }
    if argn < args.len() {
        out.extend_from_slice(b"%!(EXTRA ");
        for (k, a) in args[argn..].iter().enumerate() {
            if k > 0 {
                out.extend_from_slice(b", ");
            }
            match a {
                Value::Nil => out.extend_from_slice(b"<nil>"),
                a => {
                    out.extend_from_slice(a.type_name().as_bytes());
                    out.push(b'=');
                    write_v(&mut out, a, false);
                }
            }
        }
        out.push(b')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(format_float(1e6, 'g', None, false), "1e+06");
        assert_eq!(format_float(123456.0, 'g', None, false), "123456");
        assert_eq!(format_float(1.5, 'g', None, false), "1.5");
        assert_eq!(format_float(0.0001, 'g', None, false), "0.0001");
        assert_eq!(format_float(0.00001, 'g', None, false), "1e-05");
        assert_eq!(format_float(1.23456, 'f', Some(2), false), "1.23");
        assert_eq!(format_float(1234.5678, 'e', None, false), "1.234568e+03");
    }

    #[test]
    fn printf_verbs() {
        let s = |f: &str, a: Vec<Value>| {
            String::from_utf8(sprintf(f.as_bytes(), &a)).unwrap_or_default()
        };
        assert_eq!(s("%s-%d", vec!["a".into(), 3.into()]), "a-3");
        assert_eq!(s("%q", vec!["a\"b".into()]), "\"a\\\"b\"");
        assert_eq!(s("%x", vec!["hi".into()]), "6869");
        assert_eq!(s("%05d|%-4s|", vec![42.into(), "ab".into()]), "00042|ab  |");
        assert_eq!(s("%d", vec!["x".into()]), "%!d(string=x)");
        assert_eq!(s("%d %d", vec![1.into()]), "1 %!d(MISSING)");
        assert_eq!(s("%d", vec![1.into(), "x".into()]), "1%!(EXTRA string=x)");
    }
}
