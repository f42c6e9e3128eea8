//! How deeply a statement's expressions may nest.
//!
//! The parser turns `a OR b OR c ...` and `1 + 1 + ...` into trees as deep as they are long,
//! and everything after it (datafusion-pg-catalog's rewrites, DataFusion's planner and
//! optimizer, delta-rs's predicate conversion) walks them recursively. Two checks keep that
//! recursion within the stack (`super::THREAD_STACK_BYTES`):
//! - before parsing, [`check_tokens`] bounds the longest run of operators, which bounds how deep
//!   the parser's tree can be;
//! - after parsing, [`balance_and_check`] rebuilds long AND/OR chains as balanced trees (they
//!   are associative, so the answer is the same and the depth is logarithmic: BI tools and ORMs
//!   send thousands of `OR id = ...` terms) and refuses anything still nested deeper than
//!   [`MAX_EXPRESSION_DEPTH`].
//!
//! Both refuse with 54001, as PostgreSQL refuses `1 + 1 + ...` past about 4,000 terms.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Statement, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, Result};

/// Deepest expression a statement may hold once AND/OR chains are balanced. PostgreSQL's
/// default `max_stack_depth` stops `1 + 1 + ...` at about 4,000 terms; the stack given to each
/// thread holds this many levels with room to spare in a debug build.
pub const MAX_EXPRESSION_DEPTH: usize = 4_000;

/// Longest run of operators (between commas, parentheses and clause keywords) a query may hold
/// before it is parsed. Runs of AND and OR up to this length are balanced after parsing; the
/// parser's own tree for such a run is this deep, and must fit the stack until then.
pub const MAX_OPERATOR_RUN: usize = 50_000;

/// Bounds the depth of the tree the parser will build for `sql`, without parsing it.
pub fn check_tokens(sql: &str) -> Result<()> {
    // Only a long text can hold a long run; most statements skip the tokenizer here.
    if sql.len() < MAX_OPERATOR_RUN {
        return Ok(());
    }
    let dialect = PostgreSqlDialect {};
    // A text that does not tokenize fails in the parser, with a better message.
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else { return Ok(()) };
    let mut run = 0usize;
    for token in &tokens {
        match token {
            Token::Comma | Token::LParen | Token::RParen | Token::SemiColon => run = 0,
            Token::Word(w) if matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT) => run += 1,
            Token::Word(w) if w.keyword != Keyword::NoKeyword && w.quote_style.is_none() => {
                if resets_run(w.keyword) {
                    run = 0;
                }
            }
            Token::Word(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::Whitespace(_)
            | Token::Placeholder(_)
            | Token::Period
            | Token::DoubleColon
            | Token::EOF => {}
            _ => run += 1,
        }
        if run > MAX_OPERATOR_RUN {
            return Err(too_complex(format!("a run of more than {MAX_OPERATOR_RUN} operators")));
        }
    }
    Ok(())
}

/// Clause keywords end an operator run: `CASE WHEN a = 1 THEN ... WHEN a = 2 ...` is flat.
fn resets_run(k: Keyword) -> bool {
    matches!(
        k,
        Keyword::SELECT
            | Keyword::FROM
            | Keyword::WHERE
            | Keyword::GROUP
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::CASE
            | Keyword::WHEN
            | Keyword::THEN
            | Keyword::ELSE
            | Keyword::END
            | Keyword::VALUES
            | Keyword::SET
            | Keyword::ON
            | Keyword::JOIN
            | Keyword::UNION
            | Keyword::AS
    )
}

