//! Splitting a SQL script into statements at `;`, outside quotes and comments.

pub(crate) fn split_statements(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = script.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    current.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            current.push('\n');
                            break;
                        }
                    }
                }
                ';' => {
                    push_statement(&mut statements, &current);
                    current.clear();
                }
                _ => current.push(c),
            },
        }
    }
    push_statement(&mut statements, &current);
    statements
}

fn push_statement(statements: &mut Vec<String>, text: &str) {
    let text = text.trim();
    if !text.is_empty() {
        statements.push(text.to_string());
    }
}

/// `SET key = value` / `SET key TO value`, which the client keeps for the session.
pub(crate) fn parse_set(statement: &str) -> Option<(String, String)> {
    let rest = statement
        .trim()
        .strip_prefix("SET ")
        .or_else(|| statement.trim().strip_prefix("set "))?;
    let (key, value) = rest
        .split_once('=')
        .or_else(|| rest.split_once(" TO "))
        .or_else(|| rest.split_once(" to "))?;
    let value = value.trim().trim_matches('\'').trim_matches('"');
    Some((key.trim().to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_comments() {
        let script = "select 'a;b' as x; -- a comment; here\nselect 2;;\n";
        assert_eq!(
            split_statements(script),
            vec!["select 'a;b' as x".to_string(), "select 2".to_string()]
        );
    }

    #[test]
    fn set_statements_are_recognized() {
        assert_eq!(
            parse_set("SET datafusion.execution.batch_size = 1024"),
            Some(("datafusion.execution.batch_size".into(), "1024".into()))
        );
        assert_eq!(parse_set("select 1"), None);
    }
}
