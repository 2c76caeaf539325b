//! Spark's datetime patterns (`yyyy-MM-dd HH:mm:ss`, Java's DateTimeFormatter letters) turned
//! into the chrono `strftime` formats DataFusion's `to_char`, `to_date` and `to_unixtime` take,
//! so Spark's `date_format(d, 'yyyy-MM')` runs as DataFusion's own `to_char(d, '%Y-%m')`.

/// The chrono format for a Spark pattern, or what in it has no chrono counterpart.
pub fn spark_to_chrono(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted text is literal; '' is one quote.
            i += 1;
            if i < chars.len() && chars[i] == '\'' {
                out.push('\'');
                i += 1;
                continue;
            }
            while i < chars.len() {
                if chars[i] == '\'' {
                    if i + 1 < chars.len() && chars[i + 1] == '\'' {
                        out.push('\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                push_literal(&mut out, chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            push_literal(&mut out, c);
            i += 1;
            continue;
        }
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        out.push_str(field(c, run).ok_or_else(|| {
            format!(
                "datetime pattern '{pattern}': '{}' is not supported",
                c.to_string().repeat(run)
            )
        })?);
        i += run;
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

/// One run of a pattern letter, as Spark's DateTimeFormatter reads it.
fn field(letter: char, run: usize) -> Option<&'static str> {
    Some(match (letter, run) {
        ('y' | 'u', 2) => "%y",
        ('y' | 'u', _) => "%Y",
        ('M' | 'L', 1) => "%-m",
        ('M' | 'L', 2) => "%m",
        ('M' | 'L', 3) => "%b",
        ('M' | 'L', _) => "%B",
        ('d', 1) => "%-d",
        ('d', 2) => "%d",
        ('D', 1) => "%-j",
        ('D', _) => "%j",
        ('H', 1) => "%-H",
        ('H', 2) => "%H",
        ('h', 1) => "%-I",
        ('h', 2) => "%I",
        ('m', 1) => "%-M",
        ('m', 2) => "%M",
        ('s', 1) => "%-S",
        ('s', 2) => "%S",
        ('S', 1) => "%1f",
        ('S', 2) => "%2f",
        ('S', 3) => "%3f",
        ('S', 6) => "%6f",
        ('S', 9) => "%9f",
        ('a', 1) => "%p",
        ('E', 1..=3) => "%a",
        ('E', _) => "%A",
        ('Q', 1) => "%q",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_patterns_become_chrono_formats() {
        assert_eq!(spark_to_chrono("yyyy-MM-dd").unwrap(), "%Y-%m-%d");
        assert_eq!(
            spark_to_chrono("yyyy-MM-dd HH:mm:ss").unwrap(),
            "%Y-%m-%d %H:%M:%S"
        );
        assert_eq!(spark_to_chrono("yyyyMM").unwrap(), "%Y%m");
        assert_eq!(spark_to_chrono("EEE, d MMM yy").unwrap(), "%a, %-d %b %y");
        assert_eq!(
            spark_to_chrono("yyyy-'W'ww").unwrap_err(),
            "datetime pattern 'yyyy-'W'ww': 'ww' is not supported"
        );
        assert_eq!(
            spark_to_chrono("'at' HH 'o''clock' 100%").unwrap(),
            "at %H o'clock 100%%"
        );
    }
}