/// Balances long AND/OR chains in place, then refuses a statement nested deeper than
/// [`MAX_EXPRESSION_DEPTH`].
pub fn balance_and_check(stmt: &mut Statement) -> Result<()> {
    let mut visitor = Depth { depth: 0 };
    match stmt.visit(&mut visitor) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

/// Tracks the nesting of the expression being visited. It stops at the first level past the
/// limit, so its own recursion is bounded too.
struct Depth {
    depth: usize,
}

impl VisitorMut for Depth {
    type Break = Error;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        balance(expr);
        self.depth += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(too_complex(format!("an expression nested more than {MAX_EXPRESSION_DEPTH} levels deep")));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<Error> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Chains shorter than this keep the shape they were written in (and their EXPLAIN output).
const BALANCE_FROM: usize = 16;

/// Rewrites `a OR b OR c ...` (any grouping of one operator, AND or OR) as a balanced tree of
/// the same operands in the same order. Nothing else is associative in SQL's three-valued logic
/// and its numeric types alike: `+` over floats or with overflow is not.
fn balance(expr: &mut Expr) {
    let op = match expr {
        Expr::BinaryOp { op: op @ (BinaryOperator::And | BinaryOperator::Or), .. } => op.clone(),
        _ => return,
    };
    let mut operands = Vec::new();
    // Flattened with an explicit stack: the chain may be far deeper than the thread's stack.
    let mut pending = vec![std::mem::replace(expr, Expr::value(datafusion::sql::sqlparser::ast::Value::Null))];
    while let Some(e) = pending.pop() {
        match e {
            Expr::BinaryOp { left, op: o, right } if o == op => {
                pending.push(*right);
                pending.push(*left);
            }
            other => operands.push(other),
        }
    }
    *expr = if operands.len() < BALANCE_FROM { chain(operands, &op) } else { balanced(operands, &op) };
}

/// A left-deep chain, as the parser builds it.
fn chain(operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    let mut it = operands.into_iter();
    let first = it.next().unwrap_or(Expr::value(datafusion::sql::sqlparser::ast::Value::Null));
    it.fold(first, |left, right| Expr::BinaryOp { left: Box::new(left), op: op.clone(), right: Box::new(right) })
}

/// A tree of depth log2(n); the recursion here is that deep too.
fn balanced(mut operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if operands.len() <= 2 {
        return chain(operands, op);
    }
    let right = operands.split_off(operands.len() / 2);
    Expr::BinaryOp { left: Box::new(balanced(operands, op)), op: op.clone(), right: Box::new(balanced(right, op)) }
}

fn too_complex(what: String) -> Error {
    Error::TooComplex(format!(
        "statement too complex: it holds {what}; write long lists as IN (...) or join a table of the values"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0)
    }

    #[test]
    fn long_or_chains_become_shallow_and_keep_their_operands_in_order() {
        let terms: Vec<String> = (0..1000).map(|i| format!("id = {i}")).collect();
        let mut stmt = parse(&format!("SELECT * FROM t WHERE {}", terms.join(" OR ")));
        balance_and_check(&mut stmt).unwrap();
        let text = stmt.to_string();
        let positions: Vec<usize> = (0..1000).map(|i| text.find(&format!("id = {i})")).or_else(|| text.find(&format!("id = {i} "))).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "operands reordered");
        let mut depth = 0usize;
        let mut max = 0usize;
        for c in text.chars() {
            match c {
                '(' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        assert!(max < 20, "still {max} deep");
    }

    #[test]
    fn deep_arithmetic_is_refused_past_the_limit() {
        let ok = format!("SELECT {}", vec!["1"; 1000].join(" + "));
        balance_and_check(&mut parse(&ok)).unwrap();
        let too_deep = format!("SELECT {}", vec!["1"; MAX_EXPRESSION_DEPTH + 10].join(" + "));
        let err = balance_and_check(&mut parse(&too_deep)).unwrap_err();
        assert_eq!(err.sqlstate(), "54001");
    }

    #[test]
    fn token_runs_are_bounded_but_lists_and_case_are_not_runs() {
        let list = format!("SELECT * FROM t WHERE id IN ({})", (0..100_000).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        check_tokens(&list).unwrap();
        let case = format!("SELECT CASE {} END", (0..60_000).map(|i| format!("WHEN a = {i} THEN {i}")).collect::<Vec<_>>().join(" "));
        check_tokens(&case).unwrap();
        let run = format!("SELECT {}", vec!["1"; MAX_OPERATOR_RUN + 10].join("+"));
        assert_eq!(check_tokens(&run).unwrap_err().sqlstate(), "54001");
    }
}
