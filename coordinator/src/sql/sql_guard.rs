//! Refuses SQL whose expressions are too deep to plan. The SQL parser limits nesting of
//! parentheses, subqueries and function calls, but parses a chain of binary operators
//! (`a + a + ... + a`) in a loop into a tree as deep as the chain is long; DataFusion then
//! walks that tree recursively (clones, rewrites, protobuf) and a few thousand operators
//! overflow a thread's stack, which aborts the whole process. So the operators between
//! commas are counted on the token stream, which is flat, before anything is parsed.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::CoordinatorError;

/// Binary operators allowed in one comma-separated part of a statement. 1,000 plan and run
/// with room to spare on a 2 MiB stack in a debug build; 1,500 did not.
pub(crate) const MAX_OPERATORS: usize = 1_000;

pub(crate) fn check_expression_depth(sql: &str) -> Result<(), CoordinatorError> {
    // A statement the tokenizer rejects is left to the parser, which says why.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let mut operators = 0usize;
    for token in &tokens {
        match token {
            Token::Comma | Token::SemiColon => operators = 0,
            token if is_binary_operator(token) => {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Err(CoordinatorError::Query(format!(
                        "an expression chains more than {MAX_OPERATORS} operators, too deep to \
                         plan: split it, or use IN (...) instead of long OR chains"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_binary_operator(token: &Token) -> bool {
    match token {
        Token::Word(word) => matches!(word.keyword, Keyword::AND | Keyword::OR),
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::DuckIntDiv
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Ampersand
        | Token::Pipe
        | Token::Caret
        | Token::ShiftLeft
        | Token::ShiftRight => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(terms: usize, operator: &str) -> String {
        format!("SELECT {} FROM t", vec!["a"; terms].join(operator))
    }

    #[test]
    fn long_operator_chains_are_refused_before_parsing() {
        check_expression_depth(&chain(MAX_OPERATORS + 1, " + ")).unwrap();
        let err = check_expression_depth(&chain(MAX_OPERATORS + 2, " OR "))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 1000 operators"), "{err}");
        check_expression_depth(&chain(100_000, "*")).unwrap_err();
    }

    #[test]
    fn commas_separate_chains_so_long_lists_pass() {
        let values: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
        let in_list = format!("SELECT * FROM t WHERE a IN ({})", values.join(", "));
        check_expression_depth(&in_list).unwrap();
        let columns = vec!["a + b + c"; 2_000].join(", ");
        check_expression_depth(&format!("SELECT {columns} FROM t")).unwrap();
    }
}
